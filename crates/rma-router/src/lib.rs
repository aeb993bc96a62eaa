//! The rma edge router: the one public entry point.
//!
//! It keeps the durable registry of coordinators ([`store`], SQLite, written only on membership
//! changes), their freshness and inventory in memory ([`registry`]), picks a coordinator for each
//! request and forwards it, retrying another on failure ([`forward`]), proxies worker
//! registration and heartbeats to the coordinator that holds the worker, and serves the admin
//! API, topology, health and metrics ([`api`]).
//!
//! [`spawn`] runs it on a bound listener and returns a handle that stops it when dropped;
//! [`app`] is the bare axum router for tests that drive it without sockets.
#![deny(clippy::unwrap_used)]

mod admin;
mod api;
mod config;
mod forward;
mod limit;
mod membership;
mod registry;
mod store;
mod ui;
mod usage;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::RouterConfig;
use registry::{Entry, Registry, Thresholds};
use rma_http::{ServerHandle, Shutdown};
use store::Store;
pub use store::StoreError;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The registry file could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener is unusable.
    #[error("router listener: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("router HTTP client: {0}")]
    Client(String),
    /// The admin token file could not be read or written.
    #[error("admin token file {0}: {1}")]
    AdminToken(std::path::PathBuf, std::io::Error),
    /// The federation key file could not be read or written.
    #[error("federation key: {0}")]
    FederationKey(#[from] rma_auth::AuthError),
}

/// Shared state of the router's handlers.
#[derive(Clone)]
pub(crate) struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    topology: tokio::sync::watch::Sender<rma_proto::api::Topology>,
    shutdown: Shutdown,
    config: RouterConfig,
    registry: Mutex<Registry>,
    store: Arc<Store>,
    http: reqwest::Client,
    /// A client per coordinator URL, made once: parsing a URL (host names through IDNA) on
    /// every forwarded request showed in the profile.
    clients: Mutex<std::collections::HashMap<String, rma_client::Client>>,
    /// The hot path's client (service requests), with each coordinator parsed once.
    forwarder: rma_client::forward::Forwarder,
    upstreams: Mutex<std::collections::HashMap<String, rma_client::forward::Upstream>>,
    /// Today's requests, registry requests and rows written, against the edge's free tier.
    usage: usage::Meter,
    turn: AtomicUsize,
    admin_token: String,
    limiter: limit::Limiter,
    client_limiter: limit::Limiter<String>,
    upload_quota: limit::Limiter,
    federation: rma_auth::FederationKey,
    /// Every revoked node, for the checks of membership calls.
    revoked: rma_auth::Revoked,
    /// Node → when revoked (Unix ms), for the heartbeat answers to coordinators.
    revoked_at: Mutex<std::collections::BTreeMap<String, i64>>,
    /// The address the router listens on, for join tokens when no URL is given.
    listen_url: Mutex<Option<String>>,
    /// Its own credential for each coordinator (by id), shown with every service request it
    /// forwards there; signed again two thirds into its life.
    own_credentials: Mutex<std::collections::HashMap<String, rma_auth::Credential>>,
}

/// The node id in a router's own credential.
pub const ROUTER_ID: &str = "router";

impl AppState {
    /// Opens the registry file and loads the coordinators it holds. Loaded coordinators count
    /// as just seen: they get one `stale_after` to send a heartbeat to this new router process.
    #[cfg(test)]
    pub(crate) fn new(mut config: RouterConfig) -> Result<Self, SpawnError> {
        // In-process tests register coordinators on loopback, as a loopback router allows.
        config.url_policy.allow_loopback = true;
        config.admin_token = Some(tests::ADMIN.to_owned());
        Self::with_shutdown(config, Shutdown::new().1)
    }

