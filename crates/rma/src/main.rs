//! `rma`: one binary, one subcommand per role. The roles are libraries; this file only parses
//! flags, sets up logging, starts them and waits for Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod edge;
mod members;
mod submit;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rma_proto::WorkerType;
use tokio::net::TcpListener;

/// rma: a federated worker system that reads debt-advice documents on volunteered machines.
#[derive(Debug, Parser)]
#[command(name = "rma", version, about, long_about = None)]
struct Cli {
    /// A PEM certificate (a federation's own CA, or a self-signed certificate) to trust for
    /// https and wss beside the system's roots.
    #[arg(long, global = true, env = "RMA_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Export each hop's trace span over OTLP/HTTP (JSON) to this collector, e.g.
    /// http://127.0.0.1:4318 (`/v1/traces` is added).
    #[arg(long, global = true, env = "RMA_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `--tls-cert` / `--tls-key`.
#[derive(Debug, Args)]
struct TlsArgs {
    /// Serve https with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "RMA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "RMA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn config(&self) -> Result<Option<rma_http::tls::TlsConfig>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Ok(Some(
                rma_http::tls::server_config(c, k).context("--tls-cert/--tls-key")?,
            )),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge router: the public entry point, registry of coordinators, request routing.
    Router(RouterArgs),
    /// Run an edge coordinator: registry of workers, assignment, dispatch.
    Coordinator(CoordinatorArgs),
    /// Run a universal worker: detect this machine's capabilities, register, serve.
    Worker(WorkerArgs),
    /// Run a whole federation on loopback in one process: router, coordinator and workers.
    Up(UpArgs),
    /// Print what this machine's worker would detect and the services it would be assigned.
    Probe(ProbeArgs),
    /// Send documents to be read; show progress; print text and facts.
    Submit(submit::SubmitArgs),
    /// Make a join token (printed alone on stdout) for a coordinator, worker or client.
    Invite(members::InviteArgs),
    /// Revoke a node: it can no longer register, renew its credential or link.
    Revoke(members::RevokeArgs),
    /// List the enrolled nodes.
    Nodes(members::NodesArgs),
    /// Show the federation: coordinators, workers, who is stale or quarantined.
    Status(members::StatusArgs),
}

#[derive(Debug, Args)]
struct RouterArgs {
    /// Address to listen on.
    #[arg(long, env = "RMA_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// SQLite file of the coordinator registry (created when missing).
    #[arg(long, env = "RMA_ROUTER_DB", default_value = "./rma-router.db")]
    db: PathBuf,
    /// Seconds without a heartbeat before a coordinator is stale (out of routing); it is
    /// removed after twice this.
    #[arg(long, env = "RMA_STALE_AFTER", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    stale_after: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RMA_MAX_BODY", default_value_t = 50 * 1024 * 1024)]
    max_body: usize,
    /// Seconds between active pings of every coordinator.
    #[arg(long, env = "RMA_PING_INTERVAL", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval: u64,
    /// Seconds between heartbeats the router asks of every coordinator (in its register
    /// reply; at most half of --stale-after). Unset: each coordinator keeps its own (10 s).
    #[arg(long, env = "RMA_COORDINATOR_HEARTBEAT_INTERVAL", value_parser = clap::value_parser!(u64).range(1..))]
    coordinator_heartbeat_interval: Option<u64>,
    /// Seconds to keep retrying a request when every coordinator offering its service failed
    /// (a failover in progress) before answering 503.
    #[arg(long, env = "RMA_FAILOVER_WAIT", default_value_t = 5)]
    failover_wait: u64,
    /// Pings missed in a row before a coordinator is out of rotation (one answer brings it back).
    #[arg(long, env = "RMA_PING_MISSES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    ping_misses: u32,
    /// Service requests and registrations one address may send a second; 0 turns the limit
    /// off (benchmarks). Over it: 429 with Retry-After.
    #[arg(long, env = "RMA_IP_RATE_LIMIT", default_value_t = 10)]
    ip_rate_limit: u32,
    /// How many of them one address may send at once before the rate applies.
    #[arg(long, env = "RMA_IP_RATE_BURST", default_value_t = 50)]
    ip_rate_burst: u32,
    /// Megabytes of uploads one address may send an hour without a client key (0: no quota).
    #[arg(long, env = "RMA_IP_UPLOAD_MB_PER_HOUR", default_value_t = 1024)]
    ip_upload_mb_per_hour: u32,
    /// Who may upload: `open` (anyone, limited per address) or `keyed` (only organisations with
    /// a client key: rma invite --role client).
    #[arg(long, env = "RMA_CLIENTS", value_enum, default_value = "open")]
    clients: ClientsArg,
    /// How to choose among candidates: p2c (power of two choices over peak-EWMA service time ×
    /// in-flight), weighted (1/(latency+1) × 1/(queue+1) × health, weighted random) or
    /// round-robin.
    #[arg(long, env = "RMA_BALANCE", default_value = "p2c", value_parser = clap::value_parser!(rma_http::balance::Balance))]
    balance: rma_http::balance::Balance,
    /// Uploads one client key may send a second (0: no limit).
    #[arg(long, env = "RMA_CLIENT_RATE_LIMIT", default_value_t = 50)]
    client_rate_limit: u32,
    /// How many of them one client key may send at once.
    #[arg(long, env = "RMA_CLIENT_RATE_BURST", default_value_t = 200)]
    client_rate_burst: u32,
    /// Call plain-http URLs that others register, not only https (a LAN without TLS).
    #[arg(long, env = "RMA_ALLOW_HTTP")]
    allow_http: bool,
    /// Call private, CGNAT and loopback addresses that others register (a home LAN).
    /// Link-local and metadata addresses are never called.
    #[arg(long, env = "RMA_ALLOW_PRIVATE_ADDRESSES")]
    allow_private_addresses: bool,
    /// The federation's signing key, which must exist [default: federation.key beside --db,
    /// made on the first start]. A second router of the same federation is given a copy of the
    /// first one's key here (see docs/reliability.md, "Several routers").
    #[arg(long, env = "RMA_FEDERATION_KEY")]
    federation_key: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Args)]
struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, env = "RMA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The router to register at (e.g. http://127.0.0.1:8787), or several separated by commas:
    /// the coordinator registers and heartbeats with each [default: the router it enrolled at].
    /// Without one the coordinator runs standalone and workers register with it directly.
    #[arg(long, env = "RMA_ROUTER_URL", value_delimiter = ',')]
    router_url: Vec<String>,
    /// The URL the router and workers should use to reach this coordinator
    /// [default: http://{listen}, with 0.0.0.0 read as 127.0.0.1].
    #[arg(long, env = "RMA_PUBLIC_URL")]
    public_url: Option<String>,
    /// The id to ask for when enrolling [default: coord-{hostname}-{port}]; later starts use
    /// the enrolled id.
    #[arg(long, env = "RMA_COORDINATOR_ID")]
    id: Option<String>,
    /// Where the coordinator keeps its key, credential and metrics token.
    #[arg(long, env = "RMA_DATA_DIR", default_value = "./rma-coordinator")]
    data_dir: PathBuf,
    /// A join token (`rma invite --role coordinator`), needed on the first start only.
    #[arg(long, env = "RMA_JOIN_TOKEN", hide_env_values = true)]
    join: Option<String>,
    /// The token /metrics and /api/workers take [default: made once in {data-dir}/metrics.token].
    #[arg(long, env = "RMA_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Share of OCR, PDF-text, clean-up and extraction answers also asked of a worker of another
    /// owner and compared (0 to 1); `?verify=true` checks any call.
    #[arg(long, env = "RMA_SPOT_CHECK_SHARE", default_value_t = 0.05)]
    spot_check_share: f64,
    /// Jobs queued or running at most; a submission past it gets 429.
    #[arg(long, env = "RMA_MAX_UNFINISHED_JOBS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_unfinished_jobs: u32,
    /// Of them, what one client key may have.
    #[arg(long, env = "RMA_MAX_UNFINISHED_JOBS_PER_CLIENT", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_unfinished_jobs_per_client: u32,
    /// Service requests one client key may send a second to this coordinator directly (not
    /// through the router, which limits clients itself); 0: no limit. Over it: 429.
    #[arg(
        long = "client-rate-limit",
        env = "RMA_COORDINATOR_CLIENT_RATE_LIMIT",
        default_value_t = 50
    )]
    client_rate_limit: u32,
    /// How many of them one client key may send at once.
    #[arg(
        long = "client-rate-burst",
        env = "RMA_COORDINATOR_CLIENT_RATE_BURST",
        default_value_t = 200
    )]
    client_rate_burst: u32,
    /// Requests one worker may have in flight at once; a worker at it is passed over.
    #[arg(long, env = "RMA_MAX_IN_FLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// How to choose among candidates: p2c (power of two choices over peak-EWMA service time ×
    /// in-flight), weighted (1/(latency+1) × 1/(queue+1) × health, weighted random) or
    /// round-robin.
    #[arg(long, env = "RMA_BALANCE", default_value = "p2c", value_parser = clap::value_parser!(rma_http::balance::Balance))]
    balance: rma_http::balance::Balance,
    /// Pings a second for all worker links together; past it, each link is pinged less often
    /// (the interval doubles, up to 64 s) and its worker is told. 0: always every second.
    #[arg(long, env = "RMA_LINK_PING_BUDGET", default_value_t = 1_000)]
    link_ping_budget: u32,
    /// Spot checks a worker may lose before it is quarantined (no new work).
    #[arg(long, env = "RMA_QUARANTINE_AFTER", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    quarantine_after: u32,
    #[command(flatten)]
    tls: TlsArgs,
    /// Free text shown in the admin API, e.g. "Leeds office".
    #[arg(long, env = "RMA_LOCATION")]
    location: Option<String>,
    /// This coordinator's member id in a replication group (1, 2, 3…): with --group or
    /// --group-join, its jobs live in the group's Raft log (docs/reliability.md).
    #[arg(long, env = "RMA_GROUP_ID", value_parser = clap::value_parser!(u64).range(1..))]
    group_id: Option<u64>,
    /// The founding members of its group, this one included:
    /// `1=coord-a@http://10.0.0.11:8080,2=coord-b@…,3=coord-c@…` (3 or 5 members).
    #[arg(long, env = "RMA_GROUP")]
    group: Option<String>,
    /// Join a running group through any of its members (a new, empty coordinator).
    #[arg(long, env = "RMA_GROUP_JOIN")]
    group_join: Option<String>,
    /// When joining, the member id of a dead member this coordinator replaces.
    #[arg(long, env = "RMA_GROUP_REPLACE", value_parser = clap::value_parser!(u64).range(1..))]
    group_replace: Option<u64>,
    /// Log entries between snapshots of the group's job log (a member far behind, or a new
    /// one, catches up from the latest).
    #[arg(long, env = "RMA_GROUP_SNAPSHOT_EVERY", default_value_t = 500, value_parser = clap::value_parser!(u64).range(5..))]
    group_snapshot_every: u64,
    /// Seconds without a heartbeat before a worker is stale; it is removed after twice this.
    #[arg(long, env = "RMA_WORKER_TIMEOUT", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    worker_timeout: u64,
    /// Seconds a service request may take before the client gets 504.
    #[arg(long, env = "RMA_REQUEST_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// Seconds between heartbeats to the router (sent at once, too, when workers come or go).
    #[arg(long, env = "RMA_ROUTER_HEARTBEAT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    router_heartbeat: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RMA_MAX_BODY", default_value_t = 50 * 1024 * 1024)]
    max_body: usize,
    /// SQLite file of async jobs (they survive a restart).
    #[arg(long, env = "RMA_JOBS_DB", default_value = "./rma-coordinator.db")]
    jobs_db: PathBuf,
    /// Days finished jobs and their results are kept.
    #[arg(long, env = "RMA_JOB_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    job_retention_days: u64,
    /// Call plain-http URLs that others register, not only https (a LAN without TLS).
    #[arg(long, env = "RMA_ALLOW_HTTP")]
    allow_http: bool,
    /// Call private, CGNAT and loopback addresses that others register (a home LAN).
    /// Link-local and metadata addresses are never called.
    #[arg(long, env = "RMA_ALLOW_PRIVATE_ADDRESSES")]
    allow_private_addresses: bool,
}

