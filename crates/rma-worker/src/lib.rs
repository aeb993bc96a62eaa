//! The rma universal worker: detects what its machine can do ([`probe`]), registers and
//! heartbeats (`agent.rs`), keeps its link to a coordinator (`session.rs`, glue around the
//! session state machine of `rma_proto::link::session`) and runs the services it is assigned,
//! also over HTTP in tunnel mode (`tunnel.rs`).
//!
//! [`spawn`] starts one; the returned [`WorkerHandle`] reports the agent's status and stops the
//! worker when dropped (its link closes, as if the machine vanished).
#![deny(clippy::unwrap_used)]

mod agent;
pub mod probe;
mod session;
mod tunnel;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use agent::AgentStatus;
use rma_proto::{Capabilities, WorkerType};
use rma_services::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
pub use tunnel::find_cloudflared;

/// Everything a worker needs to start.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Routers (or coordinators) to register through, tried in turn: another takes over when
    /// one does not answer.
    pub coordinator_urls: Vec<String>,
    /// Its id: the node id its credential names.
    pub worker_id: String,
    /// Its identity: key and credential (renewed at the router).
    pub identity: Arc<rma_auth::Identity>,
    /// `WORKER_TYPE` when not `auto`.
    pub worker_type: Option<WorkerType>,
    /// A URL this worker can also be called at.
    pub tunnel_url: Option<String>,
    /// How often to heartbeat [30 s].
    pub heartbeat_interval: Duration,
    /// Where services keep their files.
    pub data_dir: PathBuf,
    /// Largest message accepted on the link [50 MB].
    pub max_body_bytes: usize,
    /// Skip the probe and report these (tests, and `rma up`'s simulated workers).
    pub capabilities: Option<Capabilities>,
    /// An OpenAI-compatible backend for the `ai` service.
    pub ai_backend: Option<String>,
    /// OCR engines to run [cores].
    pub ocr_threads: usize,
    /// Load the OCR engines at start rather than on the first page [true].
    pub ocr_warm: bool,
    /// Serve services over HTTP on this address too (tunnel mode).
    pub listen: Option<std::net::SocketAddr>,
    /// Start `cloudflared` for the listener and use the URL it prints as `tunnel_url`.
    pub use_tunnel: bool,
    /// Keep a link to the coordinator [true]; without one, work comes only over `tunnel_url`.
    pub use_link: bool,
    /// The services it starts serving (`--services`); the rest it can run are standby, which
    /// its coordinator assigns live while their queue grows. `None`: all from the start.
    pub services: Option<Vec<String>>,
    /// Every call takes this many times as long, and calls run one at a time [1.0: off]: the
    /// benchmarks' stand-in for an old single-core laptop next to a gaming PC. Values below 1
    /// are read as 1.
    pub slowdown: f64,
    /// Serve `GET /metrics` (bearer `metrics_token`) on this address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The token `/metrics` on `metrics_listen` takes.
    pub metrics_token: Option<String>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A service could not be set up (a bad AI backend URL, say).
    #[error(transparent)]
    Services(#[from] rma_services::ServiceError),
    /// The tunnel-mode listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    /// Tunnel mode was asked for but cannot work.
    #[error("{0}")]
    Tunnel(String),
}

impl WorkerConfig {
    /// Defaults for the worker `identity` names, registering at `coordinator_url`: one URL or
    /// several separated by commas (`COORDINATOR_URL=https://a,https://b`).
    pub fn new(coordinator_url: impl Into<String>, identity: Arc<rma_auth::Identity>) -> Self {
        WorkerConfig {
            coordinator_urls: split_urls(&coordinator_url.into()),
            worker_id: identity.node_id(),
            identity,
            worker_type: None,
            tunnel_url: None,
            heartbeat_interval: Duration::from_secs(30),
            data_dir: PathBuf::from("./rma-data"),
            max_body_bytes: 50 * 1024 * 1024,
            capabilities: None,
            ai_backend: None,
            ocr_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ocr_warm: true,
            listen: None,
            use_tunnel: false,
            use_link: true,
            slowdown: 1.0,
            services: None,
            metrics_listen: None,
            metrics_token: None,
        }
    }
}

/// The URLs of a comma-separated list, trimmed, empty parts dropped.
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `worker-{hostname}`, the default worker id: stable across restarts of the same machine.
pub fn default_worker_id() -> String {
    format!(
        "worker-{}",
        rma_proto::ids::sanitize(&probe::hostname().unwrap_or_else(|| "unknown".into()))
    )
}

