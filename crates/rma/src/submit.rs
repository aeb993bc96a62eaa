//! `rma submit`: sends documents as jobs through the router, shows a progress bar per file,
//! prints the text and facts (or JSON), and exits non-zero when any job failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rma_client::Client;
use serde_json::Value;

/// Services `submit` can ask for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SubmitService {
    /// Enhance (images), OCR or PDF text, extract facts, store.
    Process,
    /// OCR only.
    Ocr,
    /// PDF text layer (OCR for scanned pages).
    PdfText,
    /// Image clean-up; the result is a PNG.
    Enhance,
    /// Facts from a letter.
    Extract,
}

impl SubmitService {
    fn name(self) -> &'static str {
        match self {
            SubmitService::Process => "process",
            SubmitService::Ocr => "ocr",
            SubmitService::PdfText => "pdf-text",
            SubmitService::Enhance => "enhance",
            SubmitService::Extract => "extract",
        }
    }
}

/// `rma submit` flags.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Documents to read: PDF, PNG, JPEG, TIFF, WebP (or .txt for extract).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// What to do with them.
    #[arg(long, value_enum, default_value = "process")]
    service: SubmitService,
    /// The router (or a coordinator).
    #[arg(long, env = "RMA_ROUTER_URL", default_value = "http://127.0.0.1:8787")]
    router: String,
    /// Print the jobs as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write each result to DIR as {name}.json and {name}.txt (or {name}.png for enhance).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// OCR language(s), e.g. eng or eng+fra.
    #[arg(long)]
    lang: Option<String>,
}

struct Submitted {
    file: PathBuf,
    job: Result<String, String>,
    bar: ProgressBar,
}