/// `--clients` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientsArg {
    /// Anyone may upload (limited per address).
    Open,
    /// Uploads need a client key.
    Keyed,
}

/// `WORKER_TYPE` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TypeArg {
    /// Detect every capability.
    Auto,
    /// Force gpu.
    Gpu,
    /// Force edge.
    Edge,
    /// Force storage.
    Storage,
    /// Force cpu only.
    Cpu,
}

impl TypeArg {
    fn forced(self) -> Option<WorkerType> {
        match self {
            TypeArg::Auto => None,
            TypeArg::Gpu => Some(WorkerType::Gpu),
            TypeArg::Edge => Some(WorkerType::Edge),
            TypeArg::Storage => Some(WorkerType::Storage),
            TypeArg::Cpu => Some(WorkerType::Cpu),
        }
    }
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// The router (or a coordinator) to register at, or several separated by commas, tried in
    /// turn [default: the router it enrolled at].
    #[arg(long, env = "COORDINATOR_URL")]
    coordinator_url: Option<String>,
    /// The id to ask for when enrolling [default: worker-{hostname}]; later starts use the
    /// enrolled id.
    #[arg(long, env = "WORKER_ID")]
    worker_id: Option<String>,
    /// A join token (`rma invite --role worker`), needed on the first start only.
    #[arg(long, env = "RMA_JOIN_TOKEN", hide_env_values = true)]
    join: Option<String>,
    /// Force a worker type instead of detecting capabilities.
    #[arg(
        long,
        env = "WORKER_TYPE",
        value_enum,
        default_value = "auto",
        ignore_case = true
    )]
    worker_type: TypeArg,
    /// A URL this worker can also be reached at (e.g. a Cloudflare tunnel).
    #[arg(long, env = "TUNNEL_URL")]
    tunnel_url: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "RMA_HEARTBEAT_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_interval: u64,
    /// Where services keep their files; its free space decides the storage capability.
    #[arg(long, env = "RMA_DATA_DIR", default_value = "./rma-data")]
    data_dir: PathBuf,
    /// An OpenAI-compatible backend (e.g. http://127.0.0.1:11434 for Ollama); enables `ai`.
    #[arg(long, env = "RMA_AI_BACKEND")]
    ai_backend: Option<String>,
    /// OCR engines to run in parallel [default: one per core].
    #[arg(long, env = "RMA_OCR_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    ocr_threads: Option<u16>,
    /// Tunnel mode: also serve the services over HTTP on this address (TUNNEL_URL should lead
    /// to it; without TUNNEL_URL the worker registers http://{listen}).
    #[arg(long, env = "RMA_WORKER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Start `cloudflared tunnel --url` for the worker's listener and register the public URL
    /// it prints (needs cloudflared on the PATH).
    #[arg(long, env = "USE_TUNNEL")]
    use_tunnel: bool,
    /// Keep no link to the coordinator: work comes only over the tunnel URL.
    #[arg(long, env = "RMA_NO_LINK")]
    no_link: bool,
    /// On Ctrl-C or SIGTERM, seconds to finish the requests in hand before stopping.
    #[arg(long, env = "RMA_DRAIN_GRACE", default_value_t = 30)]
    drain_grace: u64,
    /// Serve Prometheus metrics on this address (GET /metrics with the metrics token).
    #[arg(long, env = "RMA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// The token /metrics takes [default: made once in {data-dir}/metrics.token].
    #[arg(long, env = "RMA_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Services to serve from the start, comma-separated [default: all this machine can run].
    /// The others it can run are standby: its coordinator assigns them live while their queue
    /// grows and takes them back when it drains.
    #[arg(long, env = "RMA_SERVICES", value_delimiter = ',')]
    services: Option<Vec<String>>,
    /// Make every call take this many times as long, one call at a time (1 to 100): a stand-in
    /// for a slow single-core machine in benchmarks and tests, never for production.
    #[arg(long, env = "RMA_SLOWDOWN", default_value_t = 1.0)]
    slowdown: f64,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Address of the router (and the web UI).
    #[arg(long, env = "RMA_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Workers to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// Where the router's registry and the workers' files live.
    #[arg(long, env = "RMA_DATA_DIR", default_value = "./rma-data")]
    data_dir: PathBuf,
    /// Run the edge router (edge/: the Cloudflare Worker and its Durable Object, in local
    /// workerd through `wrangler dev`) in place of the built-in router.
    #[arg(long)]
    edge: bool,
    /// Where the edge router's project is (with `npm ci` done in it).
    #[arg(long, env = "RMA_EDGE_DIR", default_value = "./edge")]
    edge_dir: PathBuf,
}