    /// State whose long-lived connections (the topology WebSocket) end on `shutdown`.
    pub(crate) fn with_shutdown(
        config: RouterConfig,
        shutdown: Shutdown,
    ) -> Result<Self, SpawnError> {
        if let Some(parent) = config
            .db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let store = Store::open(&config.db_path)?;
        let admin_token = match &config.admin_token {
            Some(t) => t.clone(),
            None => {
                let path = admin::token_path(&config.db_path);
                let (token, made) = rma_auth::load_or_create_secret(&path)
                    .map_err(|e| SpawnError::AdminToken(path.clone(), e))?;
                if made {
                    tracing::info!(path = %path.display(), "admin token written (mode 0600); admin views need it");
                }
                token
            }
        };
        let federation = match &config.federation_key {
            Some(k) => k.clone(),
            None => {
                let path = admin::token_path(&config.db_path).with_file_name("federation.key");
                let (key, made) = rma_auth::FederationKey::load_or_create(&path)?;
                if made {
                    tracing::info!(path = %path.display(), "federation signing key made (mode 0600); keep it secret and backed up");
                }
                key
            }
        };
        let revoked = rma_auth::Revoked::default();
        let mut revoked_at = std::collections::BTreeMap::new();
        for n in store.nodes()? {
            if let Some(at) = n.revoked_at_ms {
                revoked.extend([n.node_id.clone()]);
                revoked_at.insert(n.node_id, at);
            }
        }
        let mut registry = Registry::new(Thresholds {
            stale_after: config.stale_after,
            expire_after: config.expire_after,
            ping_misses_out: config.ping_misses.max(1),
        });
        let now = Instant::now();
        let wall = SystemTime::now();
        for row in store.load_all()? {
            registry.upsert(Entry {
                id: row.id,
                url: row.url,
                location: row.location,
                registered_at: from_ms(row.registered_at_ms),
                last_seen: now,
                last_seen_wall: wall,
                services: Default::default(),
                workers: Vec::new(),
                load: 0.0,
                active_requests: 0,
                unreachable: false,
                ping_misses: 0,
                inventory_known: false,
                requests: Default::default(),
                seen: Default::default(),
            });
        }
        let http = rma_client::http_client_with(None, Some(config.url_policy))
            .map_err(|e| SpawnError::Client(e.to_string()))?;
        let forwarder = rma_client::forward::Forwarder::new(
            config.url_policy,
            std::time::Duration::from_secs(5),
        );
        let limiter = limit::Limiter::new(config.ip_rate_limit, config.ip_rate_burst);
        let client_limiter =
            limit::Limiter::new(config.client_rate_limit, config.client_rate_burst);
        let upload_quota =
            limit::Limiter::hourly(config.ip_upload_mb_per_hour.saturating_mul(1024));
        Ok(AppState {
            inner: Arc::new(Inner {
                topology: tokio::sync::watch::Sender::new(Default::default()),
                shutdown,
                config,
                registry: Mutex::new(registry),
                store: Arc::new(store),
                http,
                clients: Mutex::default(),
                forwarder,
                upstreams: Mutex::default(),
                usage: usage::Meter::new(std::time::SystemTime::now()),
                turn: AtomicUsize::new(0),
                admin_token,
                limiter,
                client_limiter,
                upload_quota,
                federation,
                revoked,
                revoked_at: Mutex::new(revoked_at),
                listen_url: Mutex::new(None),
                own_credentials: Mutex::default(),
            }),
        })
    }

    /// The router's own credential for coordinator `coordinator`
    /// ([`rma_auth::FederationKey::router_credential`]), for it to run services for the router.
    pub(crate) fn own_credential(&self, coordinator: &str) -> Result<String, rma_http::ApiError> {
        let mut own = self
            .inner
            .own_credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = rma_auth::unix_now();
        if let Some(c) = own.get(coordinator).filter(|c| now < c.claims.renew_at()) {
            return Ok(c.token.clone());
        }
        let c = self
            .inner
            .federation
            .router_credential(ROUTER_ID, coordinator)
            .map_err(|e| rma_http::ApiError::internal(e.to_string()))?;
        let token = c.token.clone();
        // Those of coordinators gone for good go once they have expired.
        if own.len() >= 4096 {
            own.retain(|_, c| now < c.claims.exp);
        }
        own.insert(coordinator.to_owned(), c);
        Ok(token)
    }

