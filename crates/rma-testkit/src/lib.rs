//! Test support: in-process federations on port 0, `eventually` waits, tracing set-up.
//!
//! ```no_run
//! # async fn demo() {
//! let cluster = rma_testkit::Cluster::start(2, 3).await;
//! let resp = cluster.client().call_service("echo", "", "text/plain", "hi".into()).await;
//! # }
//! ```
#![deny(clippy::unwrap_used)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rma_client::Client;
use rma_coordinator::{CoordinatorConfig, CoordinatorHandle};
use rma_proto::Capabilities;
use rma_router::{RouterConfig, RouterHandle};
use rma_worker::{WorkerConfig, WorkerHandle};
use tokio::net::TcpListener;

/// How long [`eventually`] waits by default.
pub const EVENTUALLY: Duration = Duration::from_secs(15);

/// Installs a test tracing subscriber once (honours `RUST_LOG`).
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Polls `check` every 20 ms until it returns `Some`, for at most [`EVENTUALLY`]; panics
/// naming `what` when it never does.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, EVENTUALLY, check).await
}

/// [`eventually`] with another limit.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a worker's link is up.
pub async fn wait_linked_worker(w: &WorkerHandle) {
    let mut rx = w.watch();
    eventually("worker linked", || {
        let linked = rx.borrow_and_update().linked;
        async move { linked.then_some(()) }
    })
    .await;
}

/// A listener on 127.0.0.1, port 0.
pub async fn listener() -> TcpListener {
    bind_here()
}

/// The admin token of every router the testkit starts (tests of the token itself start a
/// router without one, which then writes `admin.token`).
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The metrics token of every coordinator the testkit starts.
pub const METRICS_TOKEN: &str = "test-metrics-token";

/// The federation key of every router the testkit starts: nodes of these tests get their
/// credentials from it directly ([`identity`]); the enrolment over HTTP has tests of its own.
pub fn federation() -> &'static rma_auth::FederationKey {
    static KEY: std::sync::OnceLock<rma_auth::FederationKey> = std::sync::OnceLock::new();
    KEY.get_or_init(rma_auth::FederationKey::generate)
}

/// The first line of `tesseract --version` (empty when it does not run), for benchmarks to
/// print beside their figures.
pub fn tesseract_version() -> String {
    std::process::Command::new("tesseract")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

/// An identity of the test federation.
pub fn identity(id: &str, role: rma_auth::Role) -> Arc<rma_auth::Identity> {
    Arc::new(
        federation()
            .identity(id, role, None)
            .expect("test identity"),
    )
}

/// A client key of the test federation (node `test-client`), made once.
pub fn client_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| identity("test-client", rma_auth::Role::Client).bearer())
}

/// A client of the services of the coordinator at `url`, holding [`client_key`]: a coordinator
/// runs services only for its federation's router and members, as an organisation with a key
/// calling it directly is.
pub fn coordinator_services(url: &str) -> Client {
    Client::with_timeout(url, Duration::from_secs(120))
        .expect("coordinator client")
        .with_bearer(client_key())
}

/// Router settings for tests around a registry file, with [`ADMIN_TOKEN`] and the test
/// [`federation`] key. The per-address rate limit is off: these tests put whole loads through
/// one address (the limit has tests of its own).
pub fn router_config(db: PathBuf) -> RouterConfig {
    let mut c = RouterConfig::new(db);
    c.admin_token = Some(ADMIN_TOKEN.to_owned());
    c.federation_key = Some(federation().clone());
    c.ip_rate_limit = 0;
    c.ip_upload_mb_per_hour = 0;
    // Tests of routing semantics (spreading, retries, spot checks reaching a given worker)
    // count on the rotation; load-aware choice has tests of its own that ask for it.
    c.balance = rma_http::balance::Balance::RoundRobin;
    c
}

/// Coordinator settings for tests: a credential of the test federation, fast heartbeats so
/// the router learns inventory quickly, [`METRICS_TOKEN`].
pub fn coordinator_config(id: &str, router_url: Option<String>) -> CoordinatorConfig {
    let mut c = CoordinatorConfig::new(identity(id, rma_auth::Role::Coordinator));
    c.router_urls = router_url.into_iter().collect();
    c.router_heartbeat_interval = Duration::from_millis(200);
    c.metrics_token = Some(METRICS_TOKEN.to_owned());
    // Tests and benchmarks put whole loads through one client key; the limit has a test of its
    // own.
    c.client_rate_limit = 0;
    // Spot checks only where a test asks for them (`?verify=true`): counts stay exact.
    c.spot_check_share = 0.0;
    c.balance = rma_http::balance::Balance::RoundRobin;
    // Placement only acts on workers with standby services (`WorkerConfig::services`); tests
    // that have them see it act within moments.
    c.placement_period = Duration::from_millis(100);
    c.placement = rma_coordinator::PlacementRules {
        grow_after: Duration::from_millis(300),
        shrink_after: Duration::from_secs(2),
    };
    c
}

