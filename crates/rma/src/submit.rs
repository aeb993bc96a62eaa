//! `rma submit`: sends documents as jobs through the router, shows a progress bar per file,
//! prints the text and facts (or JSON), and exits non-zero when any job failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rma_client::Client;
use rma_proto::job::{JobState, JobView};
use rma_proto::results::ServiceResult;
use serde::Serialize;

/// Services `submit` can ask for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SubmitService {
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
pub(crate) struct SubmitArgs {
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
    /// Where this organisation's client key and credential live (routers with
    /// `--clients keyed` take uploads only with one; others give keyed clients their own limits).
    #[arg(long, env = "RMA_CLIENT_DIR")]
    client_dir: Option<PathBuf>,
    /// A join token (`rma invite --role client`) to enrol the client key, on first use only.
    #[arg(
        long,
        env = "RMA_JOIN_TOKEN",
        hide_env_values = true,
        requires = "client_dir"
    )]
    join: Option<String>,
}

struct Submitted {
    file: PathBuf,
    job: Result<String, String>,
    bar: ProgressBar,
}

/// One line of `--json` output.
#[derive(Serialize)]
struct Printed<'a> {
    file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
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
pub(crate) async fn run(a: SubmitArgs) -> Result<()> {
    let mut client = Client::with_timeout(&a.router, Duration::from_secs(120))
        .map_err(|e| anyhow::anyhow!("--router: {e}"))?;
    if let Some(dir) = &a.client_dir {
        let id = crate::members::identity(dir, a.join.as_deref(), rma_auth::Role::Client, "client")
            .await?;
        if id.renew_in() == 0
            && let Err(e) = rma_client::identity::renew(&id).await
        {
            eprintln!("warning: could not renew the client credential: {e}");
        }
        client = client.with_identity(id);
    }
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

    let mut jobs = Vec::new();
    for file in &a.files {
        let bar = bars.add(ProgressBar::new(1));
        bar.set_style(style.clone());
        bar.set_prefix(file.display().to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        let job = submit_one(&client, a.service.name(), &query, file).await;
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

    let mut outcomes: Vec<(PathBuf, Result<JobView, String>)> = Vec::new();
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
                    printed.push(Printed {
                        file,
                        job: Some(job),
                        error: None,
                    });
                } else {
                    print_text(file, job, &client);
                }
            }
            Err(e) => {
                if a.json {
                    printed.push(Printed {
                        file,
                        job: None,
                        error: Some(e),
                    });
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

async fn submit_one(
    client: &Client,
    service: &str,
    query: &str,
    file: &Path,
) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read it: {e}"))?;
    let ct = content_type(file, &bytes);
    match client
        .submit_job(service, query, ct, Bytes::from(bytes))
        .await
    {
        Ok(accepted) => Ok(accepted.job_id),
        Err(rma_client::ClientError::Api { body, .. }) => Err(body.message),
        Err(e) => Err(format!("cannot submit it: {e}")),
    }
}

async fn wait(client: &Client, id: &str, bar: &ProgressBar) -> Result<JobView, String> {
    let show = |v: &JobView| {
        let total = u64::from(v.progress.total).max(1);
        bar.set_length(total);
        bar.set_position(u64::from(v.progress.done).min(total));
        bar.set_message(v.state.as_str());
    };
    // A long PDF may take a while; a day is "forever" for a person at a terminal.
    let job = client
        .wait(id, Duration::from_secs(24 * 3600), show)
        .await
        .map_err(|e| match e {
            rma_client::ClientError::Transport { .. } => {
                format!("lost contact with the router: {e}")
            }
            e => format!("job {id}: {e}"),
        })?;
    let who = job
        .worker
        .as_deref()
        .map(|w| format!(" on {w}"))
        .unwrap_or_default();
    if job.state == JobState::Done {
        bar.finish_with_message(format!("done{who}"));
        Ok(job)
    } else {
        let e = job
            .error
            .clone()
            .unwrap_or_else(|| "no reason given".into());
        bar.abandon_with_message(format!("failed: {e}"));
        Err(e)
    }
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("document")
        .to_owned()
}

async fn write_out(client: &Client, dir: &Path, file: &Path, job: &JobView) -> Result<()> {
    let base = dir.join(stem(file));
    let Some(result) = &job.result else {
        // Not JSON (an enhanced image): fetch the raw result.
        let raw = client
            .job_result(&job.id)
            .await
            .map_err(|e| anyhow::anyhow!("fetching the result of {}: {e}", file.display()))?;
        let ext = if raw.header("content-type") == Some("image/png") {
            "png"
        } else {
            "bin"
        };
        std::fs::write(base.with_extension(ext), &raw.body)?;
        return Ok(());
    };
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_vec_pretty(result)?,
    )?;
    if let Some(text) = result.text() {
        std::fs::write(base.with_extension("txt"), text)?;
    }
    Ok(())
}

/// A fact with its role in words, when the letter says what it is: `£187.45 (arrears)`.
fn with_role(shown: String, role: &Option<String>) -> String {
    match role {
        Some(r) => format!("{shown} ({})", r.replace('_', " ")),
        None => shown,
    }
}

fn print_text(file: &Path, job: &JobView, client: &Client) {
    println!(
        "== {} ({} on {})",
        file.display(),
        job.service,
        job.worker.as_deref().unwrap_or("?")
    );
    let Some(result) = &job.result else {
        println!(
            "result: {}{}",
            client.base(),
            job.result_url
                .as_deref()
                .unwrap_or("")
                .trim_start_matches('/')
        );
        return;
    };
    if let Some(facts) = result.facts() {
        if let Some(w) = &facts.warning {
            println!("warning      {w}");
        }
        println!("letter type  {}", facts.letter_type);
        if let Some(s) = &facts.sender {
            println!("from         {}", s.name);
        }
        // A fact OCR may have misread is printed as read, with a `?`, and why below.
        let mut unsure: Vec<String> = Vec::new();
        let mut mark = |shown: String, trust: &rma_proto::results::Trust| {
            if trust.uncertain {
                unsure.push(format!(
                    "  ? {shown}: {}",
                    trust
                        .reason
                        .as_deref()
                        .unwrap_or("check it against the letter")
                ));
                format!("{shown}?")
            } else {
                shown
            }
        };
        let amounts: Vec<String> = facts
            .amounts
            .iter()
            .map(|a| {
                let shown = if a.trust.uncertain {
                    format!("£{}", a.value)
                } else {
                    a.text.clone()
                };
                with_role(mark(shown, &a.trust), &a.role)
            })
            .collect();
        let dates: Vec<String> = facts
            .dates
            .iter()
            .map(|d| with_role(mark(d.date.clone(), &d.trust), &d.role))
            .collect();
        let references: Vec<String> = facts
            .references
            .iter()
            .map(|r| mark(r.value.clone(), &r.trust))
            .collect();
        println!("amounts      {}", amounts.join(", "));
        println!("dates        {}", dates.join(", "));
        println!("references   {}", references.join(", "));
        if !unsure.is_empty() {
            println!("check (OCR may have misread these):");
            for line in &unsure {
                println!("{line}");
            }
        }
        if !facts.sort_codes.is_empty() {
            println!("sort codes   {}", facts.sort_codes.join(", "));
        }
    }
    if let Some(text) = result.text() {
        println!("-- text --\n{}", text.trim());
    } else if let ServiceResult::Other(v) = result {
        println!("{v}");
    }
    println!();
}