    /// The federation's signing key.
    pub(crate) fn federation(&self) -> &rma_auth::FederationKey {
        &self.inner.federation
    }

    /// Revoked nodes.
    pub(crate) fn revoked(&self) -> &rma_auth::Revoked {
        &self.inner.revoked
    }

    /// Records a revocation in memory.
    pub(crate) fn note_revoked(&self, node_id: &str, at_ms: i64) {
        self.inner.revoked.extend([node_id.to_owned()]);
        self.inner
            .revoked_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node_id.to_owned())
            .or_insert(at_ms);
    }

    /// Nodes revoked within a credential's lifetime (and a margin): those whose credentials
    /// may still verify, which coordinators must refuse.
    pub(crate) fn revoked_lately(&self) -> Vec<String> {
        let horizon =
            to_ms(SystemTime::now()) - (rma_auth::CREDENTIAL_TTL.as_millis() as i64 + 3_600_000);
        self.inner
            .revoked_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, at)| **at >= horizon)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The router's own URL for join tokens: the address it listens on, else the request's
    /// Host.
    pub(crate) fn own_url(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(u) = self
            .inner
            .listen_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return u;
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// A receiver of the topology as it changes (fed by [`topology_loop`]).
    pub(crate) fn topology_watch(&self) -> tokio::sync::watch::Receiver<rma_proto::api::Topology> {
        self.inner.topology.subscribe()
    }

    /// The stop signal.
    pub(crate) fn shutdown(&self) -> Shutdown {
        self.inner.shutdown.clone()
    }

    /// Recomputes the topology and publishes it when it changed; returns whether it did.
    pub(crate) fn publish_topology(&self) -> bool {
        let t = api::topology_of(self);
        self.inner.topology.send_if_modified(|old| {
            if *old == t {
                false
            } else {
                *old = t;
                true
            }
        })
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// The registry, locked. Never held across an await.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The per-address limiter.
    pub(crate) fn limiter(&self) -> limit::Limiter {
        self.inner.limiter.clone()
    }

    /// The per-address hourly upload quota (kilobytes).
    pub(crate) fn upload_quota(&self) -> limit::Limiter {
        self.inner.upload_quota.clone()
    }

    /// The per-client limiter.
    pub(crate) fn client_limiter(&self) -> limit::Limiter<String> {
        self.inner.client_limiter.clone()
    }

    /// 401 unless the request carries the admin token.
    pub(crate) fn require_admin(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), rma_http::ApiError> {
        admin::require(headers, &self.inner.admin_token)
    }

    /// Whether `token` is the admin token.
    pub(crate) fn admin_token_is(&self, token: &str) -> bool {
        rma_auth::same_secret(token.trim().as_bytes(), self.inner.admin_token.as_bytes())
    }

    /// Whether the request carries the admin token.
    pub(crate) fn is_admin(&self, headers: &axum::http::HeaderMap) -> bool {
        admin::is_admin(headers, &self.inner.admin_token)
    }

    /// A coordinator's client over the router's shared connection pool (and its address
    /// policy).
    pub(crate) fn coordinator(&self, url: &str) -> Result<rma_client::Client, rma_http::ApiError> {
        cached(&self.inner.clients, url, || {
            rma_client::Client::with_http(url, self.inner.http.clone())
        })
    }

    /// The forwarding client and the coordinator at `url` as it addresses it.
    pub(crate) fn upstream(
        &self,
        url: &str,
    ) -> Result<
        (
            &rma_client::forward::Forwarder,
            rma_client::forward::Upstream,
        ),
        rma_http::ApiError,
    > {
        let u = cached(&self.inner.upstreams, url, || {
            rma_client::forward::Upstream::parse(url)
        })?;
        Ok((&self.inner.forwarder, u))
    }

    /// The usage meter.
    pub(crate) fn usage(&self) -> &usage::Meter {
        &self.inner.usage
    }

    pub(crate) fn next_turn(&self) -> usize {
        self.inner.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs a store operation on the blocking pool.
    pub(crate) async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`AppState::store`] for a write, timed in `rma_router_registry_write_seconds`.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let r = self.store(f).await;
        self.inner
            .usage
            .count(usage::Kind::RowsWritten, 1, std::time::SystemTime::now());
        metrics::histogram!("rma_router_registry_write_seconds")
            .record(started.elapsed().as_secs_f64());
        r
    }

    /// Removes coordinators silent for `expire_after`, from memory and from the file; returns
    /// their ids. The expiry loop calls this; tests call it after advancing paused time.
    pub(crate) async fn sweep_once(&self) -> Vec<String> {
        let expired = self.registry().sweep(Instant::now());
        for id in &expired {
            let id2 = id.clone();
            match self.write(move |s| s.delete(&id2)).await {
                Ok(_) => tracing::info!(coordinator = %id, "coordinator expired and removed"),
                Err(e) => {
                    tracing::error!(coordinator = %id, error = %e, "could not remove expired coordinator from the registry file")
                }
            }
        }
        if !expired.is_empty() {
            metrics::counter!("rma_router_coordinators_expired_total")
                .increment(expired.len() as u64);
        }
        expired
    }
}