/// Worker settings for tests: a credential of the test federation, plain CPU capabilities
/// (no probe), fast heartbeats.
pub fn worker_config(url: &str, id: &str, data_dir: PathBuf) -> WorkerConfig {
    let mut w = WorkerConfig::new(url, identity(id, rma_auth::Role::Worker));
    w.capabilities = Some(Capabilities {
        cpu_cores: 2,
        memory_bytes: 1 << 30,
        hostname: Some(id.to_owned()),
        ..Default::default()
    });
    w.heartbeat_interval = Duration::from_millis(500);
    w.data_dir = data_dir;
    w.ocr_threads = 1;
    // Dozens of workers start in the tests; most never read a page.
    w.ocr_warm = false;
    w
}

/// A federation in this process: one router, coordinators, workers, all on loopback.
pub struct Cluster {
    /// Holds the registry file and data dirs.
    pub dir: tempfile::TempDir,
    /// The router; `None` after [`Cluster::stop_router`].
    pub router: Option<RouterHandle>,
    /// The router's URL (stable across restarts of it).
    pub router_url: String,
    router_addr: std::net::SocketAddr,
    /// Coordinators by index; `None` once killed.
    pub coordinators: Vec<Option<CoordinatorHandle>>,
    /// Workers by index; `None` once killed.
    pub workers: Vec<Option<WorkerHandle>>,
    balance: rma_http::balance::Balance,
    /// Whether each role gets its own thread ([`Cluster::start_on_threads`]).
    own_threads: bool,
    /// Those threads; last, so the roles' handles are dropped (and stopped) first.
    threads: Vec<RoleThread>,
}

/// One role's single-threaded runtime on a thread of its own, as a single-threaded process
/// would run it. Dropped, its runtime stops and drops what it still runs.
struct RoleThread {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RoleThread {
    fn new(name: &str) -> RoleThread {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a role's runtime");
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("role-{name}"))
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("a role's thread");
        RoleThread {
            handle,
            _stop: stop,
        }
    }
}

/// Runs `start` (which spawns a role) on the caller's runtime, or with a new [`RoleThread`]'s
/// runtime as the current one when `own` — then everything the role spawns, its listener
/// included, lives on that thread.
fn place<T>(threads: &mut Vec<RoleThread>, own: bool, name: &str, start: impl FnOnce() -> T) -> T {
    if !own {
        return start();
    }
    let t = RoleThread::new(name);
    let out = {
        let _entered = t.handle.enter();
        start()
    };
    threads.push(t);
    out
}

/// A listener on 127.0.0.1, port 0, registered with the current runtime ([`listener`], and
/// sync for [`place`], which binds with a role's runtime entered).
fn bind_here() -> TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.set_nonblocking(true).expect("a non-blocking listener");
    TcpListener::from_std(l).expect("a listener on this runtime")
}

impl Cluster {
    /// Starts a router, `coordinators` coordinators registered at it, and `workers` workers
    /// registered through it; returns once every worker is linked and the router routes echo
    /// to every coordinator that holds a worker.
    pub async fn start(coordinators: usize, workers: usize) -> Cluster {
        Self::start_with_balance(
            coordinators,
            workers,
            rma_http::balance::Balance::RoundRobin,
        )
        .await
    }

    /// [`Cluster::start`] with router and coordinators choosing by `balance`.
    pub async fn start_with_balance(
        coordinators: usize,
        workers: usize,
        balance: rma_http::balance::Balance,
    ) -> Cluster {
        Self::start_placed(coordinators, workers, balance, false).await
    }

    /// [`Cluster::start`] with every role — the router, each coordinator, each worker — on a
    /// single-threaded runtime and thread of its own, as separate single-threaded processes
    /// would run; the caller's runtime runs only what the caller does (a load generator). For
    /// benchmarks of where a request's time goes (`BENCH_ROLE_THREADS=1` in the echo bench).
    /// Tests use [`Cluster::start`]: paused time drives one runtime's clock. A router restarted
    /// with [`Cluster::restart_router`] runs on the caller's runtime.
    pub async fn start_on_threads(coordinators: usize, workers: usize) -> Cluster {
        Self::start_placed(
            coordinators,
            workers,
            rma_http::balance::Balance::RoundRobin,
            true,
        )
        .await
    }

