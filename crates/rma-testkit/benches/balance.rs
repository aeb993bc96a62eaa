//! Load-aware choice against round-robin on a heterogeneous fleet, in one run.
//!
//! The fleet (one process, loopback): a router; coordinator A with two workers and a third made
//! 5× slower (`slowdown`); coordinator B behind a proxy that adds latency to every chunk it
//! passes (a coordinator on a slow home uplink), with two workers. A closed loop of clients sends
//! a mixed load through the router: echo with a 20 ms service time and real OCR of a letter
//! page. For each policy (set on router and coordinators alike) the federation is started
//! afresh, warmed, and measured for the same time. Prints p50/p99 per service, throughput, and
//! each worker's share of the calls.
//!
//! `cargo bench -p rma-testkit --bench balance -- [--seconds N] [--clients N] [--ocr-share F]
//!  [--delay-ms N]`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rma_client::Client;
use rma_http::balance::Balance;
use rma_proto::Capabilities;
use rma_testkit::{coordinator_config, listener, router_config, worker_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    seconds: u64,
    clients: usize,
    ocr_share: f64,
    delay_ms: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 20,
        clients: 8,
        ocr_share: 0.2,
        delay_ms: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut next = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => a.seconds = next().parse().unwrap_or(a.seconds),
            "--clients" => a.clients = next().parse().unwrap_or(a.clients),
            "--ocr-share" => a.ocr_share = next().parse().unwrap_or(a.ocr_share),
            "--delay-ms" => a.delay_ms = next().parse().unwrap_or(a.delay_ms),
            _ => {}
        }
    }
    a
}

/// A TCP proxy to `upstream` that holds every chunk `delay` before passing it on, both ways.
async fn slow_proxy(upstream: std::net::SocketAddr, delay: Duration) -> String {
    let l = listener().await;
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((inbound, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::join!(pipe(ri, wo, delay), pipe(ro, wi, delay));
            });
        }
    });
    url
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tokio::time::sleep(delay).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The fleet under one policy; dropped at the end of the run.
struct Fleet {
    _dir: tempfile::TempDir,
    _router: rma_router::RouterHandle,
    _coordinators: Vec<rma_coordinator::CoordinatorHandle>,
    _workers: Vec<rma_worker::WorkerHandle>,
    router_url: String,
}

async fn fleet(policy: Balance, delay_ms: u64) -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = router_config(dir.path().join("router.db"));
    rc.balance = policy;
    let router = rma_router::spawn(rc, listener().await).expect("router");
    let router_url = router.url();
    let mut coordinators = Vec::new();
    let mut urls = Vec::new();
    for (id, slow_uplink) in [("coord-a", false), ("coord-b", true)] {
        let l = listener().await;
        let addr = l.local_addr().expect("addr");
        let mut cc = coordinator_config(id, Some(router_url.clone()));
        cc.balance = policy;
        if slow_uplink {
            cc.public_url = Some(slow_proxy(addr, Duration::from_millis(delay_ms / 4)).await);
        }
        let public = cc.public_url.clone();
        let h = rma_coordinator::spawn(cc, l).expect("coordinator");
        urls.push(public.unwrap_or_else(|| h.url()));
        coordinators.push(h);
    }
    let mut workers = Vec::new();
    // Each worker registers at its own coordinator (B's through the slow proxy).
    for (id, slowdown, at) in [
        ("a-fast-1", 1.0, 0),
        ("a-fast-2", 1.0, 0),
        ("a-slow", 5.0, 0),
        ("b-fast-1", 1.0, 1),
        ("b-fast-2", 1.0, 1),
    ] {
        let mut w = worker_config(&urls[at], id, dir.path().join(id));
        w.slowdown = slowdown;
        w.capabilities = Some(Capabilities {
            cpu_cores: 1,
            memory_bytes: 1 << 30,
            hostname: Some(id.to_owned()),
            ..Default::default()
        });
        let h = rma_worker::spawn(w).expect("worker");
        rma_testkit::wait_linked_worker(&h).await;
        workers.push(h);
    }
    let client = Client::new(&router_url).expect("client");
    rma_testkit::eventually("every worker active at the router", || {
        let client = client.clone();
        async move {
            let t = client.topology().await.ok()?;
            (t.workers.len() == 5
                && t.coordinators
                    .iter()
                    .all(|c| c.status == rma_proto::api::CoordinatorStatus::Healthy))
            .then_some(())
        }
    })
    .await;
    Fleet {
        _dir: dir,
        _router: router,
        _coordinators: coordinators,
        _workers: workers,
        router_url,
    }
}

