//! What an operator sees, against a live federation: metrics before the first scrape and every
//! series the shipped dashboard plots, traces kept from router to worker (exported to an OTLP
//! collector stand-in), `Server-Timing` per hop, and load-aware choice of workers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::StreamExt;
use rma_testkit::{Cluster, eventually};
use serde_json::Value;

/// Spans an OTLP collector stand-in received: (trace id, span id, parent span id, name).
type Received = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A collector stand-in for the whole test process (the exporter is process-wide): an HTTP
/// server on its own thread taking OTLP/HTTP JSON at `/v1/traces` and keeping every span.
fn collector() -> &'static Received {
    static RECEIVED: OnceLock<Received> = OnceLock::new();
    RECEIVED.get_or_init(|| {
        let received: Received = Arc::default();
        let keep = received.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: Bytes| {
                        let keep = keep.clone();
                        async move {
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let mut spans = keep.lock().expect("lock");
                            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                                    for s in ss["spans"].as_array().into_iter().flatten() {
                                        let f = |k: &str| s[k].as_str().unwrap_or("").to_owned();
                                        spans.push((
                                            f("traceId"),
                                            f("spanId"),
                                            f("parentSpanId"),
                                            f("name"),
                                        ));
                                    }
                                }
                            }
                            "{}"
                        }
                    }),
                );
                let _ = axum::serve(listener, app).await;
            });
        });
        rma_http::otlp::start(&url, "rma-test").expect("exporter starts");
        received
    })
}

fn spans_of(trace: &str) -> Vec<(String, String, String, String)> {
    collector()
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.0 == trace)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_is_kept_from_router_to_worker_and_every_process_step() {
    collector();
    let c = Cluster::start(1, 2).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let tp = format!("00-{trace}-{client_span}-01");
    let r = c
        .client()
        .raw(
            reqwest::Method::POST,
            "api/service/echo",
            Some("text/plain"),
            Bytes::from_static(b"traced"),
            &[("traceparent", tp.as_str())],
        )
        .await
        .expect("echo");
    assert_eq!(r.status, 200);
    // The answer names the router's span in the same trace, and where the time went.
    let tr = r.header("traceresponse").expect("traceresponse").to_owned();
    assert!(tr.starts_with(&format!("00-{trace}-")), "{tr}");
    let router_span = tr.split('-').nth(2).expect("span").to_owned();
    let timing = r.header("server-timing").expect("server-timing").to_owned();
    for hop in [
        "router;dur=",
        "coordinator;dur=",
        "link;dur=",
        "worker;dur=",
    ] {
        assert!(timing.contains(hop), "{hop} in {timing}");
    }
    // The collector gets one span per hop, each the child of the one before.
    let spans = eventually("router, coordinator and worker spans exported", || async {
        let s = spans_of(trace);
        (s.len() >= 3).then_some(s)
    })
    .await;
    let by_name: BTreeMap<&str, &(String, String, String, String)> =
        spans.iter().map(|s| (s.3.as_str(), s)).collect();
    let (router, coord, worker) = (by_name["router"], by_name["coordinator"], by_name["worker"]);
    assert_eq!(
        router.2, client_span,
        "the router's parent is the client's span"
    );
    assert_eq!(router.1, router_span);
    assert_eq!(
        coord.2, router.1,
        "the coordinator's parent is the router's span"
    );
    assert_eq!(
        worker.2, coord.1,
        "the worker's parent is the coordinator's span"
    );

    // Without a traceparent the router starts a trace; `process` steps all hang under the
    // coordinator's span.
    let doc = rma_fixtures::pdf_with_text(&[
        "Council Tax reminder. Amount now due: £187.45. Pay by 14 March 2026.",
    ]);
    let r = c
        .client()
        .call_service("process", "", "application/pdf", doc.into())
        .await
        .expect("process");
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let tr = r.header("traceresponse").expect("a trace was started");
    let trace2 = tr.split('-').nth(1).expect("trace").to_owned();
    assert_ne!(trace2, trace);
    let spans = eventually("process spans exported", || async {
        let s = spans_of(&trace2);
        (s.iter().filter(|s| s.3 == "worker").count() >= 2).then_some(s)
    })
    .await;
    let coord = spans
        .iter()
        .find(|s| s.3 == "coordinator")
        .expect("coordinator span");
    for w in spans.iter().filter(|s| s.3 == "worker") {
        assert_eq!(
            w.2, coord.1,
            "every step is the coordinator span's child: {spans:?}"
        );
    }

    // An async job keeps its trace: its run, later, hangs under the span that accepted it.
    let trace3 = "0af7651916cd43dd8448eb211c80319c";
    let tp3 = format!("00-{trace3}-b7ad6b7169203331-01");
    let r = c
        .client()
        .raw(
            reqwest::Method::POST,
            "api/service/echo",
            Some("text/plain"),
            Bytes::from_static(b"later"),
            &[("traceparent", tp3.as_str()), ("prefer", "respond-async")],
        )
        .await
        .expect("job");
    assert_eq!(r.status, 202);
    let spans = eventually("the job's worker span exported", || async {
        let s = spans_of(trace3);
        s.iter().any(|s| s.3 == "worker").then_some(s)
    })
    .await;
    let coord = spans
        .iter()
        .find(|s| s.3 == "coordinator")
        .expect("coordinator span");
    let worker = spans.iter().find(|s| s.3 == "worker").expect("worker span");
    assert_eq!(worker.2, coord.1, "{spans:?}");
}