/// The router `rma up` runs: built in, or the edge Worker in local workerd.
enum UpRouter {
    Builtin(rma_router::RouterHandle),
    Edge(edge::EdgeRouter),
}

impl UpRouter {
    fn url(&self) -> String {
        match self {
            UpRouter::Builtin(r) => r.url(),
            UpRouter::Edge(e) => e.url(),
        }
    }
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The data directory whose free space counts.
    #[arg(long, env = "RMA_DATA_DIR", default_value = "./rma-data")]
    data_dir: PathBuf,
    /// Apply a forced worker type, as `rma worker` would.
    #[arg(
        long,
        env = "WORKER_TYPE",
        value_enum,
        default_value = "auto",
        ignore_case = true
    )]
    worker_type: TypeArg,
}

/// Tesseract is built with OpenMP, which reads `OMP_THREAD_LIMIT` once, when the library is
/// loaded. rma runs one engine per core, so OpenMP's extra threads only fight over the same cores
/// (a page took 2.5 s with them and 0.3 s without on a 2-core machine). When the variable is not
/// set, the process runs itself again with it set to 1 before anything else happens.
#[cfg(unix)]
fn limit_openmp_threads() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_THREAD_LIMIT").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_THREAD_LIMIT", "1")
        .exec();
    // Only reached when exec failed; carry on without the limit.
    eprintln!("warning: could not set OMP_THREAD_LIMIT=1 ({err}); OCR may be slower");
}

#[cfg(not(unix))]
fn limit_openmp_threads() {}

/// mimalloc instead of glibc's malloc: allocation and freeing were about a tenth of the CPU a
/// forwarded request costs (docs/benchmarks.md, "the faster path").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_openmp_threads();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                _ => {
                    // One line: clap's first paragraph names the flag and the problem.
                    let text = e.render().to_string();
                    let para: Vec<&str> = text
                        .lines()
                        .take_while(|l| !l.trim().is_empty())
                        .map(str::trim)
                        .collect();
                    eprintln!("{} (see rma --help)", para.join(" "));
                    ExitCode::from(2)
                }
            };
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_http=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(ca) = &cli.ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("--ca-cert {}", ca.display()))?;
        rma_client::trust_pem(&pem)
            .map_err(|e| anyhow::anyhow!("--ca-cert {}: {e}", ca.display()))?;
    }
    if let Some(endpoint) = &cli.otlp_endpoint {
        let role = match &cli.command {
            Command::Router(_) => "rma-router",
            Command::Coordinator(_) => "rma-coordinator",
            Command::Worker(_) => "rma-worker",
            _ => "rma",
        };
        rma_http::otlp::start(endpoint, role).context("--otlp-endpoint")?;
    }
    if matches!(
        cli.command,
        Command::Router(_) | Command::Coordinator(_) | Command::Worker(_) | Command::Up(_)
    ) {
        raise_open_files();
    }
    match cli.command {
        Command::Router(a) => router(a).await,
        Command::Coordinator(a) => coordinator(a).await,
        Command::Worker(a) => worker(a).await,
        Command::Up(a) => up(a).await,
        Command::Probe(a) => probe(a).await,
        Command::Submit(a) => submit::run(a).await,
        Command::Invite(a) => members::invite(a).await,
        Command::Revoke(a) => members::revoke(a).await,
        Command::Nodes(a) => members::nodes(a).await,
        Command::Status(a) => members::status(a).await,
    }
}

