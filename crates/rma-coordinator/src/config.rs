//! Coordinator configuration.

use std::sync::Arc;
use std::time::Duration;

use rma_auth::Identity;

use rma_proto::urls::AddressPolicy;

/// Everything a coordinator needs to start.
#[derive(Clone)]
pub struct CoordinatorConfig {
    /// Its id: the node id its credential names.
    pub id: String,
    /// Its identity: key, credential (renewed at the router), and the federation's public key
    /// it checks workers' credentials with.
    pub identity: Arc<Identity>,
    /// Serve https with this certificate and key (`--tls-cert/--tls-key`); the link is then
    /// `wss`.
    pub tls: Option<rma_http::tls::TlsConfig>,
    /// The token `/metrics` and the worker listing need (`Authorization: Bearer …`); without
    /// one they answer 401 to everyone.
    pub metrics_token: Option<String>,
    /// The URL the router and workers reach it at; derived from the bound address when `None`.
    pub public_url: Option<String>,
    /// The routers to register at, each heartbeated on its own; none means standalone
    /// (workers register here directly). Several remove the router as a single process.
    pub router_urls: Vec<String>,
    /// Free text shown in the admin API.
    pub location: Option<String>,
    /// A worker without a heartbeat for this long is stale, out of rotation [90 s].
    pub worker_timeout: Duration,
    /// A worker without a heartbeat for this long is removed [2 × worker_timeout].
    pub worker_expire_after: Duration,
    /// The heartbeat interval workers are told to use [30 s].
    pub worker_heartbeat_interval: Duration,
    /// How often to heartbeat the router [10 s] unless the router says otherwise; also sent
    /// when the inventory changes, at most once a tenth of the interval.
    pub router_heartbeat_interval: Duration,
    /// How long one service request may take before 504 [120 s].
    pub request_timeout: Duration,
    /// Largest request body accepted [50 MB].
    pub max_body_bytes: usize,
    /// How often the link is pinged [1 s].
    pub link_ping_interval: Duration,
    /// A link silent for this many ping intervals is closed [5].
    pub link_ping_misses: u32,
    /// Pings a second this coordinator spends on all its links together [1,000]; past it,
    /// the ping interval doubles (up to 64 s) and every worker is told. 0: never scaled.
    pub link_ping_budget: u32,
    /// Workers tried for one request when links drop under it [3].
    pub max_attempts: u32,
    /// The SQLite file of async jobs; in memory (lost on restart) when `None`.
    pub jobs_db: Option<std::path::PathBuf>,
    /// How long finished jobs are kept [7 days].
    pub job_retention: Duration,
    /// Jobs run at once [8].
    pub max_concurrent_jobs: usize,
    /// Jobs queued or running at most; a submission past it gets 429 [10,000]. Bounds the jobs
    /// file and what one flood can queue.
    pub max_unfinished_jobs: usize,
    /// Of them, what one client key may have [1,000].
    pub max_unfinished_jobs_per_client: usize,
    /// Service requests a second one client key may send to this coordinator directly (not
    /// through a router, which limits clients itself); 0: no limit [50].
    pub client_rate_limit: u32,
    /// How many of them it may send at once before the rate applies [200].
    pub client_rate_burst: u32,
    /// The share of answers of deterministic services (OCR, PDF text, clean-up, extraction)
    /// also asked of a second worker of another owner and compared [0.05]; `?verify=true`
    /// checks any call.
    pub spot_check_share: f64,
    /// Spot checks a worker may lose before it is quarantined (no new work) [3].
    pub quarantine_after: u32,
    /// Requests one worker may have in flight at once; a worker at it is passed over [64].
    pub max_in_flight_per_worker: u32,
    /// How a worker is chosen for a call [p2c].
    pub balance: rma_http::balance::Balance,
    /// When standby services are lent to idle workers and taken back
    /// ([`crate::placement`]).
    pub placement: crate::placement::Rules,
    /// How often placement looks [2 s].
    pub placement_period: Duration,
    /// Its place in a replication group; `None`: its jobs are its own (a home coordinator).
    pub group: Option<crate::GroupConfig>,
    /// Which worker tunnel URLs it agrees to register and call: https to public addresses by
    /// default; loopback too when the coordinator listens on loopback (set by `spawn`).
    pub url_policy: AddressPolicy,
}

impl CoordinatorConfig {
    /// Defaults for the coordinator `identity` names.
    pub fn new(identity: Arc<Identity>) -> Self {
        CoordinatorConfig {
            id: identity.node_id(),
            identity,
            metrics_token: None,
            tls: None,
            public_url: None,
            router_urls: Vec::new(),
            location: None,
            worker_timeout: Duration::from_secs(90),
            worker_expire_after: Duration::from_secs(180),
            worker_heartbeat_interval: Duration::from_secs(30),
            router_heartbeat_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_body_bytes: 50 * 1024 * 1024,
            link_ping_interval: Duration::from_secs(1),
            link_ping_misses: 5,
            link_ping_budget: 1_000,
            max_attempts: 3,
            jobs_db: None,
            job_retention: Duration::from_secs(7 * 24 * 3600),
            max_concurrent_jobs: 8,
            max_unfinished_jobs: 10_000,
            max_unfinished_jobs_per_client: 1_000,
            client_rate_limit: 50,
            client_rate_burst: 200,
            url_policy: AddressPolicy::default(),
            spot_check_share: 0.05,
            quarantine_after: 3,
            max_in_flight_per_worker: 64,
            balance: rma_http::balance::Balance::P2c,
            placement: crate::placement::Rules::default(),
            placement_period: Duration::from_secs(2),
            group: None,
        }
    }

    /// Sets the worker timeout; expiry follows at twice it.
    pub fn with_worker_timeout(mut self, timeout: Duration) -> Self {
        self.worker_timeout = timeout;
        self.worker_expire_after = timeout * 2;
        self
    }
}
