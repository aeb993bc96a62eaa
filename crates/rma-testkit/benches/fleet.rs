//! How far one coordinator and one router scale.
//!
//! Part 1: one coordinator in a child process, N real workers (`rma_worker`, echo only, real
//! link protocol over real loopback sockets) in this process. Reports the coordinator's memory
//! per linked worker (RSS growth ÷ N), the CPU it spends idle on pings and heartbeats (per
//! 1,000 workers, % of one core), and what an echo costs at the coordinator as N grows (p50
//! through it, mean routing time from its `rma_coordinator_routing_seconds`).
//!
//! Part 2: one router in a child process, M coordinators simulated in this process (each
//! registers with its own credential and heartbeats; one HTTP server answers for all of them,
//! under a path per coordinator). Reports the router's memory per coordinator, its idle CPU
//! (pings every 2 s, heartbeats every 10 s), and the echo p50 and selection time through it.
//!
//! `cargo bench -p rma-testkit --bench fleet -- [--workers 1000,10000] [--coordinators 100,1000]
//!  [--idle-seconds 20]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rma_auth::{FederationKey, Role};
use rma_client::Client;
use rma_proto::Capabilities;
use rma_proto::api::{CoordinatorHeartbeat, CoordinatorRegister};
use tokio::io::AsyncBufReadExt;

const ROLE: &str = "RMA_FLEET_ROLE";
const DIR: &str = "RMA_FLEET_DIR";
const TOKEN: &str = "fleet-metrics";

struct Args {
    workers: Vec<usize>,
    coordinators: Vec<usize>,
    idle: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        workers: vec![1_000, 10_000],
        coordinators: vec![100, 1_000],
        idle: 20,
    };
    let list = |v: String| v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--workers" => a.workers = list(it.next().unwrap_or_default()),
            "--coordinators" => a.coordinators = list(it.next().unwrap_or_default()),
            "--idle-seconds" => a.idle = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.idle),
            _ => {}
        }
    }
    a
}

fn federation(dir: &std::path::Path) -> FederationKey {
    FederationKey::load_or_create(&dir.join("federation.key"))
        .expect("federation key")
        .0
}

/// The child: a coordinator or a router on loopback; prints its URL, runs until stdin closes.
fn child(role: &str) {
    let dir = std::path::PathBuf::from(std::env::var(DIR).expect("dir"));
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let fed = federation(&dir);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let _handle: Box<dyn std::any::Any> = if role == "coordinator" {
            let id = Arc::new(
                fed.identity("coord-fleet", Role::Coordinator, None)
                    .expect("identity"),
            );
            let mut c = rma_coordinator::CoordinatorConfig::new(id);
            c.metrics_token = Some(TOKEN.into());
            c.spot_check_share = 0.0;
            // The routing-time sample is 2,000 calls of one client key as fast as they go.
            c.client_rate_limit = 0;
            // An experiment's knob: the coordinator's configured ping interval.
            if let Some(s) = std::env::var("RMA_FLEET_PING_S")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                c.link_ping_interval = Duration::from_secs_f64(s);
            }
            let h = rma_coordinator::spawn(c, l).expect("coordinator");
            println!("{}", h.url());
            Box::new(h)
        } else {
            let mut c = rma_router::RouterConfig::new(dir.join("router.db"));
            c.admin_token = Some(TOKEN.into());
            c.federation_key = Some(fed.clone());
            c.ip_rate_limit = 0;
            c.ip_upload_mb_per_hour = 0;
            c.url_policy.allow_http = true;
            c.url_policy.allow_private = true;
            let h = rma_router::spawn(c, l).expect("router");
            println!("{}", h.url());
            Box::new(h)
        };
        // Until the parent closes our stdin.
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    });
}

struct Child {
    proc: tokio::process::Child,
    pid: u32,
    url: String,
}

async fn start_child(role: &str, dir: &std::path::Path) -> Child {
    let exe = std::env::current_exe().expect("exe");
    let mut proc = tokio::process::Command::new(exe)
        .env(ROLE, role)
        .env(DIR, dir)
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("child");
    let pid = proc.id().expect("pid");
    let out = proc.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let url = lines
        .next_line()
        .await
        .ok()
        .flatten()
        .expect("child prints its URL");
    Child { proc, pid, url }
}

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds `pid` has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the state field here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Idle CPU of `pid` over `secs`, as % of one core.
async fn idle_cpu(pid: u32, secs: u64) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_seconds(pid) - before) / secs as f64 * 100.0
}