/// Every link, coordinator and client connection is a file descriptor: raise the soft limit
/// to the hard one, and say so when even that is low for a coordinator of many workers.
fn raise_open_files() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) if now < 4096 => tracing::warn!(
            limit = now,
            "only {now} open files allowed: a coordinator holds one per linked worker; raise the hard limit (ulimit -Hn, or LimitNOFILE= in a systemd unit)"
        ),
        Ok(now) if now > before => {
            tracing::debug!(from = before, to = now, "raised the open files limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn router_config(db: PathBuf, stale_after: u64, max_body: usize) -> rma_router::RouterConfig {
    let mut c = rma_router::RouterConfig::with_stale_after(db, Duration::from_secs(stale_after));
    c.max_body_bytes = max_body;
    c
}

async fn router(a: RouterArgs) -> Result<()> {
    let mut config = router_config(a.db.clone(), a.stale_after, a.max_body);
    config.ping_interval = Duration::from_secs(a.ping_interval);
    config.coordinator_heartbeat_interval =
        a.coordinator_heartbeat_interval.map(Duration::from_secs);
    config.ping_misses = a.ping_misses;
    config.failover_wait = Duration::from_secs(a.failover_wait);
    config.url_policy.allow_http = a.allow_http;
    config.url_policy.allow_private = a.allow_private_addresses;
    config.ip_rate_limit = a.ip_rate_limit;
    config.ip_rate_burst = a.ip_rate_burst;
    config.clients_keyed = a.clients == ClientsArg::Keyed;
    config.ip_upload_mb_per_hour = a.ip_upload_mb_per_hour;
    config.client_rate_limit = a.client_rate_limit;
    config.client_rate_burst = a.client_rate_burst;
    config.balance = a.balance;
    config.tls = a.tls.config()?;
    if let Some(path) = &a.federation_key {
        config.federation_key = Some(
            rma_auth::FederationKey::load(path)
                .with_context(|| format!("--federation-key {}", path.display()))?,
        );
    }
    let handle = rma_router::spawn(config, bind(a.listen).await?)
        .with_context(|| format!("cannot start the router with registry {}", a.db.display()))?;
    eprintln!("rma router listening on {}", handle.url());
    stop_signal().await;
    eprintln!("rma router stopping");
    Ok(())
}

fn coordinator_config(
    a: &CoordinatorArgs,
    identity: std::sync::Arc<rma_auth::Identity>,
) -> rma_coordinator::CoordinatorConfig {
    let mut routers: Vec<String> = a
        .router_url
        .iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if routers.is_empty() {
        routers.extend(identity.router_url().map(str::to_owned));
    }
    let mut c = rma_coordinator::CoordinatorConfig::new(identity)
        .with_worker_timeout(Duration::from_secs(a.worker_timeout));
    c.router_urls = routers;
    c.public_url = a.public_url.clone();
    c.location = a.location.clone();
    c.request_timeout = Duration::from_secs(a.request_timeout);
    c.router_heartbeat_interval = Duration::from_secs(a.router_heartbeat);
    c.max_body_bytes = a.max_body;
    c.jobs_db = Some(a.jobs_db.clone());
    c.job_retention = Duration::from_secs(a.job_retention_days * 24 * 3600);
    c.url_policy.allow_http = a.allow_http;
    c.url_policy.allow_private = a.allow_private_addresses;
    c
}

/// `--group-id` with `--group` (founding) or `--group-join` (joining), checked.
fn group_config(a: &CoordinatorArgs) -> Result<Option<rma_coordinator::GroupConfig>> {
    let Some(node_id) = a.group_id else {
        anyhow::ensure!(
            a.group.is_none() && a.group_join.is_none() && a.group_replace.is_none(),
            "--group, --group-join and --group-replace need --group-id"
        );
        return Ok(None);
    };
    let mut members = std::collections::BTreeMap::new();
    if let Some(list) = &a.group {
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .with_context(|| format!("--group: {part:?} is not ID=COORDINATOR@URL"))?;
            let id: u64 = id
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("--group: {id:?} is not a member id (1, 2, 3…)"))?;
            let (coord, url) = rma_replica::split_addr(addr.trim())
                .with_context(|| format!("--group: {addr:?} is not COORDINATOR@URL"))?;
            rma_proto::ids::validate(coord).with_context(|| format!("--group: {coord:?}"))?;
            let url = rma_proto::urls::base_url("--group", url)?;
            anyhow::ensure!(
                members
                    .insert(id, rma_replica::node_addr(coord, &url))
                    .is_none(),
                "--group: member id {id} is given twice"
            );
        }
        anyhow::ensure!(
            members.contains_key(&node_id),
            "--group does not list this coordinator's --group-id {node_id}"
        );
        anyhow::ensure!(
            members.len() >= 3,
            "--group: a group needs 3 or 5 members to survive one or two failures; it lists {}",
            members.len()
        );
    } else {
        anyhow::ensure!(
            a.group_join.is_some(),
            "--group-id needs --group (founding members) or --group-join (a member's URL)"
        );
    }
    let join = a
        .group_join
        .as_deref()
        .map(|u| rma_proto::urls::base_url("--group-join", u))
        .transpose()?;
    Ok(Some(rma_coordinator::GroupConfig {
        node_id,
        members,
        join,
        replace: a.group_replace,
        path: a.data_dir.join("replica.db"),
        snapshot_every: a.group_snapshot_every,
    }))
}

