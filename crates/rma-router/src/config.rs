//! Router configuration.

use std::path::PathBuf;
use std::time::Duration;

use rma_proto::urls::AddressPolicy;

/// Everything the router needs to start.
#[derive(Clone)]
pub struct RouterConfig {
    /// The SQLite file of the coordinator registry.
    pub db_path: PathBuf,
    /// A coordinator silent this long is stale: out of routing [300 s].
    pub stale_after: Duration,
    /// A coordinator silent this long is removed [2 × stale_after].
    pub expire_after: Duration,
    /// How often expiry runs [stale_after / 10, at most 5 s].
    pub sweep_interval: Duration,
    /// How long one forwarded request may take before 504 [125 s: the coordinator's 120 s and a margin].
    pub request_timeout: Duration,
    /// Largest request body accepted [50 MB].
    pub max_body_bytes: usize,
    /// How often every coordinator is pinged (`GET /health`) [2 s].
    pub ping_interval: Duration,
    /// How often coordinators are told to heartbeat, in the register reply [none: each keeps
    /// its own, 10 s by default]. At most half of `stale_after`.
    pub coordinator_heartbeat_interval: Option<Duration>,
    /// Pings missed in a row before a coordinator is out of rotation [2].
    pub ping_misses: u32,
    /// When every coordinator offering a service failed a request, how long to keep trying
    /// for another to offer it (a failover in progress) before answering 503 [5 s].
    pub failover_wait: Duration,
    /// Which coordinator URLs it agrees to register and call: https to public addresses by
    /// default; loopback too when the router itself listens on loopback (set by `spawn`).
    pub url_policy: AddressPolicy,
    /// The admin token; read from (or made in) `admin.token` beside `db_path` when `None`.
    pub admin_token: Option<String>,
    /// The federation's signing key; read from (or made in) `federation.key` beside
    /// `db_path` when `None`.
    pub federation_key: Option<rma_auth::FederationKey>,
    /// Service requests and registrations one address may send a second [10]; 0 turns the
    /// limit off (benchmarks, tests of load).
    pub ip_rate_limit: u32,
    /// How many of them may come at once before the rate applies [50].
    pub ip_rate_burst: u32,
    /// Megabytes of uploads one address may send an hour without a client key [1024]; 0: no
    /// quota.
    pub ip_upload_mb_per_hour: u32,
    /// Uploads need a client credential (`--clients keyed`) [false: anyone may upload,
    /// limited per address].
    pub clients_keyed: bool,
    /// Uploads one client (a credential of role client) may send a second [50]; 0: no limit.
    pub client_rate_limit: u32,
    /// How many of them may come at once [200].
    pub client_rate_burst: u32,
    /// How a coordinator is chosen for a service request [p2c].
    pub balance: rma_http::balance::Balance,
    /// Serve https with this certificate and key (`--tls-cert/--tls-key`).
    pub tls: Option<rma_http::tls::TlsConfig>,
}

impl RouterConfig {
    /// Defaults around a registry file.
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        Self::with_stale_after(db_path, Duration::from_secs(300))
    }

    /// Defaults with another stale threshold (expiry and sweep follow it).
    pub fn with_stale_after(db_path: impl Into<PathBuf>, stale_after: Duration) -> Self {
        RouterConfig {
            db_path: db_path.into(),
            stale_after,
            expire_after: stale_after * 2,
            sweep_interval: (stale_after / 10)
                .clamp(Duration::from_millis(50), Duration::from_secs(5)),
            request_timeout: Duration::from_secs(125),
            max_body_bytes: 50 * 1024 * 1024,
            ping_interval: Duration::from_secs(2),
            coordinator_heartbeat_interval: None,
            ping_misses: 2,
            failover_wait: Duration::from_secs(5),
            url_policy: AddressPolicy::default(),
            admin_token: None,
            federation_key: None,
            ip_rate_limit: 10,
            ip_rate_burst: 50,
            ip_upload_mb_per_hour: 1024,
            clients_keyed: false,
            client_rate_limit: 50,
            client_rate_burst: 200,
            balance: rma_http::balance::Balance::P2c,
            tls: None,
        }
    }
}
