//! Chaos tests: the real `rma` binary as separate processes on separate hosts — network
//! namespaces joined by veth pairs to a bridge, made and torn down by this test — a router, two
//! coordinators and four workers under a steady, bounded load of echo requests, while workers,
//! coordinators and the router are killed, cut off and restarted. Every scenario prints its
//! figures; `docs/reliability.md` records them.
//!
//! One test per scenario, each on a federation of its own, one at a time. Needs root and
//! `ip netns` (iproute2). Where namespaces cannot be made, each test says so on stderr and
//! passes without running — skipped, not silently — unless `RMA_CHAOS=1` (set by `.ci/run`),
//! which makes that a failure.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rma_client::{Client, RawResponse};
use rma_proto::job::JobState;
use serde_json::Value;

const RMA: &str = env!("CARGO_BIN_EXE_rma");

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The test network: a hub namespace with a bridge, one namespace per host, and a veth from
/// this (root) namespace to the bridge so the test can reach the router. Dropping it kills the
/// processes and deletes every namespace and link it made, whatever happened.
struct Net {
    prefix: String,
    subnet: u8,
    hosts: Vec<String>,
    procs: Vec<(String, Child)>,
    dir: tempfile::TempDir,
    /// The join token coordinators enrol with on their first start.
    coordinator_join: String,
    /// The join token workers enrol with on their first start.
    worker_join: String,
}

impl Net {
    fn new(tag: u8) -> Result<Net, String> {
        // Unique per process and per test, so runs and tests never share names or subnets.
        let pid = std::process::id();
        let prefix = format!("rc{}t{tag}", pid % 10_000);
        let subnet = 100 + (pid % 20) as u8 * 5 + tag;
        let mut net = Net {
            prefix,
            subnet,
            hosts: Vec::new(),
            procs: Vec::new(),
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            coordinator_join: String::new(),
            worker_join: String::new(),
        };
        let hub = net.hub();
        ip(&["netns", "add", &hub])?;
        net.hosts.push(hub.clone());
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let root_if = format!("{}r", net.prefix);
        ip(&[
            "link", "add", &root_if, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{}.0.1/24", net.subnet),
            "dev",
            &root_if,
        ])?;
        ip(&["link", "set", &root_if, "up"])?;
        ip(&["-n", &hub, "link", "set", "up0", "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", "up0", "up"])?;
        Ok(net)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn addr(&self, host: u8) -> String {
        format!("10.{}.0.{host}", self.subnet)
    }

    /// Adds a host namespace at 10.S.0.`n`, plugged into the bridge at port `p{n}`.
    fn host(&mut self, n: u8) -> Result<String, String> {
        let ns = format!("{}-h{n}", self.prefix);
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let port = format!("p{n}");
        ip(&[
            "-n",
            &self.hub(),
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.addr(n)),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &self.hub(), "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &self.hub(), "link", "set", &port, "up"])?;
        Ok(ns)
    }

    /// Pulls host `n`'s cable at the switch (or plugs it back).
    fn cable(&self, n: u8, connected: bool) {
        let _ = ip(&[
            "-n",
            &self.hub(),
            "link",
            "set",
            &format!("p{n}"),
            if connected { "up" } else { "down" },
        ]);
    }

    /// Starts `rma ARGS` on host `n`, named `name`.
    fn start(&mut self, name: &str, n: u8, args: &[&str], env: &[(&str, String)]) {
        let ns = format!("{}-h{n}", self.prefix);
        let log =
            std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, RMA])
            .args(args)
            .env("RUST_LOG", "info,tower_http=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn rma");
        self.procs.push((name.to_owned(), child));
    }

