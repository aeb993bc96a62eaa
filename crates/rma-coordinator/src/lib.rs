//! The rma edge coordinator: the registry of its workers, service assignment from
//! capabilities, liveness, dispatch of service requests over each worker's link, async jobs, and
//! the registrar that keeps it known to the router.
//!
//! Layers, each using only those below it:
//! - [`api`](crate) — HTTP handlers (`api.rs`), the link's socket glue (`session.rs`) and the
//!   registrar (`registrar.rs`);
//! - jobs — the job file (`jobs/store.rs`, SQLite on the blocking pool) and the runner
//!   (`jobs/runner.rs`);
//! - execution — `execute.rs` → `pipeline.rs` (`process`) → `cache.rs` → `dispatch.rs` (pick a
//!   worker, retry by the forwarding policy) → `link.rs` (a call down a link) or `tunnel.rs`
//!   (a call over HTTP);
//! - state — `registry.rs` (workers, selection) and `liveness.rs` (pure rules).
//!
//! [`spawn`] runs it on a bound listener and returns a handle that stops it when dropped.
#![deny(clippy::unwrap_used)]

mod api;
mod cache;
mod config;
mod dispatch;
mod execute;
mod group;
mod jobs;
mod link;
mod liveness;
mod pipeline;
mod placement;
mod registrar;
mod registry;
mod sealed;
mod session;
mod spotcheck;
mod tunnel;