async fn coordinator(a: CoordinatorArgs) -> Result<()> {
    if let Some(id) = &a.id {
        rma_proto::ids::validate(id).context("--id")?;
    }
    let wanted = a.id.clone().unwrap_or_else(|| {
        let host = rma_worker::probe::hostname().unwrap_or_else(|| "unknown".into());
        format!(
            "coord-{}-{}",
            rma_proto::ids::sanitize(&host),
            a.listen.port()
        )
    });
    // Checked before enrolling: a bad flag must not spend the join token.
    let tls = a.tls.config()?;
    let group = group_config(&a)?;
    let identity = members::identity(
        &a.data_dir,
        a.join.as_deref(),
        rma_auth::Role::Coordinator,
        &wanted,
    )
    .await?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.spot_check_share),
        "--spot-check-share {} is not between 0 and 1",
        a.spot_check_share
    );
    let mut cfg = coordinator_config(&a, identity);
    cfg.spot_check_share = a.spot_check_share;
    cfg.quarantine_after = a.quarantine_after;
    cfg.max_in_flight_per_worker = a.max_in_flight;
    cfg.balance = a.balance;
    cfg.link_ping_budget = a.link_ping_budget;
    cfg.max_unfinished_jobs = a.max_unfinished_jobs as usize;
    cfg.max_unfinished_jobs_per_client = a.max_unfinished_jobs_per_client as usize;
    cfg.client_rate_limit = a.client_rate_limit;
    cfg.client_rate_burst = a.client_rate_burst;
    cfg.tls = tls;
    cfg.group = group;
    cfg.metrics_token = Some(match &a.metrics_token {
        Some(t) => t.clone(),
        None => secret_file(&a.data_dir.join("metrics.token"))?,
    });
    let handle = rma_coordinator::spawn(cfg.clone(), bind(a.listen).await?)
        .context("cannot start the coordinator")?;
    eprintln!("rma coordinator {} listening on {}", cfg.id, handle.url());
    stop_signal().await;
    eprintln!("rma coordinator stopping");
    rma_coordinator::deregister(&cfg, Duration::from_secs(3)).await;
    Ok(())
}

async fn worker_config(a: WorkerArgs) -> Result<rma_worker::WorkerConfig> {
    if let Some(list) = &a.coordinator_url {
        let urls = rma_worker::split_urls(list);
        anyhow::ensure!(!urls.is_empty(), "--coordinator-url: no URL in {list:?}");
        for u in urls {
            rma_client::Client::new(&u).map_err(|e| anyhow::anyhow!("--coordinator-url: {e}"))?;
        }
    }
    let services = match &a.services {
        Some(list) => {
            let list: Vec<String> = list
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            for s in &list {
                anyhow::ensure!(
                    rma_proto::service::KNOWN.contains(&s.as_str()),
                    "--services: {s:?} is not a service (known: {})",
                    rma_proto::service::KNOWN.join(", ")
                );
            }
            anyhow::ensure!(!list.is_empty(), "--services: name at least one service");
            Some(list)
        }
        None => None,
    };
    let wanted = a
        .worker_id
        .clone()
        .unwrap_or_else(rma_worker::default_worker_id);
    rma_proto::ids::validate(&wanted).context("--worker-id")?;
    if let Some(t) = &a.tunnel_url {
        match url::Url::parse(t) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => anyhow::bail!("--tunnel-url {t:?} is not an http(s) URL"),
        }
    }
    // Everything that can be checked here is, before a join token's use is spent.
    anyhow::ensure!(
        (1.0..=100.0).contains(&a.slowdown),
        "--slowdown {} is not between 1 and 100",
        a.slowdown
    );
    if a.use_tunnel {
        rma_worker::find_cloudflared().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create data dir {}", a.data_dir.display()))?;
    let identity = members::identity(
        &a.data_dir,
        a.join.as_deref(),
        rma_auth::Role::Worker,
        &wanted,
    )
    .await?;
    let Some(url) = a
        .coordinator_url
        .clone()
        .or_else(|| identity.router_url().map(str::to_owned))
    else {
        anyhow::bail!("--coordinator-url is needed: this worker's identity names no router");
    };
    let mut c = rma_worker::WorkerConfig::new(url, identity);
    c.worker_type = a.worker_type.forced();
    c.tunnel_url = a.tunnel_url;
    c.heartbeat_interval = Duration::from_secs(a.heartbeat_interval);
    c.data_dir = a.data_dir;
    c.ai_backend = a.ai_backend;
    c.listen = a.listen;
    c.use_tunnel = a.use_tunnel;
    c.use_link = !a.no_link;
    c.slowdown = a.slowdown;
    c.services = services;
    if let Some(addr) = a.metrics_listen {
        c.metrics_listen = Some(addr);
        c.metrics_token = Some(match &a.metrics_token {
            Some(t) => t.clone(),
            None => secret_file(&c.data_dir.join("metrics.token"))?,
        });
    }
    if let Some(n) = a.ocr_threads {
        c.ocr_threads = n.into();
    }
    Ok(c)
}

