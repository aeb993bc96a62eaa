//! Echo load: 1 KB bodies through router → coordinator → worker, and straight to the
//! coordinator, at several concurrency levels. Prints throughput and p50/p99 latency as a
//! Markdown table. The federation runs in this process on loopback (router, one coordinator,
//! two workers), so the load generator shares the machine's cores with it, as it would on a
//! volunteer's box.
//!
//! `cargo bench -p rma-testkit --bench echo -- [--seconds N] [--levels 1,8,32] [--compare NAME=URL]
//! [--only TEXT]` (`--only`: just the rows whose name contains TEXT, for profiling one path)
//!
//! `BENCH_CURRENT_THREAD=1` runs everything on one thread; `BENCH_ROLE_THREADS=1` gives the
//! router, the coordinator and each worker a single-threaded runtime and thread of their own
//! (as separate single-threaded processes would run), the load generator keeping this one.
//!
//! `--compare` adds rows for another server answering `POST {URL}api/service/echo` with the body
//! (bench/nginx.sh passes an nginx two-hop proxy chain in front of an nginx echo), measured by the
//! same client in the same run.

use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use rma_client::Client;
use rma_http::trace::ServerTiming;
use rma_testkit::Cluster;

struct Args {
    seconds: u64,
    levels: Vec<usize>,
    workers: usize,
    compare: Vec<(String, String)>,
    /// Only rows whose name contains this (`--only`), for profiling one path.
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 5,
        levels: vec![1, 8, 32, 128],
        workers: 2,
        compare: Vec::new(),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.seconds),
            "--workers" => a.workers = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.workers),
            "--compare" => {
                if let Some((name, url)) = it.next().as_deref().and_then(|v| v.split_once('=')) {
                    a.compare.push((name.to_owned(), url.to_owned()));
                }
            }
            "--only" => a.only = it.next(),
            "--levels" => {
                if let Some(v) = it.next() {
                    a.levels = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                }
            }
            _ => {} // cargo bench passes --bench; ignore what we do not know
        }
    }
    a
}

struct Outcome {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Each hop's `Server-Timing` entry (ms), one sample per request that had it.
    timing: std::collections::BTreeMap<String, Vec<f64>>,
}

async fn run(client: &Client, concurrency: usize, seconds: u64) -> Outcome {
    let body = Bytes::from(vec![b'x'; 1024]);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut timing: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match client
                    .call_service("echo", "", "application/octet-stream", body.clone())
                    .await
                {
                    Ok(r) if r.status == 200 && r.body.len() == 1024 => {
                        lat.push(t.elapsed());
                        let st = r.header("server-timing").map(ServerTiming::parse);
                        for (name, ms) in st.map(|s| s.0).unwrap_or_default() {
                            timing.entry(name).or_default().push(ms);
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors, timing)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut timing: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for t in tasks {
        if let Ok((l, e, st)) = t.await {
            latencies.extend(l);
            errors += e;
            for (name, v) in st {
                timing.entry(name).or_default().extend(v);
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Outcome {
        requests: latencies.len(),
        errors,
        elapsed,
        latencies,
        timing,
    }
}

/// CPU time this process has used (all threads, user + system), from `/proc/self/stat`; `None`
/// off Linux. The federation and the load generator run in this process, so its CPU time per
/// request is what a request costs, steadier than throughput on a shared machine.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let args = parse_args();
    let rt = if std::env::var("BENCH_CURRENT_THREAD").is_ok() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Runtime::new().expect("runtime")
    };
    rt.block_on(async {
        let cluster = if std::env::var("BENCH_ROLE_THREADS").is_ok() {
            Cluster::start_on_threads(1, args.workers).await
        } else {
            Cluster::start(1, args.workers).await
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let via_router =
            Client::with_http(&cluster.router_url, http.clone()).expect("router client");
        // A coordinator runs services for members of its federation: a client key.
        let direct = Client::with_http(
            &cluster.coordinators[0].as_ref().expect("coordinator").url(),
            http.clone(),
        )
        .expect("coordinator client")
        .with_bearer(rma_testkit::client_key());
        let others: Vec<(String, Client)> = args
            .compare
            .iter()
            .map(|(name, url)| {
                let c = Client::with_http(url, http.clone()).expect("comparison client");
                (name.clone(), c)
            })
            .collect();
        for (_, c) in &others {
            let _ = run(c, 8, 1).await;
        }
        // Warm up connections and the JIT-free paths alike.
        let _ = run(&via_router, 8, 1).await;
        println!(
            "echo, 1 KB bodies, {} workers, {} s per row, {} cores",
            args.workers,
            args.seconds,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!();
        println!(
            "| path | concurrency | requests | errors | req/s | p50 ms | p99 ms | CPU µs/req (this process) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let mut breakdown = Vec::new();
        for &c in &args.levels {
            let mut rows: Vec<(&str, &Client)> = vec![
                ("router → coordinator → worker", &via_router),
                ("coordinator → worker", &direct),
            ];
            rows.extend(others.iter().map(|(n, c)| (n.as_str(), c)));
            for (name, client) in rows {
                if args.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                    continue;
                }
                let cpu_before = cpu_time();
                let o = run(client, c, args.seconds).await;
                let cpu = match (cpu_before, cpu_time()) {
                    (Some(a), Some(b)) if o.requests > 0 => {
                        format!("{:.0}", (b - a).as_secs_f64() * 1e6 / o.requests as f64)
                    }
                    _ => "–".to_owned(),
                };
                println!(
                    "| {name} | {c} | {} | {} | {:.0} | {:.2} | {:.2} | {cpu} |",
                    o.requests,
                    o.errors,
                    o.requests as f64 / o.elapsed.as_secs_f64(),
                    pct(&o.latencies, 0.50),
                    pct(&o.latencies, 0.99)
                );
                if !o.timing.is_empty() {
                    breakdown.push((format!("{name} at {c}"), pct(&o.latencies, 0.5), o.timing));
                }
            }
        }
        // Where the time goes: each hop's own time from Server-Timing (medians); what is left
        // of the client's p50 is sockets, the client and the scheduler.
        println!();
        println!("Where the time goes (median ms per Server-Timing entry; rest = client p50 − their sum):");
        println!();
        for (row, p50, mut timing) in breakdown {
            let mut parts = Vec::new();
            let mut sum = 0.0;
            for (name, v) in timing.iter_mut() {
                v.sort_by(f64::total_cmp);
                let m = v[v.len() / 2];
                sum += m;
                parts.push(format!("{name} {m:.3}"));
            }
            println!("- {row}: {}, rest {:.3} (p50 {p50:.3})", parts.join(", "), p50 - sum);
        }
    });
}