pub use group::{DEAD_AFTER as GROUP_DEAD_AFTER, GroupConfig};
pub use placement::Rules as PlacementRules;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use config::CoordinatorConfig;
use dispatch::Dispatcher;
use jobs::Jobs;
pub use jobs::StoreError as JobsError;
use registry::{Registry, Thresholds};
use rma_http::{ServerHandle, Shutdown};
use tokio::net::TcpListener;

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The listener is unusable.
    #[error("coordinator listener: {0}")]
    Io(#[from] std::io::Error),
    /// The router or public URL is not an http(s) URL.
    #[error(transparent)]
    Url(#[from] rma_proto::urls::UrlError),
    /// The router client could not be built.
    #[error("router client: {0}")]
    Client(#[from] rma_client::ClientError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The jobs file could not be opened.
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

/// Shared state of the coordinator's handlers and tasks.
#[derive(Clone)]
struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: CoordinatorConfig,
    public_url: String,
    dispatcher: Dispatcher,
    jobs: Arc<Jobs>,
    active_requests: AtomicU32,
    shutdown: Shutdown,
    /// Nodes the router says are revoked (their credentials may not have expired yet).
    revoked: rma_auth::Revoked,
    /// Credentials of callers of its services, verified once each.
    verified: rma_http::auth::VerifiedTokens,
    /// Service requests of client keys that come straight here, per client.
    client_limiter: rma_http::limit::Limiter<String>,
    /// Links open now (the ping interval grows with them).
    links: Arc<std::sync::atomic::AtomicUsize>,
    /// When this coordinator started: link pings tick on multiples of the interval from it.
    epoch: tokio::time::Instant,
    /// The routers it registers at (jobs with no worker here run through them).
    routers: Vec<rma_client::Client>,
    /// Its replication group's member, once started (`config.group`).
    group: std::sync::OnceLock<Arc<group::Group>>,
}

/// Counts a request in flight for as long as it lives.
struct ActiveRequest(Arc<Inner>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AppState {
    /// State for a coordinator reachable at `public_url`; opens its jobs file.
    fn new(
        config: CoordinatorConfig,
        public_url: String,
        shutdown: Shutdown,
        routers: Vec<rma_client::Client>,
    ) -> Result<Self, SpawnError> {
        let client_limiter =
            rma_http::limit::Limiter::new(config.client_rate_limit, config.client_rate_burst);
        let jobs = Jobs::open(
            config.jobs_db.as_deref(),
            &config.id,
            config.job_retention,
            (
                config.max_unfinished_jobs,
                config.max_unfinished_jobs_per_client,
            ),
        )?;
        let registry = Registry::new(Thresholds {
            timeout: config.worker_timeout,
            expire_after: config.worker_expire_after,
            max_in_flight: config.max_in_flight_per_worker.max(1),
            balance: config.balance,
        });
        registry.lock().publish_gauges(tokio::time::Instant::now());
        let dispatcher = Dispatcher {
            registry,
            coordinator_id: config.id.clone(),
            timeout: config.request_timeout,
            max_attempts: config.max_attempts,
            http: rma_client::http_client_with(None, Some(config.url_policy))?,
            identity: config.identity.clone(),
            spot_check_share: config.spot_check_share.clamp(0.0, 1.0),
            quarantine_after: config.quarantine_after,
            sealer: sealed::Sealer::new(
                config
                    .identity
                    .derive_secret("rma coordinator storage sealing v1"),
            ),
        };
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                public_url,
                dispatcher,
                jobs: Arc::new(jobs),
                active_requests: AtomicU32::new(0),
                shutdown,
                revoked: rma_auth::Revoked::default(),
                verified: rma_http::auth::VerifiedTokens::default(),
                client_limiter,
                links: Arc::default(),
                epoch: tokio::time::Instant::now(),
                routers,
                group: std::sync::OnceLock::new(),
            }),
        })
    }

    fn routers(&self) -> &[rma_client::Client] {
        &self.inner.routers
    }

    /// Its replication group's member, when it is in one and it has started.
    fn group(&self) -> Option<Arc<group::Group>> {
        self.inner.group.get().cloned()
    }

    fn group_config(&self) -> Option<&group::GroupConfig> {
        self.config().group.as_ref()
    }

    fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    fn registry(&self) -> &Registry {
        &self.inner.dispatcher.registry
    }

    /// The URL the router and workers reach this coordinator at.
    fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    fn shutdown(&self) -> Shutdown {
        self.inner.shutdown.clone()
    }

    /// 401 unless the request carries the metrics token.
    fn require_metrics_token(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), rma_http::ApiError> {
        let given = rma_http::auth::bearer(headers);
        match (&self.config().metrics_token, given) {
            (Some(t), Some(g)) if rma_auth::same_secret(t.as_bytes(), g.as_bytes()) => Ok(()),
            (None, _) => Err(rma_http::ApiError::unauthorized(
                "this coordinator has no metrics token (rma coordinator --metrics-token-file)",
            )),
            _ => Err(rma_http::ApiError::unauthorized(
                "this needs the coordinator's metrics token (Authorization: Bearer …)",
            )),
        }
    }

    /// Takes revocations from the router: refused from now on, dropped at once.
    fn revoke(&self, ids: Vec<String>) {
        let new = self.inner.revoked.extend(ids);
        if new.is_empty() {
            return;
        }
        let mut removed = false;
        {
            let mut w = self.registry().lock();
            for id in &new {
                if w.remove(id) {
                    tracing::warn!(worker = %id, "worker revoked: dropped and its link closed");
                    removed = true;
                }
            }
        }
        if removed {
            self.registry().changed();
        }
    }

    fn session_config(&self) -> session::SessionConfig {
        session::SessionConfig {
            coordinator_id: self.config().id.clone(),
            ping_interval: self.config().link_ping_interval,
            ping_misses: self.config().link_ping_misses,
            ping_budget: self.config().link_ping_budget,
            links: self.inner.links.clone(),
            epoch: self.inner.epoch,
        }
    }

    /// Service requests in flight here.
    fn active_requests(&self) -> u32 {
        self.inner.active_requests.load(Ordering::Relaxed)
    }

    fn track_request(&self) -> ActiveRequest {
        self.inner.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.inner.clone())
    }
}