#[derive(Default)]
struct Tally {
    echo: Vec<Duration>,
    ocr: Vec<Duration>,
    errors: usize,
    failed: Vec<Duration>,
    by_worker: BTreeMap<String, (u32, u32)>,
}

async fn load(
    url: &str,
    clients: usize,
    seconds: u64,
    ocr_share: f64,
    delay_ms: u64,
    page: Bytes,
) -> (Tally, Duration) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http");
    let client = Client::with_http(url, http).expect("client");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, tally, page) = (client.clone(), tally.clone(), page.clone());
        let query = format!("delay_ms={delay_ms}");
        tasks.push(tokio::spawn(async move {
            let mut n = c as u64;
            while Instant::now() < deadline {
                n += 1;
                // A fixed interleaving per client: ocr_share of each client's calls are OCR.
                let ocr =
                    ((n as f64 * ocr_share).floor() - ((n - 1) as f64 * ocr_share).floor()) >= 1.0;
                let t = Instant::now();
                let r = if ocr {
                    client
                        .call_service("ocr", "", "image/png", page.clone())
                        .await
                } else {
                    client
                        .call_service("echo", &query, "text/plain", Bytes::from_static(b"x"))
                        .await
                };
                let took = t.elapsed();
                let mut s = tally.lock().expect("lock");
                match r {
                    Ok(r) if r.status == 200 => {
                        if ocr {
                            s.ocr.push(took);
                        } else {
                            s.echo.push(took);
                        }
                        let w = r.header("x-rma-worker").unwrap_or("?").to_owned();
                        let e = s.by_worker.entry(w).or_default();
                        if ocr {
                            e.1 += 1;
                        } else {
                            e.0 += 1;
                        }
                    }
                    // A failed call is counted with the time it took (a timeout's full wait),
                    // so a policy cannot look fast by failing.
                    _ => {
                        s.errors += 1;
                        s.failed.push(took);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let t = std::mem::take(&mut *tally.lock().expect("lock"));
    (t, elapsed)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let a = parse_args();
    let page = {
        let img = rma_fixtures::render_page(rma_fixtures::letters::COUNCIL_TAX.text, 34.0)
            .expect("render");
        Bytes::from(rma_fixtures::png(&img))
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "balance: {} s per policy, {} clients, {:.0} % OCR, echo {} ms, coordinator B +{} ms per chunk each way, a-slow 5× slower; {} cores",
        a.seconds,
        a.clients,
        a.ocr_share * 100.0,
        a.delay_ms,
        a.delay_ms / 4,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| policy | calls | errors | calls/s | echo p50 ms | echo p99 ms | ocr p50 ms | ocr p99 ms | all p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut shares = Vec::new();
    for policy in [Balance::RoundRobin, Balance::Weighted, Balance::P2c] {
        let (mut t, elapsed) = rt.block_on(async {
            let f = fleet(policy, a.delay_ms).await;
            // Warm: engines loaded, estimates learnt.
            let _ = load(
                &f.router_url,
                a.clients,
                3,
                a.ocr_share,
                a.delay_ms,
                page.clone(),
            )
            .await;
            load(
                &f.router_url,
                a.clients,
                a.seconds,
                a.ocr_share,
                a.delay_ms,
                page.clone(),
            )
            .await
        });
        let calls = t.echo.len() + t.ocr.len();
        let mut all: Vec<Duration> = t
            .echo
            .iter()
            .chain(t.ocr.iter())
            .chain(t.failed.iter())
            .copied()
            .collect();
        println!(
            "| {policy} | {calls} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
            t.errors,
            calls as f64 / elapsed.as_secs_f64(),
            pct(&mut t.echo, 0.5),
            pct(&mut t.echo, 0.99),
            pct(&mut t.ocr, 0.5),
            pct(&mut t.ocr, 0.99),
            pct(&mut all, 0.99),
        );
        shares.push((policy, t.by_worker));
    }
    println!();
    println!("Calls each worker served (echo / ocr):");
    println!();
    println!("| policy | a-fast-1 | a-fast-2 | a-slow (5×) | b-fast-1 | b-fast-2 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (policy, by) in shares {
        let cell = |w: &str| {
            let (e, o) = by.get(w).copied().unwrap_or_default();
            format!("{e} / {o}")
        };
        println!(
            "| {policy} | {} | {} | {} | {} | {} |",
            cell("a-fast-1"),
            cell("a-fast-2"),
            cell("a-slow"),
            cell("b-fast-1"),
            cell("b-fast-2")
        );
    }
}
