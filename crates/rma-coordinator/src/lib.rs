//! The rma edge coordinator: the registry of its workers, service assignment from
//! capabilities, liveness, dispatch of service requests over each worker's link, and the
//! registrar that keeps it known to the router.
//!
//! Layout: [`config`]; [`registry`] (workers, selection) and [`liveness`] (pure rules);
//! [`link`] (the WebSocket each worker dials); [`dispatch`] (service requests, retries);
//! [`registrar`] (router registration and heartbeats); [`api`] (routes).
//!
//! [`spawn`] runs it on a bound listener and returns a handle that stops it when dropped.
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod cache;
pub mod config;
pub mod dispatch;
pub mod jobs;
pub mod link;
pub mod liveness;
pub mod pipeline;
pub mod registrar;
pub mod registry;
pub mod tunnel;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use api::app;
pub use config::CoordinatorConfig;
use registry::{Thresholds, Workers};
use rma_http::{ServerHandle, Shutdown};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The listener is unusable.
    #[error("coordinator listener: {0}")]
    Io(#[from] std::io::Error),
    /// The router URL is not a URL.
    #[error("router URL: {0}")]
    RouterUrl(#[from] rma_client::ClientError),
    /// The public URL is not an http(s) URL.
    #[error("public URL {0:?} is not an absolute http(s) URL")]
    PublicUrl(String),
    /// The jobs file could not be opened.
    #[error(transparent)]
    Jobs(#[from] jobs::JobsError),
}

/// Shared state of the coordinator's handlers and tasks.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: CoordinatorConfig,
    public_url: String,
    workers: Mutex<Workers>,
    inventory: Notify,
    active_requests: AtomicU32,
    shutdown: Shutdown,
    jobs: jobs::Jobs,
}

/// Counts a request in flight for as long as it lives.
pub struct ActiveRequest(Arc<Inner>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AppState {
    /// State for a coordinator reachable at `public_url`; opens its jobs file.
    pub fn new(
        config: CoordinatorConfig,
        public_url: String,
        shutdown: Shutdown,
    ) -> Result<Self, SpawnError> {
        let jobs = jobs::Jobs::open(config.jobs_db.as_deref(), &config.id, config.job_retention)?;
        let workers = Workers::new(Thresholds {
            timeout: config.worker_timeout,
            expire_after: config.worker_expire_after,
        });
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                public_url,
                workers: Mutex::new(workers),
                inventory: Notify::new(),
                active_requests: AtomicU32::new(0),
                shutdown,
                jobs,
            }),
        })
    }

    /// The job store.
    pub fn jobs(&self) -> &jobs::Jobs {
        &self.inner.jobs
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    /// The URL the router and workers reach this coordinator at.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The worker registry, locked. Never held across an await.
    pub fn workers(&self) -> MutexGuard<'_, Workers> {
        self.inner.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stop signal.
    pub fn shutdown(&self) -> Shutdown {
        self.inner.shutdown.clone()
    }

    /// Says the inventory changed: the registrar heartbeats the router at once.
    pub fn inventory_changed(&self) {
        self.inner.inventory.notify_one();
        // New workers may take queued jobs.
        self.inner.jobs.wake();
    }

    async fn inventory_notified(&self) {
        self.inner.inventory.notified().await;
    }

    /// Service requests in flight here.
    pub fn active_requests(&self) -> u32 {
        self.inner.active_requests.load(Ordering::Relaxed)
    }

    fn track_request(&self) -> ActiveRequest {
        self.inner.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.inner.clone())
    }

    /// Removes expired workers (closing their links) and tells the router when who is active
    /// changed. The liveness loop calls this; tests call it after advancing paused time.
    pub fn sweep_once(&self, last: &mut std::collections::BTreeSet<(String, bool)>) -> Vec<String> {
        let now = Instant::now();
        let (expired, fingerprint) = {
            let mut w = self.workers();
            let expired = w.sweep(now);
            (expired, w.fingerprint(now))
        };
        for w in &expired {
            if let Some(l) = &w.link {
                l.close();
            }
            tracing::info!(worker = %w.id, "worker expired and removed");
        }
        if fingerprint != *last {
            *last = fingerprint;
            self.inventory_changed();
        }
        expired.into_iter().map(|w| w.id).collect()
    }
}

/// A running coordinator. Dropping it stops it without a goodbye, as a crash would (the router
/// notices through expiry); [`shutdown`] says goodbye first.
pub type CoordinatorHandle = ServerHandle;

/// Starts a coordinator on `listener`: serves the API and the link, runs liveness, and when a
/// router URL is configured, the registrar.
pub fn spawn(
    config: CoordinatorConfig,
    listener: TcpListener,
) -> Result<CoordinatorHandle, SpawnError> {
    let addr = listener.local_addr()?;
    let public_url = match &config.public_url {
        Some(u) => {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => {}
                _ => return Err(SpawnError::PublicUrl(u.clone())),
            }
            u.trim_end_matches('/').to_owned()
        }
        None => derive_public_url(addr),
    };
    let router = config
        .router_url
        .as_deref()
        .map(rma_client::Client::new)
        .transpose()?;
    let (stop, shutdown) = Shutdown::new();
    let state = AppState::new(config, public_url, shutdown.clone())?;
    let mut handle = rma_http::serve(listener, app(state.clone()), stop)?;
    handle.adopt(tokio::spawn(liveness_loop(state.clone(), shutdown)));
    handle.adopt(tokio::spawn(jobs::runner(state.clone())));
    if let Some(router) = router {
        handle.adopt(tokio::spawn(registrar::run(state.clone(), router)));
    }
    tracing::info!(addr = %handle.addr(), id = %state.config().id, public_url = %state.public_url(), "coordinator listening");
    Ok(handle)
}