/// Unix milliseconds → wall time.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Wall time → Unix milliseconds.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running router. Dropping it stops it.
pub type RouterHandle = ServerHandle;

/// Starts a router on `listener`: opens the registry, serves the API, runs expiry.
pub fn spawn(mut config: RouterConfig, listener: TcpListener) -> Result<RouterHandle, SpawnError> {
    rma_http::metrics::install();
    // A router on loopback (`rma up`, tests) has coordinators on loopback.
    config.url_policy.allow_loopback |= listener.local_addr()?.ip().is_loopback();
    let (stop, shutdown) = Shutdown::new();
    let state = AppState::with_shutdown(config, shutdown.clone())?;
    state.registry().publish_gauges(Instant::now());
    // Counters a dashboard plots are listed at 0 before the first event.
    metrics::counter!("rma_router_coordinator_failures_total").absolute(0);
    metrics::counter!("rma_router_rate_limited_total").absolute(0);
    let tls = state.config().tls.clone();
    let mut handle = rma_http::serve_with(listener, api::app(state.clone()), stop, tls)?;
    *state
        .inner
        .listen_url
        .lock()
        .unwrap_or_else(|p| p.into_inner()) =
        (!handle.addr().ip().is_unspecified()).then(|| handle.url());
    handle.adopt(tokio::spawn(expiry_loop(state.clone(), shutdown.clone())));
    handle.adopt(tokio::spawn(topology_loop(state.clone(), shutdown.clone())));
    handle.adopt(tokio::spawn(ping_loop(state.clone(), shutdown.clone())));
    let (limiter, clients, uploads) = (
        state.limiter(),
        state.client_limiter(),
        state.upload_quota(),
    );
    handle.adopt(tokio::spawn(rma_http::every(
        Duration::from_secs(60),
        shutdown,
        move || {
            limiter.forget_idle();
            clients.forget_idle();
            uploads.forget_idle();
            std::future::ready(())
        },
    )));
    tracing::info!(addr = %handle.addr(), "router listening");
    Ok(handle)
}

/// Pings every coordinator that is not stale (`GET /health`, timeout half the interval) every
/// `ping_interval`; `ping_misses` misses in a row take it out of rotation, one answer brings it
/// back. This notices a dead coordinator in seconds, long before its heartbeats go stale, and
/// does not flap on one lost ping.
async fn ping_loop(state: AppState, shutdown: Shutdown) {
    let interval = state.config().ping_interval;
    rma_http::every(interval, shutdown, || ping_all(&state, interval / 2)).await;
}