async fn worker(a: WorkerArgs) -> Result<()> {
    let grace = Duration::from_secs(a.drain_grace);
    let cfg = worker_config(a).await?;
    let (id, at) = (cfg.worker_id.clone(), cfg.coordinator_urls.join(", "));
    let handle = rma_worker::spawn(cfg).context("cannot start the worker")?;
    eprintln!("rma worker {id} registering at {at}");
    let mut status = handle.watch();
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() { anyhow::bail!("the worker stopped"); }
                let s = status.borrow_and_update().clone();
                if s.linked {
                    eprintln!("linked to coordinator {}; serving {}", s.coordinator_id.unwrap_or_default(), s.assigned_services.join(", "));
                }
            }
            _ = stop_signal() => break,
        }
    }
    eprintln!(
        "rma worker draining: finishing the requests in hand (up to {} s)",
        grace.as_secs()
    );
    if handle.drain(grace).await {
        eprintln!("rma worker stopped cleanly");
    } else {
        eprintln!("rma worker stopped: the grace period ended with requests still running");
    }
    Ok(())
}

async fn up(a: UpArgs) -> Result<()> {
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create data dir {}", a.data_dir.display()))?;
    let router = if a.edge {
        // The edge router keeps its secrets as Worker secrets: the same two files, passed on.
        let admin_token = secret_file(&a.data_dir.join("admin.token"))?;
        let key_file = a.data_dir.join("federation.key");
        rma_auth::FederationKey::load_or_create(&key_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let seed = std::fs::read_to_string(&key_file)
            .with_context(|| format!("cannot read {}", key_file.display()))?;
        UpRouter::Edge(
            edge::EdgeRouter::start(
                &a.edge_dir,
                a.listen,
                &a.data_dir,
                &admin_token,
                seed.trim(),
            )
            .await?,
        )
    } else {
        UpRouter::Builtin(
            rma_router::spawn(
                router_config(a.data_dir.join("router.db"), 300, 50 * 1024 * 1024),
                bind(a.listen).await?,
            )
            .context("cannot start the router")?,
        )
    };
    // Everything enrols as any member would: invites made with the admin token, traded for
    // credentials over HTTP; later starts reuse the identities kept in the data dir.
    let admin_token = secret_file(&a.data_dir.join("admin.token"))?;
    let admin = rma_client::Client::new(&router.url())?.with_bearer(admin_token.clone());
    // The router made (or read) this key on start; identities must be of this federation.
    let federation = rma_auth::FederationKey::load_or_create(&a.data_dir.join("federation.key"))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .0
        .public();
    let cid = members::local_identity(
        &admin,
        &a.data_dir.join("coordinator"),
        rma_auth::Role::Coordinator,
        "coord-local",
        &federation,
    )
    .await?;
    let mut ccfg = rma_coordinator::CoordinatorConfig::new(cid);
    ccfg.metrics_token = Some(admin_token);
    ccfg.router_urls = vec![router.url()];
    ccfg.router_heartbeat_interval = Duration::from_secs(2);
    ccfg.jobs_db = Some(a.data_dir.join("coordinator-jobs.db"));
    let coordinator = rma_coordinator::spawn(ccfg.clone(), bind("127.0.0.1:0".parse()?).await?)
        .context("cannot start the coordinator")?;
    let dir = a.data_dir.clone();
    let caps = tokio::task::spawn_blocking(move || rma_worker::probe::probe(&dir, false)).await?;
    let mut workers = Vec::new();
    // The machine's cores are shared by every local worker.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 1..=a.workers {
        let dir = a.data_dir.join(format!("worker-{i}"));
        let wid = members::local_identity(
            &admin,
            &dir,
            rma_auth::Role::Worker,
            &format!("local-{i}"),
            &federation,
        )
        .await?;
        let mut w = rma_worker::WorkerConfig::new(router.url(), wid);
        w.data_dir = dir;
        w.capabilities = Some(caps.clone());
        w.heartbeat_interval = Duration::from_secs(10);
        w.ocr_threads = (cores / usize::from(a.workers)).max(1);
        // The first worker keeps documents and the result cache, so the whole pipeline runs.
        if i == 1 {
            w.worker_type = Some(WorkerType::Storage);
        }
        std::fs::create_dir_all(&w.data_dir)?;
        workers.push(rma_worker::spawn(w).context("cannot start a worker's services")?);
    }
    for w in &workers {
        let mut rx = w.watch();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| s.linked))
            .await
            .context("workers did not link within 30 s")??;
    }
    // Up means the router routes to them: it learns of workers from the coordinator's
    // heartbeats, which follow changes within a second.
    let public = rma_client::Client::new(&router.url()).context("the router's URL")?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(t) = public.topology().await
                && t.workers
                    .iter()
                    .filter(|w| w.status == rma_proto::api::WorkerStatus::Active)
                    .count()
                    >= workers.len()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .context("the router did not see the workers within 30 s")?;
    println!(
        "rma is up: router {}{} · coordinator {} · {} workers",
        router.url(),
        if a.edge {
            " (the edge Worker in local workerd)"
        } else {
            ""
        },
        coordinator.url(),
        workers.len()
    );
    println!("open {}/ in a browser · Ctrl-C stops", router.url());
    println!(
        "read a letter: rma submit --router {} letter.pdf",
        router.url()
    );
    println!(
        "admin views (/api/admin/coordinators, /metrics) and `rma invite` take the token in {}",
        a.data_dir.join("admin.token").display()
    );
    stop_signal().await;
    eprintln!("rma stopping: workers finish what they have (up to 10 s)");
    let drains = workers
        .into_iter()
        .map(|w| w.drain(Duration::from_secs(10)));
    for done in futures_util::future::join_all(drains).await {
        if !done {
            eprintln!("a worker still had requests running after 10 s");
        }
    }
    rma_coordinator::deregister(&ccfg, Duration::from_secs(2)).await;
    drop(coordinator);
    drop(router);
    Ok(())
}