/// Content type from magic bytes, then the extension.
fn content_type(path: &Path, bytes: &[u8]) -> &'static str {
    if let Some(k) = rma_proto::media::sniff(bytes) {
        return k.mime();
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("txt" | "text") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Runs `rma submit`.
pub async fn run(a: SubmitArgs) -> Result<()> {
    let client = Client::with_timeout(&a.router, Duration::from_secs(120))
        .map_err(|e| anyhow::anyhow!("--router: {e}"))?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{spinner} {prefix:30!} [{bar:20}] {pos}/{len} {msg} ({elapsed})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let query = a
        .lang
        .as_deref()
        .map(|l| format!("lang={l}"))
        .unwrap_or_default();
    let path = if query.is_empty() {
        format!("api/service/{}", a.service.name())
    } else {
        format!("api/service/{}?{query}", a.service.name())
    };

    let mut jobs = Vec::new();
    for file in &a.files {
        let bar = bars.add(ProgressBar::new(1));
        bar.set_style(style.clone());
        bar.set_prefix(file.display().to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        let job = submit_one(&client, &path, file).await;
        match &job {
            Ok(_) => bar.set_message("queued"),
            Err(e) => bar.abandon_with_message(format!("failed: {e}")),
        }
        jobs.push(Submitted {
            file: file.clone(),
            job,
            bar,
        });
    }

    let mut outcomes: Vec<(PathBuf, Result<Value, String>)> = Vec::new();
    for s in jobs {
        let outcome = match s.job {
            Err(e) => Err(e),
            Ok(id) => wait(&client, &id, &s.bar).await,
        };
        outcomes.push((s.file, outcome));
    }
    bars.clear().ok();

    let mut failed = Vec::new();
    let mut printed = Vec::new();
    for (file, outcome) in &outcomes {
        match outcome {
            Ok(job) => {
                if let Some(dir) = &a.out {
                    write_out(&client, dir, file, job).await?;
                }
                if a.json {
                    printed.push(serde_json::json!({"file": file, "job": job}));
                } else {
                    print_text(file, job, &client);
                }
            }
            Err(e) => {
                if a.json {
                    printed.push(serde_json::json!({"file": file, "error": e}));
                }
                failed.push(format!("{}: {e}", file.display()));
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&printed)?);
    }
    for f in &failed {
        eprintln!("error: {f}");
    }
    if !failed.is_empty() {
        bail!("{} of {} file(s) failed", failed.len(), outcomes.len());
    }
    Ok(())
}

async fn submit_one(client: &Client, path: &str, file: &Path) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read it: {e}"))?;
    let ct = content_type(file, &bytes);
    let resp = client
        .raw(
            reqwest::Method::POST,
            path,
            Some(ct),
            Bytes::from(bytes),
            &[("prefer", "respond-async")],
        )
        .await
        .map_err(|e| format!("cannot submit it: {e}"))?;
    if resp.status.as_u16() != 202 {
        let msg = resp
            .json()
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {}", resp.status));
        return Err(msg);
    }
    let v = resp.json().map_err(|e| format!("unexpected answer: {e}"))?;
    v["job_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the answer named no job".to_owned())
}

async fn wait(client: &Client, id: &str, bar: &ProgressBar) -> Result<Value, String> {
    let mut misses = 0;
    loop {
        match client
            .raw(
                reqwest::Method::GET,
                &format!("api/jobs/{id}"),
                None,
                Bytes::new(),
                &[],
            )
            .await
        {
            Ok(r) if r.status.is_success() => {
                misses = 0;
                let v = r
                    .json()
                    .map_err(|e| format!("unexpected job answer: {e}"))?;
                let done = v["progress"]["done"].as_u64().unwrap_or(0);
                let total = v["progress"]["total"].as_u64().unwrap_or(0).max(1);
                bar.set_length(total);
                bar.set_position(done.min(total));
                let state = v["state"].as_str().unwrap_or("?").to_owned();
                let who = v["worker"]
                    .as_str()
                    .map(|w| format!(" on {w}"))
                    .unwrap_or_default();
                match state.as_str() {
                    "done" => {
                        bar.finish_with_message(format!("done{who}"));
                        return Ok(v);
                    }
                    "failed" => {
                        let e = v["error"].as_str().unwrap_or("no reason given").to_owned();
                        bar.abandon_with_message(format!("failed: {e}"));
                        return Err(e);
                    }
                    s => bar.set_message(s.to_owned()),
                }
            }
            Ok(r) => {
                let msg = r
                    .json()
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Err(format!("job {id}: HTTP {}: {msg}", r.status));
            }
            // The router or coordinator may be restarting: keep asking for a while.
            Err(e) => {
                misses += 1;
                if misses > 60 {
                    return Err(format!("lost contact with the router: {e}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("document")
        .to_owned()
}

async fn write_out(client: &Client, dir: &Path, file: &Path, job: &Value) -> Result<()> {
    let base = dir.join(stem(file));
    if job["result"].is_null() {
        // Not JSON (an enhanced image): fetch the raw result.
        let id = job["id"].as_str().unwrap_or_default();
        let raw = client
            .raw(
                reqwest::Method::GET,
                &format!("api/jobs/{id}/result"),
                None,
                Bytes::new(),
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!("fetching the result of {}: {e}", file.display()))?;
        let ext = if raw.header("content-type") == Some("image/png") {
            "png"
        } else {
            "bin"
        };
        std::fs::write(base.with_extension(ext), &raw.body)?;
        return Ok(());
    }
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_vec_pretty(&job["result"])?,
    )?;
    if let Some(text) = job["result"]["text"].as_str() {
        std::fs::write(base.with_extension("txt"), text)?;
    }
    Ok(())
}

fn print_text(file: &Path, job: &Value, client: &Client) {
    let r = &job["result"];
    println!(
        "== {} ({} on {})",
        file.display(),
        job["service"].as_str().unwrap_or("?"),
        job["worker"].as_str().unwrap_or("?")
    );
    if r.is_null() {
        println!(
            "result: {}{}",
            client.base(),
            job["result_url"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
        );
        return;
    }
    let facts = if r["facts"].is_object() {
        &r["facts"]
    } else {
        r
    };
    if let Some(t) = facts["letter_type"].as_str() {
        println!("letter type  {t}");
        if let Some(s) = facts["sender"]["name"].as_str() {
            println!("from         {s}");
        }
        let list = |key: &str, field: &str| -> String {
            facts[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x[field].as_str().or(x.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        println!("amounts      {}", list("amounts", "text"));
        println!("dates        {}", list("dates", "date"));
        println!("references   {}", list("references", "value"));
        let sc = list("sort_codes", "");
        if !sc.is_empty() {
            println!("sort codes   {sc}");
        }
    }
    if let Some(text) = r["text"].as_str() {
        println!("-- text --\n{}", text.trim());
    }
    println!();
}