/// p50 of `n` echo calls through `client`, 8 at a time, in ms.
async fn echo_p50(client: &Client, n: usize) -> f64 {
    use futures_util::StreamExt;
    let mut lat: Vec<Duration> = futures_util::stream::iter(0..n)
        .map(|_| {
            let c = client.clone();
            async move {
                let t = Instant::now();
                let r = c
                    .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
                    .await;
                r.ok().filter(|r| r.status == 200).map(|_| t.elapsed())
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    lat.sort();
    lat.get(lat.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Mean of a histogram from Prometheus text, in µs.
async fn histogram_mean_us(url: &str, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok();
    let text = match text {
        Some(r) => r.text().await.unwrap_or_default(),
        None => String::new(),
    };
    let value = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{suffix} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (sum, count) = (value("_sum"), value("_count"));
    if count > 0.0 {
        sum / count * 1e6
    } else {
        f64::NAN
    }
}

async fn coordinator_row(n: usize, idle: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = federation(dir.path());
    let mut child = start_child("coordinator", dir.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = rss(child.pid);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("w{i}");
        let identity = Arc::new(fed.identity(&id, Role::Worker, None).expect("identity"));
        let mut w = rma_worker::WorkerConfig::new(&child.url, identity);
        w.capabilities = Some(Capabilities {
            cpu_cores: 1,
            memory_bytes: 1 << 30,
            hostname: Some(id.clone()),
            ..Default::default()
        });
        w.data_dir = dir.path().join("w");
        w.ocr_threads = 1;
        workers
            .push(rma_worker::spawn_with(w, rma_services::Registry::echo_only()).expect("worker"));
        if i % 500 == 499 {
            // Let the coordinator breathe: registrations arrive in waves, as after an outage.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Services are for members of the federation: a client key of this one.
    let key = fed
        .identity("fleet-client", Role::Client, None)
        .expect("identity")
        .bearer();
    let coord = Client::new(&child.url).expect("client").with_bearer(&key);
    let mut linked = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        linked = workers.iter().filter(|w| w.status().linked).count();
        if linked == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let join_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_worker = rss(child.pid).saturating_sub(base) as f64 / n as f64;
    let cpu = idle_cpu(child.pid, idle).await;
    let p50 = echo_p50(&coord, 2_000).await;
    let routing = histogram_mean_us(&child.url, "rma_coordinator_routing_seconds").await;
    println!(
        "| {n} | {linked} | {join_s:.1} | {:.1} | {:.2} | {:.2} | {p50:.2} | {routing:.1} |",
        per_worker / 1024.0,
        cpu,
        cpu / (n as f64 / 1000.0),
    );
    drop(workers);
    let _ = child.proc.kill().await;
}

async fn router_row(m: usize, idle: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = federation(dir.path());
    // One server answers for every simulated coordinator: /c{i}/health and /c{i}/api/service/echo.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = format!("http://{}", l.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route(
            "/{c}/health",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "healthy"})) }),
        )
        .route(
            "/{c}/api/service/echo",
            axum::routing::post(|body: Bytes| async move { body }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let mut child = start_child("router", dir.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = rss(child.pid);
    let mut members = Vec::with_capacity(m);
    for i in 0..m {
        let id = format!("coord-{i}");
        let identity = Arc::new(
            fed.identity(&id, Role::Coordinator, None)
                .expect("identity"),
        );
        let c = Client::new(&child.url)
            .expect("client")
            .with_identity(identity);
        let reg = CoordinatorRegister {
            coordinator_id: Some(id.clone()),
            url: Some(format!("{sim}/c{i}")),
            services: Some(vec!["echo".into()]),
            ..Default::default()
        };
        if let Err(e) = c.register_coordinator(&reg).await {
            eprintln!("coordinator {i} could not register: {e}");
        }
        members.push((id, c));
    }
    // Heartbeats every 10 s, spread over the interval, with an echo worker each.
    let beats = tokio::spawn({
        let members: Vec<(String, Client)> = members.clone();
        async move {
            let gap = Duration::from_secs(10) / members.len().max(1) as u32;
            loop {
                for (id, c) in &members {
                    let hb = CoordinatorHeartbeat {
                        coordinator_id: id.clone(),
                        services: [("echo".to_owned(), 1)].into(),
                        ..Default::default()
                    };
                    let _ = c.coordinator_heartbeat(&hb).await;
                    tokio::time::sleep(gap).await;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(12)).await;
    let per = rss(child.pid).saturating_sub(base) as f64 / m as f64;
    let cpu = idle_cpu(child.pid, idle).await;
    let router = Client::new(&child.url).expect("client");
    let p50 = echo_p50(&router, 2_000).await;
    let selection = histogram_mean_us(&child.url, "rma_router_selection_seconds").await;
    println!(
        "| {m} | {:.1} | {:.2} | {:.2} | {p50:.2} | {selection:.1} |",
        per / 1024.0,
        cpu,
        cpu / (m as f64 / 1000.0),
    );
    beats.abort();
    let _ = child.proc.kill().await;
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role);
    }
    let a = parse_args();
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            eprintln!("open files limit: {n}");
            n
        }
        Err(e) => {
            eprintln!("could not raise the open files limit: {e}");
            u64::MAX
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        println!(
            "fleet: one coordinator and one router, each in its own process; {} cores; idle window {} s",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            a.idle
        );
        println!();
        println!(
            "| workers | linked | seconds to link all | coordinator KB per worker | idle CPU % of a core | idle CPU % per 1,000 workers | echo p50 ms (8 at once) | routing µs (mean) |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &a.workers {
            // Each worker holds a socket here and one in the coordinator: past the limit the
            // run could only wait out its deadline.
            if n as u64 + 1_000 > files {
                println!("| {n} | skipped: the open-files limit here is {files} (bench/fleet.sh raises it where allowed) | | | | | | |");
                continue;
            }
            coordinator_row(n, a.idle).await;
        }
        println!();
        println!(
            "| coordinators | router KB per coordinator | idle CPU % of a core | idle CPU % per 1,000 coordinators | echo p50 ms (8 at once) | selection µs (mean) |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for &m in &a.coordinators {
            router_row(m, a.idle).await;
        }
    });
}