/// A secret kept in a 0600 file: read, or made (256 random bits, hex) and written.
fn secret_file(path: &std::path::Path) -> Result<String> {
    let (token, made) = rma_auth::load_or_create_secret(path)
        .with_context(|| format!("cannot read or write {}", path.display()))?;
    if made {
        tracing::info!(path = %path.display(), "token written (mode 0600)");
    }
    Ok(token)
}

async fn probe(a: ProbeArgs) -> Result<()> {
    let dir = a.data_dir.clone();
    let caps = tokio::task::spawn_blocking(move || rma_worker::probe::probe(&dir, false)).await?;
    let implemented = rma_services_names();
    let assignment =
        rma_proto::capability::assign(&caps, a.worker_type.forced(), Some(&implemented));
    let planned = rma_proto::capability::assign(&caps, a.worker_type.forced(), None);
    if a.json {
        let v = rma_proto::api::ProbeReport {
            worker_id: rma_worker::default_worker_id(),
            capabilities: caps,
            worker_type: assignment.worker_type,
            detected: assignment.capabilities,
            assigned_services: assignment.services,
            services_by_capability: planned.services,
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!("worker id     {}", rma_worker::default_worker_id());
    if caps.gpus.is_empty() {
        println!("gpu           none (no NVIDIA GPU via NVML or nvidia-smi)");
    }
    for g in &caps.gpus {
        println!(
            "gpu           {} · {} MiB (via {})",
            g.name, g.memory_mib, g.source
        );
    }
    println!("cpu           {} cores", caps.cpu_cores);
    println!("memory        {:.1} GiB", gib(caps.memory_bytes));
    println!(
        "disk          {:.1} GiB free of {:.1} GiB at {} (storage needs > 100 GB)",
        gib(caps.disk_free_bytes),
        gib(caps.disk_total_bytes),
        a.data_dir.display()
    );
    println!(
        "public addr   {}",
        caps.public_address
            .as_deref()
            .unwrap_or("none (behind NAT: the worker dials out, no port needed)")
    );
    let names: Vec<&str> = assignment.capabilities.iter().map(|c| c.as_str()).collect();
    println!("capabilities  {}", names.join(", "));
    println!("worker type   {}", assignment.worker_type);
    println!("services      {}", assignment.services.join(", "));
    let missing: Vec<&String> = planned
        .services
        .iter()
        .filter(|s| !assignment.services.contains(s))
        .collect();
    if !missing.is_empty() {
        let m: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        println!("not in this build yet: {}", m.join(", "));
    }
    Ok(())
}

/// The services this build's workers implement.
fn rma_services_names() -> Vec<String> {
    rma_services::Registry::implemented()
}