/// Credentials are checked with the federation's public key: no call to the router.
impl AppState {
    /// Who is asking for a service, or the 401 / 403 to answer
    /// ([`rma_http::auth::service_caller`]).
    pub(crate) fn service_caller(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Arc<rma_auth::Claims>, rma_http::ApiError> {
        rma_http::auth::service_caller(
            self.config().identity.verifier(),
            &self.inner.verified,
            &self.inner.revoked,
            headers,
            &self.config().id,
        )
    }

    /// Lets a service request of `caller` through, or says how long it must wait: a client key
    /// used here directly is limited per client, as the router limits it; a router (which has
    /// limited its clients already) and coordinators are not.
    pub(crate) fn rate_limit(&self, caller: &rma_auth::Claims) -> Result<(), std::time::Duration> {
        if caller.role == rma_auth::Role::Client {
            self.inner.client_limiter.check(caller.sub.clone())
        } else {
            Ok(())
        }
    }

    /// Forgets clients whose buckets are full again (bounds memory); run now and then.
    pub(crate) fn forget_idle_clients(&self) {
        self.inner.client_limiter.forget_idle();
    }

    /// The client key in a request's `Authorization` (the router passes a verified one on), if
    /// it holds one that verifies and is not revoked: the client whose queue a job counts in.
    pub(crate) fn client_of(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        let token = rma_http::auth::bearer(headers)?;
        let claims = self
            .inner
            .verified
            .verify(self.config().identity.verifier(), token)
            .ok()?;
        (claims.role == rma_auth::Role::Client && !self.inner.revoked.contains(&claims.sub))
            .then(|| claims.sub.clone())
    }
}

impl rma_http::auth::Membership for AppState {
    fn member(
        &self,
        headers: &axum::http::HeaderMap,
        role: rma_auth::Role,
    ) -> Result<rma_auth::Claims, rma_http::ApiError> {
        rma_http::auth::member(
            self.config().identity.verifier(),
            &self.inner.revoked,
            headers,
            role,
        )
    }
}

/// A running coordinator. Dropping it stops it without a goodbye, as a crash would (the router
/// notices through expiry); [`deregister`] says goodbye.
pub type CoordinatorHandle = ServerHandle;

/// Starts a coordinator on `listener`: serves the API and the link, runs liveness and the job
/// runner, and when a router URL is configured, the registrar.
pub fn spawn(
    mut config: CoordinatorConfig,
    listener: TcpListener,
) -> Result<CoordinatorHandle, SpawnError> {
    rma_http::metrics::install();
    metrics::gauge!("rma_coordinator_jobs_queued").set(0.0);
    metrics::gauge!("rma_coordinator_jobs_running").set(0.0);
    let addr = listener.local_addr()?;
    // A coordinator on loopback (`rma up`, tests) has workers on loopback.
    config.url_policy.allow_loopback |= addr.ip().is_loopback();
    let public_url = match &config.public_url {
        Some(u) => rma_proto::urls::base_url("public URL", u)?,
        None => derive_public_url(addr, config.tls.is_some()),
    };
    let routers = config
        .router_urls
        .iter()
        .map(|u| {
            rma_client::Client::with_timeout(u, config.request_timeout)
                .map(|c| c.with_identity(config.identity.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let identity = config.identity.clone();
    let (stop, shutdown) = Shutdown::new();
    let state = AppState::new(config, public_url, shutdown.clone(), routers.clone())?;
    let tls = state.config().tls.clone();
    let mut handle = rma_http::serve_with(listener, api::app(state.clone()), stop, tls)?;
    handle.adopt(tokio::spawn(liveness_loop(state.clone(), shutdown.clone())));
    let limited = state.clone();
    handle.adopt(tokio::spawn(rma_http::every(
        Duration::from_secs(60),
        shutdown.clone(),
        move || {
            limited.forget_idle_clients();
            std::future::ready(())
        },
    )));
    let runner = jobs::runner::Runner {
        jobs: state.inner.jobs.clone(),
        dispatcher: state.dispatcher().clone(),
        routers: routers.clone(),
        max_concurrent: state.config().max_concurrent_jobs,
    };
    handle.adopt(tokio::spawn(runner.run(shutdown.clone())));
    if let Some(gc) = state.config().group.clone() {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        handle.adopt(tokio::spawn(async move {
            match group::start(&state, &gc).await {
                Ok(g) => {
                    // Raft stops with this task, however it ends: a coordinator stopped (or
                    // its handle dropped) never lingers as a member sending heartbeats.
                    let _stop = group::StopOnDrop(g.raft.clone());
                    let _ = state.inner.group.set(g.clone());
                    tracing::info!(node = gc.node_id, "replication group member started");
                    let max = state.config().max_concurrent_jobs;
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        _ = group::run(state.clone(), g.clone(), max) => {}
                        _ = stop.wait() => {}
                    }
                    let _ = g.raft.shutdown().await;
                }
                Err(e) => tracing::error!(error = %e, "the replication group member could not start; jobs stay local"),
            }
        }));
    }
    handle.adopt(tokio::spawn(placement::run(
        state.clone(),
        state.config().placement_period,
        shutdown,
    )));
    // One registrar per router: each router learns of this coordinator, and heartbeats to one
    // that is down never delay the others.
    for router in routers {
        handle.adopt(tokio::spawn(registrar::run(state.clone(), router)));
    }
    handle.adopt(tokio::spawn(rma_client::identity::keep_renewed(identity)));
    tracing::info!(addr = %handle.addr(), id = %state.config().id, public_url = %state.public_url(), "coordinator listening");
    Ok(handle)
}

/// Deregisters from every router, best effort and at once, within `grace`.
pub async fn deregister(config: &CoordinatorConfig, grace: Duration) {
    let goodbyes = config.router_urls.iter().map(|router| async move {
        let client = match rma_client::Client::with_timeout(router, grace) {
            Ok(c) => c.with_identity(config.identity.clone()),
            Err(e) => return tracing::warn!(%router, error = %e, "bad router URL"),
        };
        match client.deregister_coordinator(&config.id).await {
            Ok(_) => tracing::info!(%router, "deregistered from the router"),
            Err(e) => tracing::warn!(%router, error = %e, "could not deregister from the router"),
        }
    });
    futures_util::future::join_all(goodbyes).await;
}

/// `http(s)://{addr}`, with an unspecified address (0.0.0.0, ::) replaced by loopback.
fn derive_public_url(addr: std::net::SocketAddr, https: bool) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Sweeps workers every third of the worker timeout (at most every 5 s).
async fn liveness_loop(state: AppState, shutdown: Shutdown) {
    let period = (state.config().worker_timeout / 3)
        .clamp(Duration::from_millis(20), Duration::from_secs(5));
    let last = std::sync::Mutex::new(Default::default());
    rma_http::every(period, shutdown, || {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        state.registry().sweep_once(&mut last);
        std::future::ready(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    //! Worker liveness with paused Tokio time: the app is called in-process, so 90 s pass in
    //! an instant.
    use super::*;
    use axum::http::StatusCode;
    use rma_http::testing::{call_as, call_as_node};

    /// A coordinator's state in a federation of its own, and a worker credential maker.
    fn state() -> (
        AppState,
        impl Fn(&str) -> rma_auth::Identity,
        tokio::sync::watch::Sender<bool>,
    ) {
        let fed = rma_auth::FederationKey::generate();
        let identity = fed
            .identity("c", rma_auth::Role::Coordinator, None)
            .expect("identity");
        let (stop, shutdown) = Shutdown::new();
        let state = AppState::new(
            CoordinatorConfig::new(Arc::new(identity)),
            "http://127.0.0.1:1".into(),
            shutdown,
            Vec::new(),
        )
        .expect("state");
        let worker = move |id: &str| {
            fed.identity(id, rma_auth::Role::Worker, None)
                .expect("identity")
        };
        (state, worker, stop)
    }

    #[tokio::test(start_paused = true)]
    async fn workers_without_heartbeats_go_stale_at_the_timeout_and_are_removed_later() {
        let (state, worker, _stop) = state();
        let w1 = worker("w1");
        let app = api::app(state.clone());
        let (s, v) = call_as_node(
            &app,
            &w1,
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
        let (_, v) = call_as(&app, None, "GET", "/health", "").await;
        assert_eq!(
            v["workers"],
            serde_json::json!({"total": 1, "active": 0, "stale": 1})
        );
        let link = link::LinkHandle::detached();
        state
            .registry()
            .lock()
            .attach_link("w1", link, tokio::time::Instant::now());
        let (_, v) = call_as(&app, None, "GET", "/health", "").await;
        assert_eq!(v["workers"]["active"], 1);
        assert_eq!(v["status"], "healthy");

        // Heartbeats every 30 s keep it active well past 90 s.
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(30)).await;
            let (s, _) = call_as_node(
                &app,
                &w1,
                "POST",
                "/api/worker/heartbeat",
                r#"{"worker_id":"w1","current_load":0.25}"#,
            )
            .await;
            assert_eq!(s, StatusCode::OK);
        }
        let (_, v) = call_as(&app, None, "GET", "/health", "").await;
        assert_eq!(v["workers"]["active"], 1);

        // Silent for 90 s: stale, out of rotation.
        tokio::time::advance(Duration::from_secs(90)).await;
        let (_, v) = call_as(&app, None, "GET", "/health", "").await;
        assert_eq!(
            v["workers"],
            serde_json::json!({"total": 1, "active": 0, "stale": 1})
        );
        let (s, v) = call_as(&app, None, "POST", "/api/service/echo", "x").await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "services are for credentials of the federation"
        );
        let member = state.config().identity.bearer();
        let (s, v) = call_as(&app, Some(&member), "POST", "/api/service/echo", "x").await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("no_worker"))
        );
        let mut last = Default::default();
        assert!(state.registry().sweep_once(&mut last).is_empty());

        // Silent for 180 s: removed; its next heartbeat is a 404, so it registers again.
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(state.registry().sweep_once(&mut last), ["w1"]);
        let (s, v) = call_as_node(
            &app,
            &w1,
            "POST",
            "/api/worker/heartbeat",
            r#"{"worker_id":"w1"}"#,
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (_, v) = call_as(&app, None, "GET", "/health", "").await;
        assert_eq!(v["workers"]["total"], 0);
    }

    #[tokio::test]
    async fn tunnel_urls_must_be_ones_the_coordinator_may_call() {
        let (state, worker, _stop) = state();
        let w = worker("w");
        let app = api::app(state);
        for (url, why) in [
            ("http://169.254.169.254/latest", "link-local"),
            ("https://192.168.1.20:8080", "private"),
            ("http://127.0.0.1:9", "loopback"),
        ] {
            let body = format!(r#"{{"worker_id":"w","tunnel_url":"{url}"}}"#);
            let (s, v) = call_as_node(&app, &w, "POST", "/api/worker/register", &body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
            assert!(
                v["message"].as_str().expect("message").contains(why),
                "{url}: {v}"
            );
        }
        let body = r#"{"worker_id":"w","tunnel_url":"https://81.2.69.160:8443"}"#;
        let (s, v) = call_as_node(&app, &w, "POST", "/api/worker/register", body).await;
        assert_eq!(s, StatusCode::OK, "a public https tunnel is fine: {v}");
    }

    #[tokio::test]
    async fn workers_need_a_credential_of_their_own_and_run_only_what_it_allows() {
        let fed = rma_auth::FederationKey::generate();
        let identity = fed
            .identity("c", rma_auth::Role::Coordinator, None)
            .expect("identity");
        let (_stop, shutdown) = Shutdown::new();
        let state = AppState::new(
            CoordinatorConfig::new(Arc::new(identity)),
            "http://127.0.0.1:1".into(),
            shutdown,
            Vec::new(),
        )
        .expect("state");
        let app = api::app(state.clone());
        let body = r#"{"worker_id":"w1","capabilities":{"cpu_cores":4,"disk_free_bytes":200000000000},"services":["echo","ocr","store"]}"#;
        let (s, v) = call_as(&app, None, "POST", "/api/worker/register", body).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        let coordinator = fed
            .identity("c9", rma_auth::Role::Coordinator, None)
            .expect("id");
        let (s, _) = call_as_node(&app, &coordinator, "POST", "/api/worker/register", body).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "a coordinator credential is not a worker's"
        );
        let other = fed
            .identity("w2", rma_auth::Role::Worker, None)
            .expect("id");
        let (s, _) = call_as_node(&app, &other, "POST", "/api/worker/register", body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "another worker's credential");
        let stranger = rma_auth::FederationKey::generate()
            .identity("w1", rma_auth::Role::Worker, None)
            .expect("id");
        let (s, _) = call_as_node(&app, &stranger, "POST", "/api/worker/register", body).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "another federation's credential"
        );

        // Limited to echo and store: ocr is never assigned, whatever the worker offers.
        let w1 = fed
            .identity(
                "w1",
                rma_auth::Role::Worker,
                Some(vec!["echo".into(), "store".into()]),
            )
            .expect("id");
        let (s, _) = call_as(
            &app,
            Some(&w1.bearer()),
            "POST",
            "/api/worker/register",
            body,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "a credential without the proof of its key"
        );
        let (s, v) = call_as_node(&app, &w1, "POST", "/api/worker/register", body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["assigned_services"], serde_json::json!(["echo", "store"]));

        // Revoked: dropped at once, refused from then on.
        state.revoke(vec!["w1".into()]);
        assert!(state.registry().lock().get("w1").is_none());
        let (s, _) = call_as_node(
            &app,
            &w1,
            "POST",
            "/api/worker/heartbeat",
            r#"{"worker_id":"w1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Metrics and the worker listing need the metrics token.
        let (s, _) = call_as(&app, None, "GET", "/metrics", "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = call_as(&app, Some(&w1.bearer()), "GET", "/api/workers", "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn assignment_follows_capabilities_and_forced_type() {
        let (state, worker, _stop) = state();
        let app = api::app(state);
        let (_, v) = call_as_node(&app, &worker("big"),
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
        let (_, v) = call_as_node(
            &app,
            &worker("forced"),
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"forced","worker_type":"storage","services":["echo","store"]}"#,
        )
        .await;
        assert_eq!(v["worker_type"], "storage");
        assert_eq!(v["assigned_services"], serde_json::json!(["echo", "store"]));
    }
}