async fn ping_all(state: &AppState, timeout: Duration) {
    let targets: Vec<(String, String)> = {
        let reg = state.registry();
        let now = Instant::now();
        reg.entries()
            .filter(|e| reg.status(e, now) != rma_proto::api::CoordinatorStatus::Stale)
            .map(|e| (e.id.clone(), e.url.clone()))
            .collect()
    };
    let pings = targets.into_iter().map(|(id, url)| async move {
        let health = async {
            let client = state.coordinator(&url).ok()?;
            client
                .raw(
                    reqwest::Method::GET,
                    "health",
                    None,
                    Default::default(),
                    &[],
                )
                .await
                .ok()
        };
        let answered = tokio::time::timeout(timeout, health)
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.status.is_success());
        (id, answered)
    });
    for (id, answered) in futures_util::future::join_all(pings).await {
        if state.registry().record_ping(&id, answered) {
            if answered {
                tracing::info!(coordinator = %id, "coordinator answers pings again; back in rotation");
            } else {
                tracing::warn!(coordinator = %id, "coordinator missed its pings; out of rotation");
            }
            metrics::counter!("rma_router_ping_transitions_total", "to" => if answered { "in" } else { "out" }).increment(1);
        }
    }
}

/// Publishes topology changes to WebSocket subscribers, looking every 250 ms. Coordinators
/// heartbeat at once when their workers come or go, so a vanished worker shows within a second.
async fn topology_loop(state: AppState, shutdown: Shutdown) {
    rma_http::every(Duration::from_millis(250), shutdown, || {
        state.publish_topology();
        state.registry().publish_gauges(Instant::now());
        std::future::ready(())
    })
    .await;
}

/// Sweeps expired coordinators every `sweep_interval` until shutdown.
async fn expiry_loop(state: AppState, shutdown: Shutdown) {
    let period = state.config().sweep_interval;
    rma_http::every(period, shutdown, || async {
        state.sweep_once().await;
    })
    .await;
}

/// What is kept for a coordinator `url` (made by `make` on first use): parsing a URL — host names
/// through IDNA — on every forwarded request showed in the profile. Bounded: URLs of
/// coordinators long gone are dropped all at once now and then.
fn cached<T: Clone>(
    cache: &Mutex<std::collections::HashMap<String, T>>,
    url: &str,
    make: impl FnOnce() -> Result<T, rma_client::ClientError>,
) -> Result<T, rma_http::ApiError> {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cache.get(url) {
        return Ok(v.clone());
    }
    let v =
        make().map_err(|e| rma_http::ApiError::internal(format!("coordinator URL {url}: {e}")))?;
    if cache.len() >= 4_096 {
        cache.clear();
    }
    cache.insert(url.to_owned(), v.clone());
    Ok(v)
}

#[cfg(test)]
mod tests {
    //! Expiry driven by paused Tokio time: the app is called in-process (no sockets), so
    //! advancing the clock is all it takes to make minutes pass.
    use super::*;
    use axum::http::StatusCode;
    use rma_http::testing::{call, call_as};

    pub(crate) const ADMIN: &str = "admin-of-these-tests";

    /// A coordinator credential for `id` from the state's federation key.
    fn coord(state: &AppState, id: &str) -> String {
        state
            .federation()
            .issue(
                id,
                rma_auth::Role::Coordinator,
                None,
                None,
                &rma_auth::NodeKey::generate().public(),
                rma_auth::CREDENTIAL_TTL,
            )
            .expect("credential")
            .token
    }