    /// `kill -9`.
    fn kill(&mut self, name: &str) {
        if let Some(i) = self.procs.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.procs.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn data(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A client key of this network's federation, issued with the router's `federation.key`
    /// (beside its registry): coordinators run services only for their router and members.
    fn client_key(&self) -> String {
        let path =
            std::path::PathBuf::from(self.data("router.db")).with_file_name("federation.key");
        rma_auth::FederationKey::load(&path)
            .expect("the router's federation key")
            .identity("chaos-client", rma_auth::Role::Client, None)
            .expect("a client identity")
            .bearer()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = ip(&["link", "del", &format!("{}r", self.prefix)]);
        for ns in self.hosts.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
        if std::thread::panicking() {
            // Leave the logs where a person can read them.
            let keep = self.dir.path().to_path_buf();
            eprintln!("chaos: logs of the failed run are in {}", keep.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

/// A steady, bounded load: `concurrency` loops of echo requests (1 KB, `delay_ms`), each
/// recording its outcome, until stopped.
struct Load {
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Load {
    fn start(router: &str, concurrency: usize, delay_ms: u64) -> Load {
        let l = Load {
            sent: Arc::default(),
            failed: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
            failures: Arc::default(),
        };
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let client = Client::with_timeout(router, Duration::from_secs(30)).expect("client");
            let (sent, failed, stop, failures) = (
                l.sent.clone(),
                l.failed.clone(),
                l.stop.clone(),
                l.failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let body = Bytes::from(vec![b'x'; 1024]);
                let q = format!("delay_ms={delay_ms}");
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match client
                        .call_service("echo", &q, "application/octet-stream", body.clone())
                        .await
                    {
                        Ok(r) if r.status == 200 && r.body.len() == 1024 => {}
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.lock().expect("lock").push(format!(
                                "{} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ));
                            // A client backs off after a failure rather than hammering.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.lock().expect("lock").push(e.to_string());
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        Load { tasks, ..l }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let (s, f) = (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        );
        let failures = self.failures.lock().expect("lock").clone();
        (s, f, failures)
    }
}

async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return (v, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "chaos: timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn topology(router: &Client) -> Option<Value> {
    let r = router
        .raw(
            reqwest::Method::GET,
            "api/topology",
            None,
            Bytes::new(),
            &[],
        )
        .await
        .ok()?;
    r.json().ok()
}

/// Waits until the router's topology shows `n` active workers.
async fn active_workers(router: &Client, n: usize) {
    wait_for(
        &format!("{n} active workers"),
        Duration::from_secs(30),
        async || {
            let t = topology(router).await?;
            let active = t["workers"]
                .as_array()?
                .iter()
                .filter(|w| w["status"] == "active")
                .count();
            (active == n).then_some(())
        },
    )
    .await;
}

fn worker_row<'a>(t: &'a Value, id: &str) -> Option<&'a Value> {
    t["workers"].as_array()?.iter().find(|w| w["id"] == id)
}

fn report(name: &str, lines: &[String]) {
    println!("chaos {name}:");
    for l in lines {
        println!("  {l}");
    }
}

/// A test network with host namespaces `hosts` and a router on .10: its admin client and its URL
/// (the coordinators' and the workers' join tokens are kept in the network). `None` (the
/// test is skipped, with a `chaos: SKIPPED` line) where namespaces cannot be made, unless
/// `RMA_CHAOS=1`, which makes that a failure.
async fn bootstrap(tag: u8, hosts: &[u8]) -> Option<(Net, Client, String)> {
    let mut net = match Net::new(tag) {
        Ok(n) => n,
        Err(e) if std::env::var("RMA_CHAOS").as_deref() == Ok("1") => {
            panic!("chaos: RMA_CHAOS=1 but network namespaces cannot be made here: {e}")
        }
        Err(e) => {
            eprintln!(
                "chaos: SKIPPED — cannot make network namespaces here ({e}); these tests need root and `ip netns` (RMA_CHAOS=1 makes this a failure)"
            );
            return None;
        }
    };
    rma_client::install_crypto_provider();
    for n in hosts {
        net.host(*n).expect("host namespace");
    }
    let router_url = format!("http://{}:8787", net.addr(10));
    net.start_router();
    // The router writes its admin token beside its registry on first start.
    let token_file = std::path::PathBuf::from(net.data("router.db")).with_file_name("admin.token");
    let (token, _) = wait_for("the admin token", Duration::from_secs(30), async || {
        // Whole once its newline is there.
        std::fs::read_to_string(&token_file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    let router = Client::with_timeout(&router_url, Duration::from_secs(20))
        .expect("client")
        .with_bearer(token.trim());
    // Every node enrols with a join token, as on a real federation.
    let invite = async |role: &str| {
        router
            .invite(&rma_proto::membership::InviteRequest {
                role: role.into(),
                services: None,
                ttl_s: Some(3600),
                uses: Some(10),
                owner: None,
                router_url: Some(router_url.clone()),
            })
            .await
            .ok()
            .map(|i| i.token)
    };
    net.coordinator_join = wait_for(
        "a coordinator invite",
        Duration::from_secs(30),
        async || invite("coordinator").await,
    )
    .await
    .0;
    net.worker_join = invite("worker").await.expect("a worker invite");
    Some((net, router, router_url))
}

/// Chaos tests make network namespaces and start seven processes each: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A router (.10), coordinators `coord-a` (.11) and `coord-b` (.12) and workers w1–w4
/// (.21–.24), each in its own namespace, all up and linked. `None` (the test is skipped, with a
/// `chaos: SKIPPED` line) where namespaces cannot be made, unless `RMA_CHAOS=1`, which makes
/// that a failure: CI sets it, so the suite cannot pass by not running.
struct Federation {
    net: Net,
    router: Client,
    router_url: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Federation {
    async fn start(tag: u8) -> Option<Federation> {
        let turn = ONE_AT_A_TIME.lock().await;
        let (mut net, router, router_url) = bootstrap(tag, &[10, 11, 12, 21, 22, 23, 24]).await?;
        net.start_coordinator("coord-a", 11);
        net.start_coordinator("coord-b", 12);
        wait_for("two coordinators", Duration::from_secs(30), async || {
            let t = topology(&router).await?;
            (t["coordinators"].as_array()?.len() == 2).then_some(())
        })
        .await;
        for (i, n) in [21u8, 22, 23, 24].iter().enumerate() {
            net.start_worker(&format!("w{}", i + 1), *n, &[]);
        }
        active_workers(&router, 4).await;
        Some(Federation {
            net,
            router,
            router_url,
            _turn: turn,
        })
    }
}

impl Net {
    fn start_router(&mut self) {
        let db = self.data("router.db");
        let listen = format!("{}:8787", self.addr(10));
        self.start(
            "router",
            10,
            &[
                "router",
                "--listen",
                &listen,
                "--db",
                &db,
                "--stale-after",
                "60",
                // The test network is a private LAN without TLS, and the load comes from one
                // address.
                "--allow-http",
                "--allow-private-addresses",
                "--ip-rate-limit",
                "0",
            ],
            &[],
        );
    }

    /// A worker `id` on host `n`, joining through the router, with `extra` flags.
    fn start_worker(&mut self, id: &str, n: u8, extra: &[&str]) {
        let data = self.data(id);
        let mut args = vec![
            "worker",
            "--heartbeat-interval",
            "5",
            "--ocr-threads",
            "1",
            "--data-dir",
            &data,
        ];
        args.extend_from_slice(extra);
        let router = format!("http://{}:8787", self.addr(10));
        let join = self.worker_join.clone();
        self.start(
            id,
            n,
            &args,
            &[
                ("COORDINATOR_URL", router),
                ("WORKER_ID", id.to_owned()),
                ("RMA_JOIN_TOKEN", join),
            ],
        );
    }

    fn start_coordinator(&mut self, id: &str, n: u8) {
        self.start_coordinator_with(id, n, &[]);
    }

    /// A coordinator with `extra` flags (a replication group's).
    fn start_coordinator_with(&mut self, id: &str, n: u8, extra: &[String]) {
        let listen = format!("{}:8080", self.addr(n));
        let public = format!("http://{listen}");
        let db = self.data(&format!("{id}-jobs.db"));
        let dir = self.data(id);
        let router = format!("http://{}:8787", self.addr(10));
        let join = self.coordinator_join.clone();
        self.start(
            id,
            n,
            &[
                "coordinator",
                "--listen",
                &listen,
                "--public-url",
                &public,
                "--router-url",
                &router,
                "--id",
                id,
                "--router-heartbeat",
                "2",
                "--jobs-db",
                &db,
                "--data-dir",
                &dir,
                "--allow-http",
                "--allow-private-addresses",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(extra.iter().cloned())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
            &[("RMA_JOIN_TOKEN", join)],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_fails_no_request() {
    let Some(Federation {
        mut net,
        router,
        router_url,
        _turn,
    }) = Federation::start(0).await
    else {
        return;
    };
    let _ = &router_url;
    // 1. kill -9 one worker: no request fails.
    let load = Load::start(&router_url, 8, 100);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent_before, _) = load.counts();
    let killed = Instant::now();
    net.kill("w1");
    let (_, detect) = wait_for("w1 out of rotation", Duration::from_secs(10), async || {
        let t = topology(&router).await?;
        (worker_row(&t, "w1").is_none_or(|w| w["status"] != "active")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sent, failed, failures) = load.stop().await;
    report(
        "1 kill -9 a worker",
        &[
            format!(
                "requests sent {sent} ({} after the kill), failed {failed}",
                sent - sent_before
            ),
            format!(
                "out of rotation (seen at the router) after {:.2} s",
                detect.as_secs_f64()
            ),
            format!(
                "measured {:.1} s after the kill",
                killed.elapsed().as_secs_f64()
            ),
        ],
    );
    assert_eq!(
        failed, 0,
        "no request may fail when a worker dies: {failures:?}"
    );
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_a_workers_cable_takes_it_out_and_back() {
    let Some(Federation {
        net,
        router,
        router_url,
        _turn,
    }) = Federation::start(1).await
    else {
        return;
    };
    let _ = &router_url;
    // 3. cut one worker's network: out within the link's ping timeout, back after it heals.
    let load = Load::start(&router_url, 8, 100);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut = Instant::now();
    net.cable(22, false);
    let (_, out_after) = wait_for(
        "w2 out of rotation after the cut",
        Duration::from_secs(15),
        async || {
            let t = topology(&router).await?;
            (worker_row(&t, "w2")?["status"] != "active").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.cable(22, true);
    let healed = Instant::now();
    let (_, back_after) = wait_for(
        "w2 back after the cut heals",
        Duration::from_secs(40),
        async || {
            let t = topology(&router).await?;
            (worker_row(&t, "w2")?["status"] == "active").then_some(())
        },
    )
    .await;
    let (sent, failed, failures) = load.stop().await;
    report(
        "3 cut a worker's network",
        &[
            format!(
                "requests sent {sent}, failed {failed} (requests on the cut worker wait for the ping timeout, then go to another)"
            ),
            format!(
                "out of rotation {:.2} s after the cut (link ping timeout 5 s)",
                out_after.as_secs_f64()
            ),
            format!(
                "back in rotation {:.2} s after the cable was plugged back",
                back_after.as_secs_f64()
            ),
            format!("cut lasted {:.1} s", (healed - cut).as_secs_f64()),
        ],
    );
    assert_eq!(
        failed, 0,
        "a cut worker's requests go elsewhere: {failures:?}"
    );
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_router_keeps_its_registry() {
    let Some(Federation {
        mut net,
        router,
        router_url,
        _turn,
    }) = Federation::start(2).await
    else {
        return;
    };
    let _ = &router_url;
    // 4. restart the router: the registry is intact and routing resumes.
    let before = router.coordinators().await.expect("list");
    let load = Load::start(&router_url, 4, 50);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, failed_before) = load.counts();
    let down = Instant::now();
    net.kill("router");
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.start_router();
    let (after, _) = wait_for(
        "the router answers again",
        Duration::from_secs(20),
        async || router.coordinators().await.ok(),
    )
    .await;
    let listed_at_once = after.len();
    let (_, resumed) = wait_for("routing resumes", Duration::from_secs(20), async || {
        let r = router
            .call_service("echo", "", "text/plain", Bytes::from_static(b"back"))
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    let outage = down.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sent, failed, _) = load.stop().await;
    report(
        "4 restart the router",
        &[
            format!(
                "coordinators in the registry before {}, straight after the restart {listed_at_once}",
                before.len()
            ),
            format!(
                "routing resumed {:.2} s after the new process answered; whole outage {:.1} s",
                resumed.as_secs_f64(),
                outage.as_secs_f64()
            ),
            format!(
                "requests sent {sent}, failed {} (all while no router process was running)",
                failed - failed_before
            ),
        ],
    );
    assert_eq!(listed_at_once, before.len());
    for c in &before {
        let again = after
            .iter()
            .find(|a| a.coordinator_id == c.coordinator_id)
            .expect("still registered");
        assert_eq!(again.registered_at, c.registered_at);
    }
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_busiest_coordinator_rehomes_its_workers() {
    let Some(Federation {
        mut net,
        router,
        router_url,
        _turn,
    }) = Federation::start(3).await
    else {
        return;
    };
    let _ = &router_url;
    // 2. kill -9 a coordinator: at most the in-flight requests fail before the router notices,
    // none after; its workers re-home within 10 s.
    // The victim is the coordinator holding the most workers, so there is something to re-home.
    let t = topology(&router).await.expect("topology");
    let count = |c: &str| {
        t["workers"].as_array().map_or(0, |ws| {
            ws.iter()
                .filter(|w| w["coordinator"] == c && w["status"] == "active")
                .count()
        })
    };
    let (victim, other, _victim_host) = if count("coord-a") >= count("coord-b") {
        ("coord-a", "coord-b", 11u8)
    } else {
        ("coord-b", "coord-a", 12u8)
    };
    let victim_workers: Vec<String> = t["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter(|w| w["coordinator"] == victim && w["status"] == "active")
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect();
    assert!(!victim_workers.is_empty(), "the victim holds workers");
    let concurrency = 8;
    let load = Load::start(&router_url, concurrency, 100);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    net.kill(victim);
    let (_, noticed) = wait_for(
        "the router notices the victim",
        Duration::from_secs(15),
        async || {
            let t = topology(&router).await?;
            let c = t["coordinators"]
                .as_array()?
                .iter()
                .find(|c| c["id"] == victim)?;
            (c["status"] != "healthy").then_some(())
        },
    )
    .await;
    let (_, failed_until_noticed) = load.counts();
    let (_, rehomed) = wait_for(
        "the victim's workers re-homed",
        Duration::from_secs(20),
        async || {
            let t = topology(&router).await?;
            victim_workers
                .iter()
                .all(|id| {
                    worker_row(&t, id)
                        .is_some_and(|w| w["coordinator"] == other && w["status"] == "active")
                })
                .then_some(())
        },
    )
    .await;
    let rehomed_at = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sent, failed, failures) = load.stop().await;
    report(
        "2 kill -9 a coordinator",
        &[
            format!(
                "requests sent {sent}, failed {failed}: {failed_until_noticed} before the router noticed (in flight at the kill: up to {concurrency}), {} after",
                failed - failed_until_noticed
            ),
            format!(
                "router noticed after {:.2} s (pings every 2 s, out after 2 misses; a refused connection marks it at once)",
                noticed.as_secs_f64()
            ),
            format!(
                "its workers {victim_workers:?} re-homed to {other} {:.2} s after the kill",
                rehomed_at.as_secs_f64()
            ),
        ],
    );
    let _ = rehomed;
    assert!(failed_until_noticed <= concurrency as u64, "{failures:?}");
    assert_eq!(
        failed, failed_until_noticed,
        "nothing fails once the router has noticed: {failures:?}"
    );
    assert!(
        rehomed_at <= Duration::from_secs(10),
        "re-homed within 10 s"
    );
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_their_coordinator_crashing() {
    let Some(Federation {
        mut net,
        router,
        router_url,
        _turn,
    }) = Federation::start(4).await
    else {
        return;
    };
    let _ = &router_url;
    // 5. jobs: kill the coordinator holding queued jobs, restart it: every job finishes.
    let (victim, other, victim_host) = ("coord-a", "coord-b", 11u8);
    // Jobs go to the victim directly, as a client of it would.
    let victim_client = Client::with_timeout(
        &format!("http://{}:8080", net.addr(victim_host)),
        Duration::from_secs(10),
    )
    .expect("client")
    .with_bearer(net.client_key());
    let mut jobs = Vec::new();
    for i in 0..12 {
        let accepted = victim_client
            .submit_job(
                "echo",
                "delay_ms=300",
                "text/plain",
                Bytes::from(format!("job {i}")),
            )
            .await
            .expect("submit");
        jobs.push(accepted.job_id);
    }
    let killed = Instant::now();
    net.kill(victim);
    tokio::time::sleep(Duration::from_secs(1)).await;
    net.start_coordinator(victim, victim_host);
    let (_, all_done) = wait_for("every job done", Duration::from_secs(60), async || {
        for id in &jobs {
            if router.job(id).await.ok()?.state != JobState::Done {
                return None;
            }
        }
        Some(())
    })
    .await;
    let mut runs = 0;
    for (i, id) in jobs.iter().enumerate() {
        let v = router.job_result(id).await.expect("result");
        assert_eq!(
            v.body,
            Bytes::from(format!("job {i}")),
            "job {i} has its own result"
        );
        runs += router.job(id).await.expect("job").runs;
    }
    report(
        "5 jobs through a coordinator crash",
        &[
            format!(
                "{} jobs submitted to {victim}, which was killed with them queued or running and restarted 1 s later",
                jobs.len()
            ),
            format!(
                "all {} done {:.2} s after the kill ({runs} runs in all: jobs cut off mid-run ran again)",
                jobs.len(),
                killed.elapsed().as_secs_f64()
            ),
            format!(
                "{victim} had no workers after its restart (they had re-homed), so it ran them through the router on {other}'s workers; done {:.2} s after restart",
                all_done.as_secs_f64()
            ),
        ],
    );
    drop(net);
}

// ---------------------------------------------------------------------------------------------
// Replicated coordinators (a Raft group of three), under a steady flow of jobs, with a history
// checker in the style of Jepsen: every acknowledged job must end in one result, no result may
// exist for a job that was refused, and every member must agree on every result.

const GROUP_METRICS: &str = "chaos-metrics-token";

/// The group's members: (member id, coordinator id, host).
const MEMBERS: [(u64, &str, u8); 3] = [(1, "coord-a", 11), (2, "coord-b", 12), (3, "coord-c", 13)];

/// A router (.10), a group of three coordinators (.11–.13), a spare host (.14) and workers
/// w1–w3 (.21–.23), started with `worker_args` (e.g. `--services echo`).
struct GroupFederation {
    net: Net,
    router: Client,
    router_url: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl GroupFederation {
    async fn start(tag: u8, worker_args: &[&str]) -> Option<GroupFederation> {
        let turn = ONE_AT_A_TIME.lock().await;
        let (mut net, router, router_url) =
            bootstrap(tag, &[10, 11, 12, 13, 14, 21, 22, 23]).await?;
        let members: Vec<String> = MEMBERS
            .iter()
            .map(|(i, id, n)| format!("{i}={id}@http://{}:8080", net.addr(*n)))
            .collect();
        let members = members.join(",");
        for (i, id, n) in MEMBERS {
            net.start_coordinator_with(id, n, &group_flags(i, &["--group", &members]));
        }
        wait_for("three coordinators", Duration::from_secs(30), async || {
            let t = topology(&router).await?;
            (t["coordinators"].as_array()?.len() == 3).then_some(())
        })
        .await;
        let mut fed = GroupFederation {
            net,
            router,
            router_url,
            _turn: turn,
        };
        for (i, n) in [21u8, 22, 23].iter().enumerate() {
            fed.net
                .start_worker(&format!("w{}", i + 1), *n, worker_args);
        }
        let router = fed.router.clone();
        active_workers(&router, 3).await;
        Some(fed)
    }

    fn member_url(&self, host: u8) -> String {
        format!("http://{}:8080", self.net.addr(host))
    }

    /// `GET {path}` at the member on `host`, with the members' metrics token.
    async fn member_get(&self, host: u8, path: &str, timeout: Duration) -> Option<RawResponse> {
        Client::with_timeout(&self.member_url(host), timeout)
            .ok()?
            .with_bearer(GROUP_METRICS)
            .raw(reqwest::Method::GET, path, None, Bytes::new(), &[])
            .await
            .ok()
    }

    /// A member's `/api/raft/status`.
    async fn status(&self, host: u8) -> Option<Value> {
        self.member_get(host, "api/raft/status", Duration::from_secs(5))
            .await?
            .json()
            .ok()
    }

    /// The leader's member id, once the members on `hosts` agree on one that is not `gone`.
    async fn leader(&self, hosts: &[u8], gone: Option<u64>) -> u64 {
        wait_for(
            "the group agrees on a leader",
            Duration::from_secs(30),
            async || {
                let mut seen = Vec::new();
                for h in hosts {
                    seen.push(self.status(*h).await?["leader"].as_u64()?);
                }
                (seen.windows(2).all(|w| w[0] == w[1]) && Some(seen[0]) != gone).then(|| seen[0])
            },
        )
        .await
        .0
    }

    /// Every job in the group's log as the members on `hosts` hold it.
    async fn logs(&self, hosts: &[u8]) -> Vec<Vec<Value>> {
        let mut out = Vec::new();
        for h in hosts {
            let r = self
                .member_get(*h, "api/raft/jobs", Duration::from_secs(10))
                .await
                .expect("the member lists its log");
            out.push(r.parse::<Vec<Value>>().expect("json"));
        }
        out
    }
}

fn group_flags(id: u64, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--group-id".to_owned(),
        id.to_string(),
        "--group-snapshot-every".to_owned(),
        "200".to_owned(),
        "--metrics-token".to_owned(),
        GROUP_METRICS.to_owned(),
    ]
    .into();
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// One submission and what the client heard.
#[derive(Debug, Clone)]
enum Heard {
    /// 202 with the job's id, at this time.
    Acked(String, Instant),
    /// A definite refusal (an HTTP error status): the job must not exist.
    Refused(u16),
    /// No answer (a timeout, a cut connection): the job may or may not exist.
    Unknown,
}

/// Submissions in order: each letter's body and what its client heard.
type History = Vec<(Vec<u8>, Heard)>;

/// Steady job submissions, each with a body of its own, recorded as a history.
struct JobLoad {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<History>>,
}

impl JobLoad {
    fn start(router: &str, concurrency: usize) -> JobLoad {
        let stop: Arc<AtomicBool> = Arc::default();
        let next: Arc<AtomicU64> = Arc::default();
        let tasks = (0..concurrency)
            .map(|_| {
                let client = Client::with_timeout(router, Duration::from_secs(15)).expect("client");
                let (stop, next) = (stop.clone(), next.clone());
                tokio::spawn(async move {
                    let mut history = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let body = format!("letter {n}").into_bytes();
                        let heard = match client
                            .submit_job(
                                "echo",
                                "delay_ms=200",
                                "text/plain",
                                Bytes::from(body.clone()),
                            )
                            .await
                        {
                            Ok(j) => Heard::Acked(j.job_id, Instant::now()),
                            Err(e) => match e.status() {
                                Some(s) => Heard::Refused(s.as_u16()),
                                None => Heard::Unknown,
                            },
                        };
                        // A steady, bounded flow: at most ten letters a second a loop.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        history.push((body, heard));
                    }
                    history
                })
            })
            .collect();
        JobLoad { stop, tasks }
    }

    async fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    }
}

/// Checks a history against the group's logs on `hosts`; returns the report's lines and
/// panics on a violation.
async fn check_history(
    fed: &GroupFederation,
    history: &[(Vec<u8>, Heard)],
    hosts: &[u8],
) -> Vec<String> {
    let acked: Vec<(&Vec<u8>, &String)> = history
        .iter()
        .filter_map(|(b, h)| match h {
            Heard::Acked(id, _) => Some((b, id)),
            _ => None,
        })
        .collect();
    let refused = history
        .iter()
        .filter(|(_, h)| matches!(h, Heard::Refused(_)))
        .count();
    let unknown = history
        .iter()
        .filter(|(_, h)| matches!(h, Heard::Unknown))
        .count();
    // Every acknowledged job ends, done, with its own body.
    let (_, settled) = wait_for(
        "every acknowledged job done",
        Duration::from_secs(120),
        async || {
            for (_, id) in &acked {
                if fed.router.job(id).await.ok()?.state != JobState::Done {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for (body, id) in &acked {
        let r = fed.router.job_result(id).await.expect("result");
        assert_eq!(&r.body[..], &body[..], "job {id} answers its own letter");
    }
    // The members' logs: the same jobs, the same results; nothing for a refused submission.
    let logs = fed.logs(hosts).await;
    let hash_of = |b: &[u8]| rma_replica::machine::content_hash(b);
    let by_input: std::collections::HashMap<String, &Heard> =
        history.iter().map(|(b, h)| (hash_of(b), h)).collect();
    let mut results: std::collections::BTreeMap<String, (Value, Value)> = Default::default();
    for log in &logs {
        for j in log {
            let id = j["id"].as_str().unwrap_or_default().to_owned();
            let entry = (j["state"].clone(), j["output"].clone());
            if let Some(prev) = results.get(&id) {
                assert_eq!(prev, &entry, "members disagree on job {id}");
            } else {
                results.insert(id, entry);
            }
        }
    }
    let mut unacked_in_log = 0;
    let mut copies: std::collections::HashMap<String, usize> = Default::default();
    for j in &logs[0] {
        let input = j["input"].as_str().unwrap_or_default().to_owned();
        *copies.entry(input.clone()).or_default() += 1;
        match by_input.get(&input) {
            Some(Heard::Refused(s)) => panic!(
                "job {} exists though its submission was refused ({s})",
                j["id"]
            ),
            Some(Heard::Unknown) => unacked_in_log += 1,
            _ => {}
        }
    }
    let duplicates = copies.values().filter(|n| **n > 1).count();
    vec![
        format!(
            "history: {} submissions — {} acknowledged, {refused} refused (no majority reachable), {unknown} with no answer",
            history.len(),
            acked.len()
        ),
        format!(
            "checker: {} of {} acknowledged jobs done with their own result ({:.1} s after the load stopped); 0 lost; 0 results for refused submissions; {unacked_in_log} unanswered submissions committed anyway; {duplicates} inputs submitted twice by retries; {} members agree on all {} results",
            acked.len(),
            acked.len(),
            settled.as_secs_f64(),
            logs.len(),
            results.len()
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_loses_no_job_when_its_leader_dies_and_a_new_member_catches_up() {
    let Some(mut fed) = GroupFederation::start(5, &[]).await else {
        return;
    };
    let hosts: Vec<u8> = MEMBERS.iter().map(|m| m.2).collect();
    let leader = fed.leader(&hosts, None).await;
    let (_, leader_id, leader_host) = MEMBERS[usize::try_from(leader - 1).expect("small")];
    let load = JobLoad::start(&fed.router_url, 4);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // (1) kill -9 the leader and delete its data directory.
    fed.net.kill(leader_id);
    let killed = Instant::now();
    let _ = std::fs::remove_dir_all(fed.net.data(leader_id));
    let living: Vec<u8> = hosts
        .iter()
        .copied()
        .filter(|h| *h != leader_host)
        .collect();
    let new_leader = fed.leader(&living, Some(leader)).await;
    let elected = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // (3) a new, empty coordinator joins in the dead one's place and catches up by snapshot.
    let via = fed.member_url(living[0]);
    // The leader has dropped the start of its log behind a snapshot: a new member cannot be
    // sent the log from the beginning, it must take the snapshot.
    let leader_host_now = MEMBERS[usize::try_from(new_leader - 1).expect("small")].2;
    let purged = fed
        .status(leader_host_now)
        .await
        .and_then(|s| s["purged"].as_u64());
    let joining = Instant::now();
    fed.net.start_coordinator_with(
        "coord-d",
        14,
        &group_flags(
            4,
            &["--group-join", &via, "--group-replace", &leader.to_string()],
        ),
    );
    let (snapshot, _) = wait_for("coord-d caught up", Duration::from_secs(60), async || {
        let s = fed.status(14).await;
        let lead = fed.status(leader_host_now).await;
        let (s, lead) = (s?, lead?);
        let voters = s["voters"].as_array()?;
        (voters.len() == 3
            && voters.iter().any(|v| v == 4)
            && s["last_applied"].as_u64()? + 200 >= lead["last_applied"].as_u64()?)
        .then(|| s["snapshot"].as_u64())
    })
    .await;
    let caught_up = joining.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A follower dies too: two of the three voters remain, a majority; jobs keep flowing and
    // the leader moves the follower's jobs.
    let (_, follower_id, _) = *MEMBERS
        .iter()
        .find(|m| m.2 != leader_host && m.2 != leader_host_now)
        .expect("a follower");
    fed.net.kill(follower_id);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let history = load.stop().await;
    let flowing = history
        .iter()
        .filter_map(|(_, h)| match h {
            Heard::Acked(_, at) if *at > killed => Some(at.duration_since(killed)),
            _ => None,
        })
        .min()
        .expect("jobs were acknowledged after the kill");
    let hosts_now = vec![leader_host_now, 14];
    let mut lines = vec![
        format!(
            "leader {leader_id} (member {leader}) killed with kill -9 and its data directory deleted, under 4 loops of echo jobs (200 ms each)"
        ),
        format!(
            "new leader: member {new_leader}, agreed by both survivors {:.2} s after the kill; jobs acknowledged again {:.2} s after the kill (failover)",
            elected.as_secs_f64(),
            flowing.as_secs_f64()
        ),
        format!(
            "coord-d joined empty in its place and caught up in {:.2} s: the leader had purged its log up to index {} (so coord-d installed a snapshot); the group is three voters again",
            caught_up.as_secs_f64(),
            purged.map_or("none".into(), |s| s.to_string())
        ),
        format!(
            "then follower {follower_id} was killed too: two voters of three went on acknowledging and running jobs for 6 s"
        ),
    ];
    lines.extend(check_history(&fed, &history, &hosts_now).await);
    assert!(
        flowing < Duration::from_secs(10),
        "jobs flowing again took {flowing:?}"
    );
    report("6 a replicated group loses its leader", &lines);
    assert!(
        purged.is_some() && snapshot.is_some(),
        "coord-d caught up by snapshot (leader purged to {purged:?}, coord-d's snapshot {snapshot:?})"
    );
    drop(fed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_acknowledging_and_services_follow_the_load() {
    let Some(fed) = GroupFederation::start(6, &["--services", "echo"]).await else {
        return;
    };
    let hosts: Vec<u8> = MEMBERS.iter().map(|m| m.2).collect();
    let leader = fed.leader(&hosts, None).await;
    let (_, leader_id, leader_host) = MEMBERS[usize::try_from(leader - 1).expect("small")];
    let others: Vec<u8> = hosts
        .iter()
        .copied()
        .filter(|h| *h != leader_host)
        .collect();
    let load = JobLoad::start(&fed.router_url, 4);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // (2) the leader loses the other two (and they it) for 20 s; the router, the workers and
    // this test still reach everyone.
    let ns = |h: u8| format!("{}-h{h}", fed.net.prefix);
    let cut = |add: bool| {
        for o in &others {
            let verb = if add { "add" } else { "del" };
            let _ = ip(&[
                "-n",
                &ns(leader_host),
                "route",
                verb,
                "blackhole",
                &fed.net.addr(*o),
            ]);
            let _ = ip(&[
                "-n",
                &ns(*o),
                "route",
                verb,
                "blackhole",
                &fed.net.addr(leader_host),
            ]);
        }
    };
    cut(true);
    let parted = Instant::now();
    // The minority's leader acknowledges nothing: a job sent to it straight is refused.
    let old = Client::with_timeout(&fed.member_url(leader_host), Duration::from_secs(30))
        .expect("client")
        .with_bearer(fed.net.client_key());
    let direct = old
        .submit_job(
            "echo",
            "",
            "text/plain",
            Bytes::from_static(b"to the minority"),
        )
        .await;
    let refused_after = parted.elapsed();
    let refused = direct
        .as_ref()
        .err()
        .and_then(|e| e.status())
        .map(|s| s.as_u16());
    assert_eq!(
        refused,
        Some(503),
        "the minority must not acknowledge: {direct:?}"
    );
    let majority_leader = fed.leader(&others, Some(leader)).await;
    assert_ne!(majority_leader, leader);
    let remaining = Duration::from_secs(20).saturating_sub(parted.elapsed());
    tokio::time::sleep(remaining).await;
    cut(false);
    let healed = Instant::now();
    let rejoined = fed.leader(&hosts, None).await;
    let rejoin = healed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = load.stop().await;
    let mut lines = vec![
        format!(
            "leader {leader_id} cut off from both other members for 20 s (blackhole routes), the router and workers still reaching all three"
        ),
        format!(
            "a job sent straight to the cut-off leader: 503 after {:.1} s — the minority acknowledges nothing; the majority elected member {majority_leader}",
            refused_after.as_secs_f64()
        ),
        format!(
            "after healing, all three follow member {rejoined} within {:.2} s",
            rejoin.as_secs_f64()
        ),
    ];
    lines.extend(check_history(&fed, &history, &hosts).await);
    // (4) the load shifts from echo to letters: the workers, started on echo only, take up OCR.
    let page = rma_fixtures::render_page("Final notice\nAmount due 310.20", 36.0).expect("render");
    let png = Bytes::from(rma_fixtures::png(&page));
    let shifted = Instant::now();
    let mut ocr_jobs = Vec::new();
    for _ in 0..6 {
        ocr_jobs.push(
            fed.router
                .submit_job("ocr", "", "image/png", png.clone())
                .await
                .expect("ocr job accepted")
                .job_id,
        );
    }
    wait_for(
        "a worker placed on ocr",
        Duration::from_secs(30),
        async || {
            let t = topology(&fed.router).await?;
            t["workers"]
                .as_array()?
                .iter()
                .any(|w| {
                    w["placed"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|s| s == "ocr"))
                })
                .then_some(())
        },
    )
    .await;
    let placed = shifted.elapsed();
    wait_for("every letter read", Duration::from_secs(120), async || {
        for id in &ocr_jobs {
            if fed.router.job(id).await.ok()?.state != JobState::Done {
                return None;
            }
        }
        Some(())
    })
    .await;
    let read = shifted.elapsed();
    lines.push(format!(
        "load shifted to OCR ({} letters) with every worker started on echo only: the router showed a worker placed on ocr {:.2} s after the first letter was sent; all read {:.2} s after it",
        ocr_jobs.len(),
        placed.as_secs_f64(),
        read.as_secs_f64()
    ));
    assert!(
        placed < Duration::from_secs(30),
        "services moved within 30 s"
    );
    report("7 a partitioned leader, then a shift of load", &lines);
    drop(fed);
}
