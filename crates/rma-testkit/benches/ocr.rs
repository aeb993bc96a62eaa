//! OCR pages per second through the federation (router → coordinator → worker, engines kept
//! loaded) with 1 and 2 workers of one engine each, against the `tesseract` command line on the
//! same pages in the same run (one process per page, as a script would do it). Every answer is
//! checked for ≥ 95 % character accuracy, so speed is never bought with wrong text.
//!
//! `cargo bench -p rma-testkit --bench ocr -- [--pages N]`

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use rma_fixtures::{char_accuracy, letters, png, render_page};
use rma_testkit::Cluster;

fn pages_arg() -> usize {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--pages" {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(24);
        }
    }
    24
}

struct Page {
    path: PathBuf,
    bytes: Vec<u8>,
    text: &'static str,
}

/// Runs `tesseract` on every page, `parallel` processes at a time; returns the elapsed time.
fn cli(pages: &[Page], parallel: usize) -> Duration {
    let started = Instant::now();
    for chunk in pages.chunks(parallel) {
        let children: Vec<_> = chunk
            .iter()
            .map(|p| {
                Command::new("tesseract")
                    .arg(&p.path)
                    .arg("-")
                    .env("OMP_THREAD_LIMIT", "1")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("tesseract on PATH (Debian tesseract-ocr)")
            })
            .collect();
        for (child, p) in children.into_iter().zip(chunk) {
            let out = child.wait_with_output().expect("tesseract ran");
            let acc = char_accuracy(p.text, &String::from_utf8_lossy(&out.stdout));
            assert!(acc >= 0.95, "tesseract CLI read a page at {acc:.3}");
        }
    }
    started.elapsed()
}

async fn federation(pages: &[Page], workers: usize) -> Duration {
    let mut cluster = Cluster::start(1, 0).await;
    for i in 0..workers {
        cluster
            .add_worker_with(&format!("ocr-{i}"), |w| w.ocr_threads = 1)
            .await;
    }
    cluster.wait_linked().await;
    let client = cluster.client();
    // Warm the engines (first use loads the language data), as a long-running worker would be.
    for _ in 0..workers * 2 {
        let _ = client
            .call_service("ocr", "", "image/png", Bytes::from(pages[0].bytes.clone()))
            .await;
    }
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(pages.iter())
        .map(|p| {
            let client = client.clone();
            async move {
                let r = client
                    .call_service("ocr", "", "image/png", Bytes::from(p.bytes.clone()))
                    .await
                    .expect("ocr answered");
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                let v = r.json().expect("json");
                let acc = char_accuracy(p.text, v["text"].as_str().unwrap_or_default());
                assert!(acc >= 0.95, "federation read a page at {acc:.3}");
            }
        })
        .buffer_unordered(workers * 2)
        .collect()
        .await;
    assert_eq!(results.len(), pages.len());
    started.elapsed()
}

fn main() {
    let n = pages_arg();
    let dir = tempfile::tempdir().expect("tempdir");
    let pages: Vec<Page> = (0..n)
        .map(|i| {
            let l = letters::ALL[i % letters::ALL.len()];
            let bytes = png(&render_page(l.text, 34.0).expect("render"));
            let path = dir.path().join(format!("page-{i}.png"));
            std::fs::write(&path, &bytes).expect("write page");
            Page {
                path,
                bytes,
                text: l.text,
            }
        })
        .collect();
    let version = rma_testkit::tesseract_version();
    println!(
        "OCR of {n} generated letter pages (≈1500×1200 px, PNG), {version}, OMP_THREAD_LIMIT=1 everywhere, {} cores",
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    println!();
    println!(
        "| how | engines / processes at once | seconds | pages/s | pages/s per core | vs CLI per core |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let cli1 = cli(&pages, 1);
    let cli1_rate = n as f64 / cli1.as_secs_f64();
    let row = |name: &str, k: usize, d: Duration| {
        let rate = n as f64 / d.as_secs_f64();
        println!(
            "| {name} | {k} | {:.2} | {:.2} | {:.2} | {:.2}× |",
            d.as_secs_f64(),
            rate,
            rate / k as f64,
            (rate / k as f64) / cli1_rate
        );
    };
    row("`tesseract` CLI, a process per page", 1, cli1);
    let cli2 = cli(&pages, 2);
    row("`tesseract` CLI, a process per page", 2, cli2);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let f1 = rt.block_on(federation(&pages, 1));
    row("rma: router → coordinator → 1 worker", 1, f1);
    let f2 = rt.block_on(federation(&pages, 2));
    row("rma: router → coordinator → 2 workers", 2, f2);
}
