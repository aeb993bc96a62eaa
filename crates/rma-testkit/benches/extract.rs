//! How far the facts of a letter can be trusted (issue 10): the generated corpus (15 kinds,
//! 12 conditions, ground truth for every fact and role) sent through a real federation, scored
//! per field and per condition. Three ways of reading each letter, in the same run:
//!
//! - `raw`: the `ocr` service on the image as sent (raw Tesseract), then `extract`;
//! - `enhanced`: `enhance` (binarised, its default), then `ocr`, then `extract`;
//! - `flattened`: `enhance?binarize=false` (lighting flattened, deskewed, left grey), then `ocr`,
//!   then `extract`;
//! - `process`: the `process` pipeline as shipped (what a user gets).
//!
//! Every fact that is not on the letter and not flagged `uncertain` is counted as
//! **wrong-and-unflagged**; the goal is 0 for amounts and dates.
//!
//! `cargo bench -p rma-testkit --bench extract -- [--count 180] [--held-out 60] [--misses FILE]
//! [--dump DIR] [--only CONDITION]` (`--dump` writes each letter's readings and `process`'s
//! facts, for reading; `--only harsh` reads the letters of one condition).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use rma_fixtures::corpus::{CONDITIONS, Fonts, Generated, HELD_OUT_SEED, TUNE_SEED, letter};
use rma_fixtures::score::{Counts, Score, score};
use rma_proto::results::{ExtractResult, Facts, OcrResult, ProcessResult};
use rma_testkit::Cluster;

fn arg(name: &str) -> Option<String> {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == name {
            return it.next();
        }
    }
    None
}

fn number(name: &str, default: usize) -> usize {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

const WAYS: [&str; 4] = ["raw", "enhanced", "flattened", "process"];

struct Outcome {
    index: usize,
    facts: [Facts; 4],
    /// The text of each reading (`process` answers with its main reading's).
    texts: [String; 4],
    process_ms: u128,
}

fn mime(g: &Generated) -> &'static str {
    if g.ext == "png" {
        "image/png"
    } else {
        "image/jpeg"
    }
}

