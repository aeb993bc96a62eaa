//! `rma invite`, `rma revoke`, `rma nodes`: membership administration against a router, with
//! the admin token from `RMA_ADMIN_TOKEN` or `--admin-token-file`; and enrolment of the
//! processes this binary starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use rma_auth::{Identity, Role};
use rma_client::Client;
use rma_proto::membership::InviteRequest;

/// Where the admin token comes from.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The router (e.g. http://127.0.0.1:8787).
    #[arg(long, env = "RMA_ROUTER_URL")]
    router: String,
    /// A file holding the admin token (the router writes admin.token beside its --db).
    #[arg(long, env = "RMA_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct InviteArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// What the token enrols: coordinator, worker or client.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Services the node may run (workers) or hold (coordinators), comma-separated
    /// [default: any].
    #[arg(long, value_delimiter = ',')]
    services: Option<Vec<String>>,
    /// How long the token may be used: 30s, 15m, 2h, 7d.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    ttl: Duration,
    /// How many nodes may enrol with it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    uses: u32,
    /// Who runs the node(s) (a volunteer, an organisation): spot checks compare answers of
    /// workers of different owners [default: each node is its own owner].
    #[arg(long)]
    owner: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The node to revoke (see `rma nodes`).
    node: String,
}

#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The router (e.g. http://127.0.0.1:8787).
    #[arg(long, env = "RMA_ROUTER_URL", default_value = "http://127.0.0.1:8787")]
    router: String,
    /// A file holding the admin token, for the addresses too (RMA_ADMIN_TOKEN works as well).
    #[arg(long, env = "RMA_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// `30s`, `15m`, `2h`, `7d`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 15m, 2h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?} is not a duration like 30s, 15m, 2h or 7d")),
    };
    if secs == 0 {
        return Err("a duration must be at least 1 second".into());
    }
    Ok(Duration::from_secs(secs))
}

/// The admin token: `RMA_ADMIN_TOKEN`, else the file.
fn admin_token(file: Option<&Path>) -> Result<String> {
    if let Ok(t) = std::env::var("RMA_ADMIN_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_owned());
    }
    let Some(file) = file else {
        anyhow::bail!(
            "this needs the router's admin token: set RMA_ADMIN_TOKEN or pass --admin-token-file (the router wrote admin.token beside its --db)"
        );
    };
    let t = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the admin token from {}", file.display()))?;
    anyhow::ensure!(!t.trim().is_empty(), "{} is empty", file.display());
    Ok(t.trim().to_owned())
}

fn admin_client(a: &AdminArgs) -> Result<Client> {
    let token = admin_token(a.admin_token_file.as_deref())?;
    Ok(Client::new(&a.router)
        .map_err(|e| anyhow::anyhow!("--router: {e}"))?
        .with_bearer(token))
}

/// A join token for `role`, made by the router `admin` talks to.
pub(crate) async fn make_invite(
    admin: &Client,
    role: Role,
    services: Option<Vec<String>>,
    owner: Option<String>,
    ttl: Duration,
    uses: u32,
) -> Result<String> {
    let invite = admin
        .invite(&InviteRequest {
            role: role.as_str().to_owned(),
            services,
            ttl_s: Some(ttl.as_secs()),
            uses: Some(uses),
            owner,
            router_url: Some(admin.base().as_str().trim_end_matches('/').to_owned()),
        })
        .await
        .context("the router refused the invite")?;
    Ok(invite.token)
}

pub(crate) async fn invite(a: InviteArgs) -> Result<()> {
    let admin = admin_client(&a.admin)?;
    let token = make_invite(&admin, a.role, a.services, a.owner, a.ttl, a.uses).await?;
    // The token and nothing else on stdout, for scripts.
    println!("{token}");
    Ok(())
}

pub(crate) async fn revoke(a: RevokeArgs) -> Result<()> {
    rma_proto::ids::validate(&a.node).context("NODE")?;
    admin_client(&a.admin)?
        .revoke(&a.node)
        .await
        .context("the router refused the revocation")?;
    eprintln!(
        "{} revoked: it can no longer register, renew or link; coordinators drop it at their next heartbeat",
        a.node
    );
    Ok(())
}

pub(crate) async fn nodes(a: NodesArgs) -> Result<()> {
    let list = admin_client(&a.admin)?
        .nodes()
        .await
        .context("cannot list the nodes")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for n in list {
        let services = n.services.map_or("any".to_owned(), |s| s.join(","));
        let state = n
            .revoked_at
            .map_or("active".to_owned(), |t| format!("revoked {t}"));
        println!(
            "{:<32} {:<12} {:<24} {}",
            n.node_id, n.role, services, state
        );
    }
    Ok(())
}