/// Load average over one minute divided by cores (0.0 idle, 1.0 every core busy).
pub fn load_per_core() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    sysinfo::System::load_average().map_or(0.0, |l| l.one / cores)
}

/// A running worker. Dropping it stops it at once.
#[derive(Debug)]
pub struct WorkerHandle {
    status: watch::Receiver<AgentStatus>,
    metrics_url: Option<String>,
    drain: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// The agent's status now.
    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    /// Where its `/metrics` is served (`metrics_listen`), as a base URL.
    pub fn metrics_url(&self) -> Option<&str> {
        self.metrics_url.as_deref()
    }

    /// A receiver to wait for status changes.
    pub fn watch(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Stops gracefully: takes no new requests, finishes the ones it has (for at most `grace`),
    /// says goodbye to its coordinator, then stops. Returns whether it finished within `grace`.
    pub async fn drain(mut self, grace: std::time::Duration) -> bool {
        let _ = self.drain.send(true);
        tokio::time::timeout(grace, &mut self.task).await.is_ok()
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The worker's services with what every call goes through: timing, the queue-depth gauge,
/// and the benchmarks' slowdown.
pub(crate) struct Exec {
    services: Registry,
    slowdown: f64,
    /// One call at a time when slowed down.
    gate: Option<tokio::sync::Semaphore>,
    /// This worker's id, for its spans.
    id: String,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("slowdown", &self.slowdown)
            .finish_non_exhaustive()
    }
}

impl Exec {
    /// The services' names.
    pub(crate) fn names(&self) -> Vec<String> {
        self.services.names()
    }

    /// Runs one call; the reply says how long it took (`took_us`).
    pub(crate) async fn run(&self, req: rma_services::ServiceRequest) -> rma_proto::ServiceReply {
        let label = rma_proto::service::metric_label(&req.call.service);
        let parent = req
            .call
            .traceparent
            .as_deref()
            .and_then(rma_http::trace::TraceContext::parse);
        let start_wall = std::time::SystemTime::now();
        let started = tokio::time::Instant::now();
        let _turn = match &self.gate {
            Some(g) => g.acquire().await.ok(),
            None => None,
        };
        metrics::gauge!("rma_worker_queue_depth").increment(1.0);
        let working = tokio::time::Instant::now();
        let mut reply = self.services.dispatch(req).await;
        if self.slowdown > 1.0 && self.slowdown.is_finite() {
            // The work itself is stretched, not the wait for the gate.
            tokio::time::sleep(working.elapsed().mul_f64(self.slowdown - 1.0)).await;
        }
        let took = started.elapsed();
        metrics::gauge!("rma_worker_queue_depth").decrement(1.0);
        metrics::histogram!("rma_worker_service_seconds", "service" => label)
            .record(took.as_secs_f64());
        reply.took_us = Some(took.as_micros().min(u128::from(u64::MAX)) as u64);
        // Only a call that came with a trace makes a span: the coordinator always sends one.
        if let Some(parent) = parent {
            rma_http::trace::record(parent.sampled, || rma_http::trace::Span {
                name: "worker",
                context: parent.child(),
                parent: Some(parent.span_id),
                start: start_wall,
                end: start_wall + took,
                attributes: vec![
                    ("rma.node", self.id.clone()),
                    ("rma.service", label.to_owned()),
                    ("http.response.status_code", reply.status.to_string()),
                ],
            });
        }
        reply
    }
}

/// Serves `GET /metrics` on `addr`, behind `token` when there is one.
fn serve_metrics(
    addr: std::net::SocketAddr,
    token: Option<String>,
) -> Result<rma_http::ServerHandle, SpawnError> {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|e| SpawnError::Listen(addr, e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| SpawnError::Listen(addr, e))?;
    let listener =
        tokio::net::TcpListener::from_std(std_listener).map_err(|e| SpawnError::Listen(addr, e))?;
    let token = Arc::new(token);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let token = token.clone();
            async move {
                let given = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if let Some(t) = token.as_deref()
                    && !rma_auth::bearer(given)
                        .is_some_and(|b| rma_auth::same_secret(b.as_bytes(), t.as_bytes()))
                {
                    return rma_http::ApiError::unauthorized(
                        "GET /metrics needs the worker's metrics token (Authorization: Bearer …)",
                    )
                    .into_response();
                }
                rma_http::metrics_handler().await
            }
        }),
    );
    let (stop, _) = rma_http::Shutdown::new();
    let handle = rma_http::serve(listener, rma_http::finish(app), stop)
        .map_err(|e| SpawnError::Listen(addr, e))?;
    tracing::info!(url = %handle.url(), "serving /metrics");
    Ok(handle)
}