    #[tokio::test(start_paused = true)]
    async fn silent_coordinators_go_stale_then_are_removed_from_memory_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("r.db");
        let state = AppState::new(RouterConfig::new(&db)).expect("state");
        let app = api::app(state.clone());
        let c1 = coord(&state, "c1");
        let (s, v) = call_as(
            &app,
            Some(&c1),
            "POST",
            "/api/edge/register",
            r#"{"coordinator_id":"c1","url":"http://127.0.0.1:9"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["total_coordinators"], 1);
        let (s, v) = call(&app, "GET", "/health", "").await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("healthy")));

        // A heartbeat at 4 minutes keeps it fresh past the first 5.
        tokio::time::advance(Duration::from_secs(240)).await;
        let (s, _) = call_as(
            &app,
            Some(&c1),
            "POST",
            "/api/edge/heartbeat",
            r#"{"coordinator_id":"c1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        tokio::time::advance(Duration::from_secs(240)).await;
        let (_, v) = call_as(&app, Some(ADMIN), "GET", "/api/admin/coordinators", "").await;
        assert_eq!(v[0]["status"], "healthy");

        // Then silence: stale after 300 s, out of health.
        tokio::time::advance(Duration::from_secs(61)).await;
        let (_, v) = call_as(&app, Some(ADMIN), "GET", "/api/admin/coordinators", "").await;
        assert_eq!(v[0]["status"], "stale");
        let (s, v) = call(&app, "GET", "/health", "").await;
        assert_eq!(
            (s, v["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("degraded"))
        );
        assert!(
            state.sweep_once().await.is_empty(),
            "stale is not yet expired"
        );
        let stored = Store::open(&db).expect("open").load_all().expect("load");
        assert_eq!(stored.len(), 1);

        // Removed at 600 s of silence, from memory and from the file.
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(state.sweep_once().await, ["c1"]);
        let (_, v) = call_as(&app, Some(ADMIN), "GET", "/api/admin/coordinators", "").await;
        assert_eq!(v, serde_json::json!([]));
        let stored = Store::open(&db).expect("open").load_all().expect("load");
        assert!(stored.is_empty());
        let (s, v) = call_as(
            &app,
            Some(&c1),
            "POST",
            "/api/edge/heartbeat",
            r#"{"coordinator_id":"c1"}"#,
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
    }

    #[tokio::test]
    async fn registered_urls_must_be_ones_the_router_may_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = AppState::new(RouterConfig::new(dir.path().join("r.db"))).expect("state");
        let c1 = coord(&state, "c1");
        let app = api::app(state);
        let register = |url: &str| format!(r#"{{"coordinator_id":"c1","url":"{url}"}}"#);
        for (url, why) in [
            ("http://169.254.169.254/latest", "link-local"),
            ("https://10.0.0.5:8080", "private"),
            ("http://81.2.69.160:8080", "https"),
            ("ftp://127.0.0.1", "http(s)"),
        ] {
            let (s, v) = call_as(
                &app,
                Some(&c1),
                "POST",
                "/api/edge/register",
                &register(url),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
            assert_eq!(v["error"], "bad_request");
            assert!(
                v["message"].as_str().expect("message").contains(why),
                "{url}: {v}"
            );
        }
        // A loopback router takes loopback coordinators (rma up), by address or by name.
        for url in ["http://127.0.0.1:9", "http://localhost:9"] {
            let (s, v) = call_as(
                &app,
                Some(&c1),
                "POST",
                "/api/edge/register",
                &register(url),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{url}: {v}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_do_not_write_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("r.db");
        let state = AppState::new(RouterConfig::new(&db)).expect("state");
        let c1 = coord(&state, "c1");
        let app = api::app(state);
        call_as(
            &app,
            Some(&c1),
            "POST",
            "/api/edge/register",
            r#"{"coordinator_id":"c1","url":"http://127.0.0.1:9"}"#,
        )
        .await;
        let before = Store::open(&db)
            .expect("open")
            .get("c1")
            .expect("get")
            .expect("row");
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(10)).await;
            call_as(
                &app,
                Some(&c1),
                "POST",
                "/api/edge/heartbeat",
                r#"{"coordinator_id":"c1","load":0.5}"#,
            )
            .await;
        }
        let after = Store::open(&db)
            .expect("open")
            .get("c1")
            .expect("get")
            .expect("row");
        assert_eq!(before, after, "heartbeats live in memory only");
    }
}