/// `rma status`: the federation as the router sees it — coordinators, workers, and who is
/// stale or quarantined.
pub(crate) async fn status(a: StatusArgs) -> Result<()> {
    let mut client = Client::new(&a.router).map_err(|e| anyhow::anyhow!("--router: {e}"))?;
    let admin = admin_token(a.admin_token_file.as_deref()).ok();
    if let Some(token) = &admin {
        client = client.with_bearer(token.clone());
    }
    let t = client
        .topology()
        .await
        .with_context(|| format!("cannot read the topology of {}", a.router))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    print!("{}", status_screen(&t));
    // With the admin token: what today costs against the edge's free tier.
    if admin.is_some()
        && let Ok(u) = client.usage().await
    {
        print!("{}", usage_lines(&u));
    }
    let quarantined = t
        .workers
        .iter()
        .filter(|w| w.status == rma_proto::api::WorkerStatus::Quarantined)
        .count();
    if quarantined > 0 {
        println!(
            "{quarantined} worker(s) quarantined: their answers disagreed with other owners' in spot checks; revoke them with `rma revoke NODE`"
        );
    }
    Ok(())
}

/// `usage today (UTC …)`: each counter as used, projected and free-tier limit, then the
/// warning when there is one.
fn usage_lines(u: &rma_proto::api::Usage) -> String {
    let parts: Vec<String> = u
        .counters
        .iter()
        .map(|c| {
            format!(
                "{} {} (projected {} of {}, {:.0} % headroom)",
                c.name, c.used, c.projected, c.free_tier_limit, c.headroom_percent
            )
        })
        .collect();
    let mut out = format!(
        "\nusage today (UTC {}, against the edge's free tier): {}\n",
        u.day,
        parts.join("; ")
    );
    if let Some(w) = &u.warning {
        out.push_str(&format!("WARNING: past 80 % of the free tier: {w}\n"));
    }
    out
}

/// `ocr 812ms, echo 3.1ms`: p99 per service, or `-`.
fn p99s(m: &std::collections::BTreeMap<String, f64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(s, ms)| {
            if *ms >= 1000.0 {
                format!("{s} {:.1}s", ms / 1000.0)
            } else if *ms >= 10.0 {
                format!("{s} {ms:.0}ms")
            } else {
                format!("{s} {ms:.1}ms")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operator's one screen: coordinators, then workers, one line each.
pub(crate) fn status_screen(t: &rma_proto::api::Topology) -> String {
    use std::fmt::Write;
    let word = |v: serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let mut out = String::new();
    let active = t
        .workers
        .iter()
        .filter(|w| w.status == rma_proto::api::WorkerStatus::Active)
        .count();
    let _ = writeln!(
        out,
        "{} coordinator(s), {} worker(s), {} active; req/min and failures over the last minute, p99 over the last 1–2 minutes",
        t.coordinators.len(),
        t.workers.len(),
        active
    );
    let _ = writeln!(
        out,
        "\nCOORDINATOR                  STATE        WORKERS  LOAD  IN-FLIGHT  REQ/MIN  FAIL/MIN  P99 (router → coordinator)"
    );
    for c in &t.coordinators {
        let _ = writeln!(
            out,
            "{:<28} {:<12} {:>7} {:>4.0}% {:>10} {:>8} {:>9}  {}",
            c.id,
            word(serde_json::to_value(c.status).unwrap_or_default()),
            c.workers,
            c.load * 100.0,
            c.active_requests,
            c.requests_last_minute,
            c.failures_last_minute,
            p99s(&c.latency_p99_ms)
        );
    }
    let _ = writeln!(
        out,
        "\nWORKER                       TYPE  STATE        COORDINATOR              LOAD  IN-FLIGHT  REQ/MIN  FAIL/MIN  SERVICES  P99 (coordinator → worker)"
    );
    for w in &t.workers {
        let status = word(serde_json::to_value(w.status).unwrap_or_default());
        let _ = writeln!(
            out,
            "{:<28} {:<5} {:<12} {:<24} {:>3.0}% {:>10} {:>8} {:>9}  {}  {}",
            w.id,
            w.worker_type.to_string(),
            if status == "quarantined" {
                "QUARANTINED".to_owned()
            } else {
                status
            },
            w.coordinator,
            w.load * 100.0,
            w.active_requests,
            w.requests_last_minute,
            w.failures_last_minute,
            w.services.join(","),
            p99s(&w.latency_p99_ms)
        );
    }
    out
}

/// The identity in `dir`, enrolling with `join` when there is none.
pub(crate) async fn identity(
    dir: &Path,
    join: Option<&str>,
    role: Role,
    node_id: &str,
) -> Result<Arc<Identity>> {
    rma_client::identity::obtain(dir, join, role, node_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// For the processes `rma up` starts: the identity in `dir`, or one enrolled now with an
/// invite `admin` makes. An identity of another federation (the router's files were removed
/// and the data dir kept) is replaced.
pub(crate) async fn local_identity(
    admin: &Client,
    dir: &Path,
    role: Role,
    node_id: &str,
    federation: &rma_auth::PublicKey,
) -> Result<Arc<Identity>> {
    let kept = Identity::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let join = match kept {
        Some(id) if id.verifier().public() == federation => None,
        stale => {
            if stale.is_some() {
                tracing::info!(dir = %dir.display(), "identity of another federation; enrolling again");
                let _ = std::fs::remove_file(dir.join("identity.json"));
            }
            Some(make_invite(admin, role, None, None, Duration::from_secs(60), 1).await?)
        }
    };
    identity(dir, join.as_deref(), role, node_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "m", "0s", "5y", "-1m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