/// `name` appears as a series in Prometheus `text`.
fn has_series(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_there_before_the_first_scrape_and_the_dashboard_names_only_real_series() {
    let mut c = Cluster::start(1, 1).await;
    let i = c
        .add_worker_with("worker-metrics", |w| {
            w.metrics_listen = Some(([127, 0, 0, 1], 0).into());
            w.metrics_token = Some("worker-metrics-token".into());
        })
        .await;
    c.wait_linked().await;
    // Traffic first: a call, an async job, heartbeats.
    let r = c
        .client()
        .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
        .await
        .expect("echo");
    assert_eq!(r.status, 200);
    let r = c
        .client()
        .raw(
            reqwest::Method::POST,
            "api/service/echo",
            Some("text/plain"),
            Bytes::from_static(b"job"),
            &[("prefer", "respond-async")],
        )
        .await
        .expect("job");
    assert_eq!(r.status, 202);
    let worker_url = c.workers[i]
        .as_ref()
        .and_then(|w| w.metrics_url())
        .expect("worker serves metrics")
        .to_owned();
    let http = reqwest::Client::new();
    let scrape = |url: String, token: &'static str| {
        let http = http.clone();
        async move {
            let r = http.get(url).bearer_auth(token).send().await.ok()?;
            (r.status() == 200).then_some(())?;
            r.text().await.ok()
        }
    };
    let router_url = format!("{}/metrics", c.router_url);
    let coord_url = format!(
        "{}/metrics",
        c.coordinators[0].as_ref().expect("coordinator").url()
    );
    let worker_metrics = format!("{worker_url}/metrics");
    // Heartbeats and the job land within moments; the first scrape that has them has all.
    let text = eventually("a scrape with heartbeats and the job", || {
        let (a, b, w) = (
            router_url.clone(),
            coord_url.clone(),
            worker_metrics.clone(),
        );
        async move {
            let mut text = scrape(a, rma_testkit::ADMIN_TOKEN).await?;
            text.push_str(&scrape(b, rma_testkit::METRICS_TOKEN).await?);
            text.push_str(&scrape(w, "worker-metrics-token").await?);
            (has_series(&text, "rma_coordinator_worker_heartbeats_failed")
                && has_series(
                    &text,
                    "rma_coordinator_job_schedule_to_start_seconds_bucket",
                )
                && has_series(&text, "rma_worker_heartbeats_total"))
            .then_some(text)
        }
    })
    .await;
    assert!(text.contains("# TYPE rma_router_service_request_seconds histogram"));
    assert!(text.contains("rma_router_service_requests_total{service=\"echo\",status=\"200\"}"));
    assert!(text.contains("rma_coordinator_workers{state=\"active\"}"));
    assert!(text.contains("worker=\"worker-metrics\""), "a worker label");

    // Every series the dashboard plots exists.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/rma-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut used = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            used.extend(metric_names(t["expr"].as_str().expect("expr")));
        }
    }
    assert!(used.len() >= 12, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !has_series(&text, n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard plots series nobody exports: {missing:?}"
    );

    // Every family exported is documented.
    let doc = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md");
    let families: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("rma_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_owned()
        })
        .filter(|n| !n.starts_with("rma_test_"))
        .collect();
    let undocumented: Vec<&String> = families
        .iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );

    // The worker's own endpoint wants its token.
    let r = http.get(&worker_metrics).send().await.expect("answer");
    assert_eq!(r.status(), 401);
}

/// The `rma_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("rma_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_p2c_a_five_times_slower_worker_gets_fewer_requests_but_some() {
    let mut c = Cluster::start_with_balance(1, 0, rma_http::balance::Balance::P2c).await;
    for id in ["fast-a", "fast-b"] {
        c.add_worker(id).await;
    }
    c.add_worker_with("slow", |w| w.slowdown = 5.0).await;
    c.wait_linked().await;
    let client = c.client();
    let served: Vec<String> = futures_util::stream::iter(0..150)
        .map(|_| {
            let client = client.clone();
            async move {
                let r = client
                    .call_service(
                        "echo",
                        "delay_ms=20",
                        "text/plain",
                        Bytes::from_static(b"x"),
                    )
                    .await
                    .expect("echo");
                assert_eq!(r.status, 200);
                r.header("x-rma-worker").unwrap_or("").to_owned()
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for w in &served {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    let slow = counts.get("slow").copied().unwrap_or(0);
    let fast = counts
        .get("fast-a")
        .copied()
        .unwrap_or(0)
        .min(counts.get("fast-b").copied().unwrap_or(0));
    assert!(slow >= 1, "the slow worker is not starved: {counts:?}");
    assert!(
        slow * 2 < fast,
        "the slow worker gets well under half a fast one's share: {counts:?}"
    );
    // What the coordinator learnt shows per worker in its metrics.
    let text = reqwest::Client::new()
        .get(format!(
            "{}/metrics",
            c.coordinators[0].as_ref().expect("coordinator").url()
        ))
        .bearer_auth(rma_testkit::METRICS_TOKEN)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            "rma_coordinator_worker_service_seconds_bucket{worker=\"slow\",service=\"echo\""
        ),
        "per-worker execution time"
    );
}