    async fn start_placed(
        coordinators: usize,
        workers: usize,
        balance: rma_http::balance::Balance,
        own_threads: bool,
    ) -> Cluster {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rc = router_config(dir.path().join("router.db"));
        rc.balance = balance;
        let mut threads = Vec::new();
        let router = place(&mut threads, own_threads, "router", || {
            rma_router::spawn(rc, bind_here()).expect("router starts")
        });
        let router_url = router.url();
        let router_addr = router.addr();
        let mut cluster = Cluster {
            dir,
            router: Some(router),
            router_url,
            router_addr,
            coordinators: Vec::new(),
            workers: Vec::new(),
            balance,
            own_threads,
            threads,
        };
        for i in 0..coordinators {
            cluster.add_coordinator(&format!("coord-{i}")).await;
        }
        for i in 0..workers {
            cluster.add_worker(&format!("worker-{i}")).await;
        }
        cluster.wait_linked().await;
        cluster
    }

    /// Starts another coordinator registered at the router; waits until the router lists it.
    pub async fn add_coordinator(&mut self, id: &str) -> usize {
        let mut cc = coordinator_config(id, Some(self.router_url.clone()));
        cc.balance = self.balance;
        let c = place(&mut self.threads, self.own_threads, id, || {
            rma_coordinator::spawn(cc, bind_here()).expect("coordinator starts")
        });
        self.coordinators.push(Some(c));
        let client = self.client();
        let id2 = id.to_owned();
        eventually(&format!("router lists {id}"), || {
            let client = client.clone();
            let id = id2.clone();
            async move {
                let list = client.coordinators().await.ok()?;
                list.iter().any(|c| c.coordinator_id == id).then_some(())
            }
        })
        .await;
        self.coordinators.len() - 1
    }

    /// Starts another worker registering through the router.
    pub fn add_worker(&mut self, id: &str) -> impl Future<Output = usize> + '_ {
        self.add_worker_with(id, |_| {})
    }

    /// Starts another worker, its configuration adjusted by `adjust` (a forced type, an AI
    /// backend…).
    pub fn add_worker_with(
        &mut self,
        id: &str,
        adjust: impl FnOnce(&mut WorkerConfig),
    ) -> impl Future<Output = usize> + '_ {
        let mut cfg = worker_config(&self.router_url, id, self.dir.path().join(id));
        adjust(&mut cfg);
        let id = id.to_owned();
        async move {
            let w = place(&mut self.threads, self.own_threads, &id, || {
                rma_worker::spawn(cfg).expect("worker services start")
            });
            self.workers.push(Some(w));
            self.workers.len() - 1
        }
    }

    /// Waits until every live worker's link is up and the router's topology shows them active.
    pub async fn wait_linked(&self) {
        let expected = self.workers.iter().flatten().count();
        for w in self.workers.iter().flatten() {
            wait_linked_worker(w).await;
        }
        let client = self.client();
        eventually(
            &format!("router topology shows {expected} active workers"),
            || {
                let client = client.clone();
                async move {
                    let t = client.topology().await.ok()?;
                    let active = t
                        .workers
                        .iter()
                        .filter(|w| w.status == rma_proto::api::WorkerStatus::Active)
                        .count();
                    (active == expected).then_some(())
                }
            },
        )
        .await;
    }

    /// An admin's client of the router (requests may take up to two minutes: OCR is slow work).
    pub fn client(&self) -> Client {
        Client::with_timeout(&self.router_url, Duration::from_secs(120))
            .expect("router client")
            .with_bearer(ADMIN_TOKEN)
    }

    /// A client of the router carrying a credential of the test federation for node `id`.
    pub fn member_client(&self, role: rma_auth::Role, id: &str) -> Client {
        Client::new(&self.router_url)
            .expect("router client")
            .with_identity(identity(id, role))
    }

    /// A client of the router without the admin token, as anyone on the internet has.
    pub fn public_client(&self) -> Client {
        Client::with_timeout(&self.router_url, Duration::from_secs(120)).expect("router client")
    }

    /// A client of coordinator `i` (with its metrics token).
    pub fn coordinator_client(&self, i: usize) -> Client {
        let c = self.coordinators[i].as_ref().expect("coordinator alive");
        Client::new(&c.url())
            .expect("coordinator client")
            .with_bearer(METRICS_TOKEN)
    }

    /// Stops coordinator `i` as a crash would.
    pub fn kill_coordinator(&mut self, i: usize) {
        self.coordinators[i] = None;
    }

    /// Stops worker `i` as a crash would: its link closes.
    pub fn kill_worker(&mut self, i: usize) {
        self.workers[i] = None;
    }

    /// Stops the router (its registry file stays).
    pub fn stop_router(&mut self) {
        self.router = None;
    }

    /// Starts the router again on the same address and registry file.
    pub async fn restart_router(&mut self) {
        self.router = None;
        let l = eventually("router port free again", || async {
            TcpListener::bind(self.router_addr).await.ok()
        })
        .await;
        let mut rc = router_config(self.dir.path().join("router.db"));
        rc.balance = self.balance;
        let r = rma_router::spawn(rc, l).expect("router restarts");
        self.router = Some(r);
    }
}