/// Starts a worker with every service this build implements: probes (unless capabilities are
/// given), then runs the agent.
pub fn spawn(config: WorkerConfig) -> Result<WorkerHandle, SpawnError> {
    let services = Registry::for_worker(&rma_services::ServicesConfig {
        ocr_threads: config.ocr_threads,
        ocr_warm: config.ocr_warm,
        ai_backend: config.ai_backend.clone(),
        ..rma_services::ServicesConfig::new(config.data_dir.clone())
    })?;
    spawn_with(config, services)
}

/// Starts a worker hosting `services`.
pub fn spawn_with(
    mut config: WorkerConfig,
    services: Registry,
) -> Result<WorkerHandle, SpawnError> {
    rma_http::metrics::install();
    metrics::gauge!("rma_worker_queue_depth").set(0.0);
    let services = Arc::new(Exec {
        services,
        slowdown: config.slowdown,
        gate: (config.slowdown > 1.0).then(|| tokio::sync::Semaphore::new(1)),
        id: config.worker_id.clone(),
    });
    let metrics_server = match config.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, config.metrics_token.clone())?),
        None => None,
    };
    let cloudflared = if config.use_tunnel {
        Some(tunnel::find_cloudflared().map_err(SpawnError::Tunnel)?)
    } else {
        None
    };
    if !config.use_link
        && config.tunnel_url.is_none()
        && cloudflared.is_none()
        && config.listen.is_none()
    {
        return Err(SpawnError::Tunnel(
            "a worker without a link needs a tunnel URL (TUNNEL_URL, --listen or USE_TUNNEL=true)"
                .into(),
        ));
    }
    // Tunnel mode: serve over HTTP too. With cloudflared and no address given, on loopback.
    let listen = config.listen.or_else(|| {
        cloudflared
            .as_ref()
            .map(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    });
    let mut server = None;
    if let Some(addr) = listen {
        let std_listener =
            std::net::TcpListener::bind(addr).map_err(|e| SpawnError::Listen(addr, e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| SpawnError::Listen(addr, e))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| SpawnError::Listen(addr, e))?;
        let local = listener
            .local_addr()
            .map_err(|e| SpawnError::Listen(addr, e))?;
        let (stop, _) = rma_http::Shutdown::new();
        let handle = rma_http::serve(
            listener,
            tunnel::app(
                services.clone(),
                config.max_body_bytes,
                config.identity.clone(),
            ),
            stop,
        )
        .map_err(|e| SpawnError::Listen(addr, e))?;
        tracing::info!(%local, "serving services over HTTP too (tunnel mode)");
        if config.tunnel_url.is_none() && cloudflared.is_none() {
            config.tunnel_url = Some(handle.url());
        }
        server = Some(handle);
    }
    let metrics_url = metrics_server.as_ref().map(|s| s.url());
    let (tx, rx) = watch::channel(AgentStatus::default());
    let (drain_tx, drain_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let ai = config.ai_backend.is_some();
        let mut caps = match config.capabilities.clone() {
            Some(c) => c,
            None => {
                let dir = config.data_dir.clone();
                tokio::task::spawn_blocking(move || probe::probe(&dir, ai))
                    .await
                    .unwrap_or_default()
            }
        };
        caps.ai_backend = ai;
        // Kept for the worker's life: the HTTP listeners and the cloudflared process.
        let _server = server;
        let _metrics = metrics_server;
        let mut _tunnel = None;
        if let (Some(binary), Some(local)) = (cloudflared, _server.as_ref().map(|s| s.url())) {
            match tunnel::start_cloudflared(&binary, &local).await {
                Ok((child, url)) => {
                    tracing::info!(%url, "cloudflared tunnel up");
                    config.tunnel_url = Some(url);
                    _tunnel = Some(child);
                }
                Err(e) => {
                    tracing::error!(error = %e, "no tunnel; the worker is reachable over its link only")
                }
            }
        }
        let identity = config.identity.clone();
        let renew = async move {
            rma_client::identity::keep_renewed(identity).await;
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = agent::run(config, caps, services, tx, drain_rx) => {}
            _ = renew => {}
        }
    });
    Ok(WorkerHandle {
        status: rx,
        metrics_url,
        drain: drain_tx,
        task,
    })
}