/// Deregisters from the router, best effort, within `grace`.
pub async fn deregister(config: &CoordinatorConfig, grace: Duration) {
    if let Some(router) = &config.router_url
        && let Ok(client) = rma_client::Client::with_timeout(router, grace)
    {
        match client.deregister_coordinator(&config.id).await {
            Ok(_) => tracing::info!("deregistered from the router"),
            Err(e) => tracing::warn!(error = %e, "could not deregister from the router"),
        }
    }
}

/// `http://{addr}`, with an unspecified address (0.0.0.0, ::) replaced by loopback.
pub fn derive_public_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Sweeps workers every third of the worker timeout (at most every 5 s).
async fn liveness_loop(state: AppState, mut shutdown: Shutdown) {
    let period = (state.config().worker_timeout / 3)
        .clamp(Duration::from_millis(20), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Default::default();
    loop {
        tokio::select! {
            _ = tick.tick() => { state.sweep_once(&mut last); }
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Worker liveness with paused Tokio time: the app is called in-process, so 90 s pass in
    //! an instant.
    use super::*;
    use axum::http::StatusCode;
    use rma_http::testing::call;

    #[tokio::test(start_paused = true)]
    async fn workers_without_heartbeats_go_stale_at_the_timeout_and_are_removed_later() {
        let (_stop, shutdown) = Shutdown::new();
        let state = AppState::new(
            CoordinatorConfig::new("c"),
            "http://127.0.0.1:1".into(),
            shutdown,
        )
        .expect("state");
        let app = app(state.clone());
        let (s, v) = call(
            &app,
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"w1","capabilities":{"cpu_cores":4}}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["worker_type"], "cpu");
        assert_eq!(v["heartbeat_interval_s"], 30);
        assert_eq!(v["coordinator_url"], "http://127.0.0.1:1");
        // Registered, but without a link it cannot be sent work: stale until it dials in.
        let (_, v) = call(&app, "GET", "/health", "").await;
        assert_eq!(
            v["workers"],
            serde_json::json!({"total": 1, "active": 0, "stale": 1})
        );
        let link = link::LinkHandle::detached();
        state.workers().attach_link("w1", link, Instant::now());
        let (_, v) = call(&app, "GET", "/health", "").await;
        assert_eq!(v["workers"]["active"], 1);
        assert_eq!(v["status"], "healthy");

        // Heartbeats every 30 s keep it active well past 90 s.
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(30)).await;
            let (s, _) = call(
                &app,
                "POST",
                "/api/worker/heartbeat",
                r#"{"worker_id":"w1","current_load":0.25}"#,
            )
            .await;
            assert_eq!(s, StatusCode::OK);
        }
        let (_, v) = call(&app, "GET", "/health", "").await;
        assert_eq!(v["workers"]["active"], 1);

        // Silent for 90 s: stale, out of rotation.
        tokio::time::advance(Duration::from_secs(90)).await;
        let (_, v) = call(&app, "GET", "/health", "").await;
        assert_eq!(
            v["workers"],
            serde_json::json!({"total": 1, "active": 0, "stale": 1})
        );
        let (s, v) = call(&app, "POST", "/api/service/echo", "x").await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("no_worker"))
        );
        let mut last = Default::default();
        assert!(state.sweep_once(&mut last).is_empty());

        // Silent for 180 s: removed; its next heartbeat is a 404, so it registers again.
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(state.sweep_once(&mut last), ["w1"]);
        let (s, v) = call(
            &app,
            "POST",
            "/api/worker/heartbeat",
            r#"{"worker_id":"w1"}"#,
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (_, v) = call(&app, "GET", "/health", "").await;
        assert_eq!(v["workers"]["total"], 0);
    }

    #[tokio::test]
    async fn assignment_follows_capabilities_and_forced_type() {
        let (_stop, shutdown) = Shutdown::new();
        let state = AppState::new(
            CoordinatorConfig::new("c"),
            "http://127.0.0.1:1".into(),
            shutdown,
        )
        .expect("state");
        let app = app(state);
        let (_, v) = call(
            &app,
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"big","capabilities":{"gpus":[{"name":"RTX","memory_mib":8192,"source":"nvml"}],"disk_free_bytes":200000000000}}"#,
        )
        .await;
        assert_eq!(v["worker_type"], "gpu");
        let services: Vec<&str> = v["assigned_services"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|s| s.as_str())
            .collect();
        for s in ["ocr", "enhance", "store", "cache", "echo"] {
            assert!(services.contains(&s), "{s} in {services:?}");
        }
        let (_, v) = call(
            &app,
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"forced","worker_type":"storage","services":["echo","store"]}"#,
        )
        .await;
        assert_eq!(v["worker_type"], "storage");
        assert_eq!(v["assigned_services"], serde_json::json!(["echo", "store"]));
    }
}