async fn read(client: &rma_client::Client, index: usize, g: &Generated) -> Outcome {
    let body = Bytes::from(g.bytes.clone());
    let ocr_extract = |image: Bytes, ct: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .call_service("ocr", "boxes=true", ct, image)
                .await
                .expect("ocr answered");
            assert_eq!(r.status, 200, "ocr: {}", String::from_utf8_lossy(&r.body));
            let read: OcrResult = serde_json::from_slice(&r.body).expect("ocr json");
            let reading = serde_json::json!({ "text": &read.text, "pages": read.pages });
            let r = client
                .call_service(
                    "extract",
                    "",
                    "application/json",
                    Bytes::from(serde_json::to_vec(&reading).expect("json")),
                )
                .await
                .expect("extract answered");
            assert_eq!(
                r.status,
                200,
                "extract: {}",
                String::from_utf8_lossy(&r.body)
            );
            let facts: ExtractResult = serde_json::from_slice(&r.body).expect("extract json");
            (facts.facts, read.text)
        }
    };
    // `process` first, so its time is not helped by the cache the other readings fill.
    let started = Instant::now();
    let r = client
        .call_service("process", "", mime(g), body.clone())
        .await
        .expect("process answered");
    let process_ms = started.elapsed().as_millis();
    assert_eq!(
        r.status,
        200,
        "process: {}",
        String::from_utf8_lossy(&r.body)
    );
    let processed: ProcessResult = serde_json::from_slice(&r.body).expect("process json");
    let raw = ocr_extract(body.clone(), mime(g)).await;
    let enhance = |query: &'static str| {
        let (client, body) = (client.clone(), body.clone());
        async move {
            let r = client
                .call_service("enhance", query, mime(g), body)
                .await
                .expect("enhance answered");
            assert_eq!(
                r.status,
                200,
                "enhance?{query}: {}",
                String::from_utf8_lossy(&r.body)
            );
            r.body
        }
    };
    let enhanced = ocr_extract(enhance("").await, "image/png").await;
    let flattened = ocr_extract(enhance("binarize=false").await, "image/png").await;
    Outcome {
        index,
        facts: [raw.0, enhanced.0, flattened.0, processed.facts.facts],
        texts: [raw.1, enhanced.1, flattened.1, processed.text],
        process_ms,
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

fn row(label: &str, way: &str, s: &Score) {
    let a: &Counts = &s.amounts;
    let d: &Counts = &s.dates;
    println!(
        "| {label} | {way} | {} | {} | {} | **{}** | {} | {} | {} | {} | **{}** | {} | {} | {} | {} | {} |",
        s.letters,
        pct(a.precision()),
        pct(a.recall()),
        a.wrong_unflagged,
        a.wrong_flagged + a.right_flagged,
        pct(a.role_accuracy()),
        pct(d.precision()),
        pct(d.recall()),
        d.wrong_unflagged,
        pct(d.role_accuracy()),
        pct(s.references.recall()),
        pct(s.references.precision()),
        pct(f64::from(s.sender) / f64::from(s.letters.max(1))),
        pct(f64::from(s.kind) / f64::from(s.letters.max(1))),
    );
}

fn table(title: &str, by: &BTreeMap<(usize, &'static str), [Score; 4]>) {
    println!();
    println!("{title}");
    println!();
    println!(
        "| condition | reading | letters | amount P % | amount R % | amount wrong unflagged | amounts flagged | amount role % | date P % | date R % | date wrong unflagged | date role % | ref R % | ref P % | sender % | kind % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut all: [Score; 4] = Default::default();
    for ((_, condition), scores) in by {
        for (w, s) in scores.iter().enumerate() {
            row(condition, WAYS[w], s);
            all[w].add(s);
        }
    }
    for (w, s) in all.iter().enumerate() {
        row("**all**", WAYS[w], s);
    }
}

fn main() {
    let count = number("--count", 180);
    let held_out = number("--held-out", 60);
    let misses_file = arg("--misses");
    let dump = arg("--dump");
    let fonts = Fonts::load().expect("fonts (scripts/deps.sh installs them)");
    let started = Instant::now();
    let only = arg("--only");
    let letters: Vec<Generated> = (0..count)
        .map(|i| letter(&fonts, TUNE_SEED, false, i))
        .chain((0..held_out).map(|i| letter(&fonts, HELD_OUT_SEED, true, i)))
        .filter(|g| {
            g.as_ref().map_or(true, |g| {
                only.as_deref().is_none_or(|c| g.truth.condition == c)
            })
        })
        .collect::<Result<_, _>>()
        .expect("letters");
    let made = started.elapsed();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let outcomes: Vec<Outcome> = rt.block_on(async {
        let mut cluster = Cluster::start(1, 0).await;
        cluster
            .add_worker_with("reader", |w| w.ocr_threads = cores)
            .await;
        cluster.wait_linked().await;
        let client = cluster.client();
        let started = Instant::now();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let total = letters.len();
        let out: Vec<Outcome> = futures_util::stream::iter(letters.iter().enumerate())
            .map(|(i, g)| {
                let client = client.clone();
                let done = &done;
                async move {
                    let o = read(&client, i, g).await;
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n.is_multiple_of(20) || n == total {
                        eprintln!(
                            "{n}/{total} letters read ({:.0} s)",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    o
                }
            })
            .buffer_unordered(cores)
            .collect()
            .await;
        eprintln!(
            "{} letters read four ways in {:.0} s",
            out.len(),
            started.elapsed().as_secs_f64()
        );
        out
    });
    let mut tune: BTreeMap<(usize, &'static str), [Score; 4]> = BTreeMap::new();
    let mut held: BTreeMap<(usize, &'static str), [Score; 4]> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut ms: Vec<u128> = Vec::new();
    for o in &outcomes {
        let t = &letters[o.index].truth;
        let order = CONDITIONS
            .iter()
            .position(|c| *c == t.condition)
            .unwrap_or(0);
        let part = if t.held_out { &mut held } else { &mut tune };
        let entry = part.entry((order, t.condition)).or_default();
        for (w, (facts, sum)) in o.facts.iter().zip(entry.iter_mut()).enumerate() {
            let s = score(t, facts);
            if w == 3 {
                misses.extend(
                    s.misses
                        .iter()
                        .map(|m| format!("{m} [{} {} {}]", t.condition, t.family, t.font)),
                );
            }
            sum.add(&s);
        }
        ms.push(o.process_ms);
        if let Some(dir) = &dump {
            let _ = std::fs::create_dir_all(dir);
            for (w, text) in o.texts.iter().enumerate() {
                let _ = std::fs::write(format!("{dir}/{}.{}.txt", t.id, WAYS[w]), text);
            }
            let facts = serde_json::to_string_pretty(&o.facts[3]).unwrap_or_default();
            let _ = std::fs::write(format!("{dir}/{}.facts.json", t.id), facts);
        }
    }
    ms.sort_unstable();
    let q = |p: f64| {
        ms.get(((ms.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let version = rma_testkit::tesseract_version();
    println!(
        "Extraction on the generated corpus: {count} tuning letters (seed {TUNE_SEED:#x}) and {held_out} held-out letters (seed {HELD_OUT_SEED:#x}); {version}; {cores} cores; letters made in {:.0} s.",
        made.as_secs_f64()
    );
    println!(
        "`process` wall time per letter ({cores} letters at once): p50 {} ms, p90 {} ms.",
        q(0.5),
        q(0.9)
    );
    println!(
        "P = precision, R = recall; \"flagged\" counts facts marked uncertain (right or wrong); roles are scored on right values whose truth has a role."
    );
    table("**Tuning part**", &tune);
    table("**Held-out part** (never tuned on)", &held);
    if let Some(path) = misses_file {
        misses.sort();
        std::fs::write(&path, misses.join("\n")).expect("write misses");
        eprintln!("{} misses of `process` written to {path}", misses.len());
    }
}
