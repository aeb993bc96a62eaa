//! The federation end to end: registration, routing, heartbeats, failure, restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rma_auth::Role;
use rma_client::Client;
use rma_proto::api::{WorkerHeartbeat, WorkerRegister, WorkerStatus};
use rma_testkit::{Cluster, eventually, eventually_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_end_to_end_names_coordinator_and_worker() {
    let c = Cluster::start(1, 2).await;
    let body = Bytes::from(vec![7u8; 1024]);
    let resp = c
        .client()
        .raw(
            reqwest::Method::POST,
            "api/service/echo",
            Some("application/x-test"),
            body.clone(),
            &[("x-request-id", "req-42")],
        )
        .await
        .expect("echo answers");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, body);
    assert_eq!(resp.header("content-type"), Some("application/x-test"));
    assert_eq!(resp.header("x-rma-coordinator"), Some("coord-0"));
    let worker = resp.header("x-rma-worker").expect("worker named");
    assert!(worker == "worker-0" || worker == "worker-1", "{worker}");
    assert_eq!(
        resp.header("x-request-id"),
        Some("req-42"),
        "the client's id is kept"
    );

    // Without a client id one is minted, and sub-paths and queries pass through.
    let resp = c
        .client()
        .call_service(
            "echo",
            "delay_ms=10",
            "text/plain",
            Bytes::from_static(b"hi"),
        )
        .await
        .expect("echo");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-request-id").map(str::len), Some(36));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_through_the_router_spreads_workers_and_both_coordinators_get_work() {
    let c = Cluster::start(2, 4).await;
    let topology = c.client().topology().await.expect("topology");
    assert_eq!(topology.coordinators.len(), 2);
    assert_eq!(topology.workers.len(), 4);
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for w in &topology.workers {
        *per.entry(w.coordinator.clone()).or_default() += 1;
        assert_eq!(w.status, WorkerStatus::Active);
        assert!(w.services.contains(&"echo".to_owned()));
    }
    assert_eq!(
        per.values().copied().collect::<Vec<_>>(),
        [2, 2],
        "fewest-workers placement: {per:?}"
    );

    let mut coordinators = BTreeSet::new();
    let mut workers = BTreeSet::new();
    for i in 0..20 {
        let resp = c
            .client()
            .call_service("echo", "", "text/plain", Bytes::from(format!("n{i}")))
            .await
            .expect("echo");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, Bytes::from(format!("n{i}")));
        coordinators.insert(
            resp.header("x-rma-coordinator")
                .expect("coordinator")
                .to_owned(),
        );
        workers.insert(resp.header("x-rma-worker").expect("worker").to_owned());
    }
    assert_eq!(
        coordinators.len(),
        2,
        "both coordinators served: {coordinators:?}"
    );
    assert_eq!(workers.len(), 4, "every worker served: {workers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_heartbeat_through_the_router_reaches_its_own_coordinator() {
    let c = Cluster::start(2, 0).await;
    let mut homes = BTreeMap::new();
    for id in ["hb-a", "hb-b", "hb-c", "hb-d"] {
        let reg = c
            .member_client(rma_auth::Role::Worker, id)
            .register_worker(&WorkerRegister {
                worker_id: id.into(),
                ..Default::default()
            })
            .await
            .expect("registered");
        homes.insert(id, reg.coordinator_id);
    }
    let used: BTreeSet<&String> = homes.values().collect();
    assert_eq!(
        used.len(),
        2,
        "registrations went to both coordinators: {homes:?}"
    );

    for (i, (id, home)) in homes.iter().enumerate() {
        let load = 0.1 + i as f64 / 10.0;
        c.member_client(rma_auth::Role::Worker, id)
            .worker_heartbeat(&WorkerHeartbeat {
                worker_id: (*id).into(),
                status: "ok".into(),
                current_load: load,
                active_requests: 0,
                heartbeats_failed: 0,
            })
            .await
            .expect("heartbeat accepted");
        // The coordinator holding the worker saw this heartbeat's load; the other never heard of it.
        for (ci, coord) in c.coordinators.iter().enumerate() {
            let cid = format!("coord-{ci}");
            let url = coord.as_ref().expect("alive").url();
            let listed: Vec<serde_json::Value> = reqwest::Client::new()
                .get(format!("{url}/api/workers"))
                .bearer_auth(rma_testkit::METRICS_TOKEN)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            let me = listed.iter().find(|w| w["id"] == *id);
            if cid == *home {
                let me = me.expect("home coordinator holds the worker");
                assert!((me["load"].as_f64().expect("load") - load).abs() < 1e-9);
            } else {
                assert!(me.is_none(), "{id} must not be at {cid}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_out_of_rotation_within_a_second_and_requests_keep_succeeding() {
    let mut c = Cluster::start(1, 3).await;
    let coordinator = c.coordinator_client(0);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, ok, failed, stop) = (c.client(), ok.clone(), failed.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            loop {
                let call = client.call_service("echo", "delay_ms=50", "text/plain", Bytes::from_static(b"x"));
                tokio::select! {
                    r = call => match r {
                        Ok(r) if r.status == 200 => { ok.fetch_add(1, Ordering::Relaxed); }
                        Ok(r) => { failed.fetch_add(1, Ordering::Relaxed); eprintln!("failed: {} {:?}", r.status, r.body); }
                        Err(e) => { failed.fetch_add(1, Ordering::Relaxed); eprintln!("failed: {e}"); }
                    },
                    _ = stop.notified() => return,
                }
            }
        }));
    }
    eventually("load is flowing", || {
        let n = ok.load(Ordering::Relaxed);
        async move { (n >= 20).then_some(()) }
    })
    .await;

    let killed_at = Instant::now();
    c.kill_worker(0);
    eventually_within(
        "worker-0 out of rotation at the coordinator",
        Duration::from_secs(1),
        || {
            let coordinator = coordinator.clone();
            async move {
                let (_, h) = coordinator.health().await.ok()?;
                (h["workers"]["active"] == 2).then_some(())
            }
        },
    )
    .await;
    let detected = killed_at.elapsed();
    eprintln!("killed worker out of rotation after {detected:?}");

    let before = ok.load(Ordering::Relaxed);
    eventually("requests keep succeeding on the others", || {
        let n = ok.load(Ordering::Relaxed);
        async move { (n >= before + 40).then_some(()) }
    })
    .await;
    stop.notify_waiters();
    for t in load {
        t.abort();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed (in-flight ones were retried)"
    );

    // Every answer after the kill came from the survivors.
    for _ in 0..10 {
        let r = c
            .client()
            .call_service("echo", "", "text/plain", Bytes::new())
            .await
            .expect("echo");
        assert_ne!(r.header("x-rma-worker"), Some("worker-0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_router_keeps_its_registry_and_routing_resumes() {
    let mut c = Cluster::start(1, 1).await;
    let before = c.client().coordinators().await.expect("list");
    c.stop_router();
    assert!(c.client().coordinators().await.is_err(), "router is down");
    c.restart_router().await;
    // Straight after the restart, before any heartbeat could re-register it, the file has it.
    let after = c.client().coordinators().await.expect("list");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].coordinator_id, before[0].coordinator_id);
    assert_eq!(after[0].registered_at, before[0].registered_at);
    assert_eq!(after[0].url, before[0].url);
    let client = c.client();
    eventually("echo routed after the restart", || {
        let client = client.clone();
        async move {
            let r = client
                .call_service("echo", "", "text/plain", Bytes::from_static(b"back"))
                .await
                .ok()?;
            (r.status == 200 && r.body == Bytes::from_static(b"back")).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_registration_survives_a_router_restart_without_heartbeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let l = rma_testkit::listener().await;
    let addr = l.local_addr().expect("addr");
    let router = rma_router::spawn(rma_testkit::router_config(db.clone()), l).expect("router");
    let client = Client::new(&router.url())
        .expect("client")
        .with_bearer(rma_testkit::ADMIN_TOKEN);
    let reg = Client::new(&router.url())
        .expect("client")
        .with_identity(rma_testkit::identity(
            "durable-1",
            rma_auth::Role::Coordinator,
        ))
        .register_coordinator(&rma_proto::api::CoordinatorRegister {
            coordinator_id: Some("durable-1".into()),
            url: Some("http://127.0.0.1:9".into()),
            location: Some("Leeds".into()),
            ..Default::default()
        })
        .await
        .expect("registered");
    assert_eq!(reg.status, "registered");
    assert_eq!(reg.role, "edge_coordinator");
    drop(router);
    let l = eventually("port free", || async {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    let _router = rma_router::spawn(rma_testkit::router_config(db), l).expect("router again");
    let list = client.coordinators().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].coordinator_id, "durable-1");
    assert_eq!(list[0].location.as_deref(), Some("Leeds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_can_register_straight_at_a_standalone_coordinator() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let coord = rma_coordinator::spawn(
        rma_testkit::coordinator_config("solo", None),
        rma_testkit::listener().await,
    )
    .expect("coordinator");
    let w = rma_worker::spawn(rma_testkit::worker_config(
        &coord.url(),
        "w-solo",
        dir.path().to_path_buf(),
    ))
    .expect("worker");
    rma_testkit::wait_linked_worker(&w).await;
    let client = rma_testkit::coordinator_services(&coord.url());
    let r = client
        .call_service("echo", "", "text/plain", Bytes::from_static(b"direct"))
        .await
        .expect("echo");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rma-worker"), Some("w-solo"));
    assert_eq!(w.status().coordinator_id.as_deref(), Some("solo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_forgotten_by_the_router_registers_again() {
    let c = Cluster::start(1, 1).await;
    let router = c.client();
    router
        .deregister_coordinator("coord-0")
        .await
        .expect("deregistered");
    assert!(router.coordinators().await.expect("list").is_empty());
    // Its next heartbeat gets 404, and it registers again, workers and all.
    eventually("coord-0 registered again and routable", || {
        let router = router.clone();
        async move {
            let r = router
                .call_service("echo", "", "text/plain", Bytes::from_static(b"again"))
                .await
                .ok()?;
            (r.status == 200 && r.header("x-rma-coordinator") == Some("coord-0")).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_gets_its_workers_back() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let l = rma_testkit::listener().await;
    let addr = l.local_addr().expect("addr");
    let coord = rma_coordinator::spawn(rma_testkit::coordinator_config("phoenix", None), l)
        .expect("coordinator");
    let w = rma_worker::spawn(rma_testkit::worker_config(
        &coord.url(),
        "w-phoenix",
        dir.path().to_path_buf(),
    ))
    .expect("worker");
    let mut rx = w.watch();
    eventually("first link", || {
        let s = rx.borrow_and_update().clone();
        async move { (s.linked && s.registrations == 1).then_some(()) }
    })
    .await;
    drop(coord);
    let l = eventually("port free", || async {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    let coord = rma_coordinator::spawn(rma_testkit::coordinator_config("phoenix", None), l)
        .expect("coordinator again");
    // The new process knows no workers; the worker's link dropped, so it registers and dials again.
    eventually("worker back at the restarted coordinator", || {
        let s = rx.borrow_and_update().clone();
        async move { (s.linked && s.registrations >= 2).then_some(()) }
    })
    .await;
    let client = rma_testkit::coordinator_services(&coord.url());
    let r = client
        .call_service("echo", "", "text/plain", Bytes::from_static(b"risen"))
        .await
        .expect("echo");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rma-worker"), Some("w-phoenix"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_finishes_its_requests_and_takes_no_new_ones() {
    let mut c = Cluster::start(1, 2).await;
    let coordinator = c.coordinator_client(0);
    // A slow request lands on one of the two workers.
    let client = c.client();
    let slow = tokio::spawn(async move {
        client
            .call_service(
                "echo",
                "delay_ms=1500",
                "text/plain",
                Bytes::from_static(b"finish me"),
            )
            .await
    });
    let busy = eventually("the slow request is in flight", || {
        let coordinator = coordinator.clone();
        async move {
            let workers: Vec<serde_json::Value> = coordinator
                .raw(reqwest::Method::GET, "api/workers", None, Bytes::new(), &[])
                .await
                .ok()?
                .parse()
                .ok()?;
            workers
                .iter()
                .find(|w| w["active_requests"] == 1)
                .and_then(|w| w["id"].as_str().map(str::to_owned))
        }
    })
    .await;
    let index: usize = busy.trim_start_matches("worker-").parse().expect("index");
    let handle = c.workers[index].take().expect("alive");
    let drained = tokio::spawn(handle.drain(Duration::from_secs(10)));
    // It leaves the rotation at once: new requests go to the other worker.
    eventually("the draining worker is out of rotation", || {
        let coordinator = coordinator.clone();
        async move {
            let (_, h) = coordinator.health().await.ok()?;
            (h["workers"]["active"] == 1).then_some(())
        }
    })
    .await;
    for _ in 0..5 {
        let r = c
            .client()
            .call_service("echo", "", "text/plain", Bytes::from_static(b"new"))
            .await
            .expect("echo");
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-rma-worker"), Some(busy.as_str()));
    }
    // The request it had is finished by it, not retried elsewhere.
    let r = slow.await.expect("joined").expect("answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Bytes::from_static(b"finish me"));
    assert_eq!(r.header("x-rma-worker"), Some(busy.as_str()));
    assert_eq!(r.header("x-rma-attempts"), Some("1"));
    assert!(
        drained.await.expect("joined"),
        "drained within the grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_a_link_is_called_at_its_tunnel_url_and_dropped_when_it_dies() {
    let mut c = Cluster::start(1, 1).await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let i = c
        .add_worker_with("tunnelled", |w| {
            w.use_link = false;
            w.listen = Some(addr);
        })
        .await;
    let client = c.client();
    // It is reached over HTTP at http://{listen}: some answers name it.
    eventually("the tunnelled worker serves", || {
        let client = client.clone();
        async move {
            let r = client
                .call_service("echo", "", "text/plain", Bytes::from_static(b"via tunnel"))
                .await
                .ok()?;
            (r.status == 200
                && r.header("x-rma-worker") == Some("tunnelled")
                && r.body == Bytes::from_static(b"via tunnel"))
            .then_some(())
        }
    })
    .await;
    // The tunnel URL is public; only the federation's coordinators may send work down it.
    let tunnel = format!("http://{addr}");
    let stranger = Client::new(&tunnel)
        .expect("client")
        .call_service("echo", "", "text/plain", Bytes::from_static(b"free work"))
        .await
        .expect("answer");
    assert_eq!(stranger.status, 401, "no credential");
    let client_key = rma_testkit::coordinator_services(&tunnel)
        .call_service("echo", "", "text/plain", Bytes::from_static(b"free work"))
        .await
        .expect("answer");
    assert_eq!(client_key.status, 403, "a client is not a coordinator");
    let coordinator = Client::new(&tunnel)
        .expect("client")
        .with_bearer(rma_testkit::identity("coord-x", Role::Coordinator).bearer())
        .call_service("echo", "", "text/plain", Bytes::from_static(b"work"))
        .await
        .expect("answer");
    assert_eq!(coordinator.status, 200);
    // When it dies, the next request to it fails to connect, goes to the other worker, and the
    // tunnel is out of use: nothing fails.
    c.kill_worker(i);
    for _ in 0..10 {
        let r = c
            .client()
            .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
            .await
            .expect("echo");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-rma-worker"), Some("worker-0"));
    }
}

/// Link heartbeats from `worker` counted by the coordinator at `url` (the `via` label says how
/// they came), or `None` before the first.
async fn heartbeats_via(url: &str, worker: &str, via: &str) -> Option<u64> {
    let text = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(rma_testkit::METRICS_TOKEN)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let worker = format!("worker=\"{worker}\"");
    let via = format!("via=\"{via}\"");
    text.lines()
        .filter(|l| l.starts_with("rma_coordinator_worker_heartbeats_total{"))
        .find(|l| l.contains(&worker) && l.contains(&via))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_ride_the_link_and_a_crowded_coordinator_pings_less_often() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = rma_testkit::coordinator_config("crowded", None);
    c.link_ping_interval = Duration::from_millis(100);
    // Three links pinged every 100 ms would be 30 pings a second; a budget of 10 makes it
    // every 400 ms (100 → 200 → 400), and every worker is told.
    c.link_ping_budget = 10;
    let coord = rma_coordinator::spawn(c, rma_testkit::listener().await).expect("coordinator");
    let url = coord.url();
    let mut workers: Vec<rma_worker::WorkerHandle> = (0..3)
        .map(|i| {
            let w = rma_testkit::worker_config(
                &url,
                &format!("crowd-{i}"),
                dir.path().join(format!("w{i}")),
            );
            rma_worker::spawn(w).expect("worker")
        })
        .collect();
    eventually("every worker linked and told 400 ms", || {
        let told: Vec<_> = workers.iter().map(|w| w.status()).collect();
        async move {
            told.iter()
                .all(|s| s.linked && s.ping_interval_ms == 400)
                .then_some(())
        }
    })
    .await;
    // Heartbeats (every 500 ms here) come over the link, none over HTTP, and the links
    // outlive several silence limits (5 × 400 ms) at the longer interval without a reconnect.
    eventually("six link heartbeats from crowd-0", || {
        let url = url.clone();
        async move { (heartbeats_via(&url, "crowd-0", "link").await? >= 6).then_some(()) }
    })
    .await;
    assert_eq!(heartbeats_via(&url, "crowd-0", "http").await, None);
    for w in &workers {
        let s = w.status();
        assert!(s.linked && s.registrations == 1, "{s:?}");
    }
    let r = rma_testkit::coordinator_services(&url)
        .call_service("echo", "", "text/plain", Bytes::from_static(b"still here"))
        .await
        .expect("echo");
    assert_eq!(&r.body[..], b"still here");
    // Two leave: the last one is pinged at the configured interval again.
    workers.truncate(1);
    eventually("crowd-0 told 100 ms", || {
        let s = workers[0].status();
        async move { (s.linked && s.ping_interval_ms == 100).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_meter_counts_requests_registry_calls_and_rows() {
    rma_testkit::init_tracing();
    let c = Cluster::start(1, 1).await;
    let admin = c.client();
    let e = c.public_client().usage().await.expect_err("admin only");
    assert_eq!(e.status(), Some(rma_client::HttpStatus::UNAUTHORIZED));
    let used = |u: &rma_proto::api::Usage, name: &str| {
        u.counters
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.used)
            .expect(name)
    };
    let before = admin.usage().await.expect("usage");
    // The coordinator's registration wrote its row; it and its heartbeats reached the registry.
    assert!(used(&before, "rows_written") >= 1, "{before:?}");
    assert!(used(&before, "registry_requests") >= 2, "{before:?}");
    for _ in 0..5 {
        let r = admin
            .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
            .await
            .expect("echo");
        assert_eq!(r.status, 200);
    }
    let after = admin.usage().await.expect("usage");
    // Five documents and the first look at the usage itself.
    assert!(
        used(&after, "requests") >= used(&before, "requests") + 6,
        "{before:?} {after:?}"
    );
    // Documents write no row.
    assert_eq!(used(&after, "rows_written"), used(&before, "rows_written"));
    assert_eq!(after.day.len(), 10);
    for counter in &after.counters {
        assert_eq!(counter.free_tier_limit, 100_000);
        assert!(counter.projected >= counter.used, "{counter:?}");
        assert!(counter.headroom_percent > 80.0, "{counter:?}");
    }
    assert_eq!(after.warning, None);
    let health: serde_json::Value = reqwest::get(format!("{}/health", c.router_url))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "healthy");
}

/// The router's count of calls that reached its registry today (its usage meter).
async fn registry_calls(admin: &Client) -> Option<u64> {
    let u = admin.usage().await.ok()?;
    u.counters
        .iter()
        .find(|c| c.name == "registry_requests")
        .map(|c| c.used)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_heartbeat_as_often_as_the_router_asks() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.url_policy.allow_http = true;
    rc.url_policy.allow_private = true;
    // A router that wants heartbeats every 300 ms, a coordinator that would send one a minute.
    rc.coordinator_heartbeat_interval = Some(Duration::from_millis(300));
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let mut cc = rma_testkit::coordinator_config("told", Some(router.url()));
    cc.router_heartbeat_interval = Duration::from_secs(60);
    let _coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    let admin = Client::new(&router.url())
        .expect("client")
        .with_bearer(rma_testkit::ADMIN_TOKEN);
    let first = eventually("the coordinator registered", || async {
        registry_calls(&admin).await.filter(|n| *n >= 1)
    })
    .await;
    // Register plus at least five heartbeats: the router's 300 ms, not the coordinator's minute.
    eventually_within("five heartbeats", Duration::from_secs(10), || async {
        registry_calls(&admin).await.filter(|n| *n >= first + 5)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_of_workers_joining_costs_the_router_one_heartbeat_a_gap() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    // Heartbeats every 20 s: changes go out at most once every 2 s.
    rc.coordinator_heartbeat_interval = Some(Duration::from_secs(20));
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let coord = rma_coordinator::spawn(
        rma_testkit::coordinator_config("wave", Some(router.url())),
        rma_testkit::listener().await,
    )
    .expect("coordinator");
    let admin = Client::new(&router.url())
        .expect("client")
        .with_bearer(rma_testkit::ADMIN_TOKEN);
    let first = eventually("the coordinator registered", || async {
        registry_calls(&admin).await.filter(|n| *n >= 1)
    })
    .await;
    let started = Instant::now();
    // Ten workers register with the coordinator itself and link: each is a change or two.
    let workers: Vec<_> = (0..10)
        .map(|i| {
            rma_worker::spawn(rma_testkit::worker_config(
                &coord.url(),
                &format!("wave-{i}"),
                dir.path().join(format!("w{i}")),
            ))
            .expect("worker")
        })
        .collect();
    // The router still learns of all of them.
    eventually("the router sees ten active workers", || {
        let admin = admin.clone();
        async move {
            let t = admin.topology().await.ok()?;
            (t.workers
                .iter()
                .filter(|w| w.status == WorkerStatus::Active)
                .count()
                == 10)
                .then_some(())
        }
    })
    .await;
    let took = started.elapsed();
    let heartbeats = registry_calls(&admin).await.expect("usage") - first;
    // One at once, then at most one a gap (plus the one that may be waiting out its gap).
    let allowed = 2 + (took.as_millis() / 2_000) as u64;
    assert!(
        heartbeats <= allowed,
        "{heartbeats} heartbeats in {took:?} for ten workers joining (at most {allowed})"
    );
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_a_link_heartbeats_its_coordinator_directly_not_through_the_router() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.url_policy.allow_loopback = true;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let coord = rma_coordinator::spawn(
        rma_testkit::coordinator_config("direct", Some(router.url())),
        rma_testkit::listener().await,
    )
    .expect("coordinator");
    let curl = coord.url();
    // Registered through the router, as any worker that only knows the router's address.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    let mut w = rma_testkit::worker_config(&router.url(), "linkless", dir.path().join("w"));
    w.use_link = false;
    w.listen = Some(addr);
    let worker = rma_worker::spawn(w).expect("worker");
    let first = eventually(
        "the worker's first HTTP heartbeat at its coordinator",
        || {
            let curl = curl.clone();
            async move {
                heartbeats_via(&curl, "linkless", "http")
                    .await
                    .filter(|n| *n >= 1)
            }
        },
    )
    .await;
    // The router goes away: heartbeats still reach the coordinator, none fails, and the
    // worker does not register again (it would, on a 404 or with heartbeats via the router).
    drop(router);
    eventually("three more heartbeats with the router gone", || {
        let curl = curl.clone();
        async move {
            heartbeats_via(&curl, "linkless", "http")
                .await
                .filter(|n| *n >= first + 3)
        }
    })
    .await;
    let s = worker.status();
    assert_eq!(s.heartbeats_failed, 0, "{s:?}");
    assert_eq!(s.registrations, 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_link_drops_registers_again_with_its_coordinator_without_the_router() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.url_policy.allow_loopback = true;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let listener = rma_testkit::listener().await;
    let addr = listener.local_addr().expect("addr");
    let coord = rma_coordinator::spawn(
        rma_testkit::coordinator_config("home", Some(router.url())),
        listener,
    )
    .expect("coordinator");
    let worker = rma_worker::spawn(rma_testkit::worker_config(
        &router.url(),
        "homing",
        dir.path().join("w"),
    ))
    .expect("worker");
    let mut rx = worker.watch();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| s.linked))
        .await
        .expect("linked in time")
        .expect("status");
    // The router is gone, and the coordinator restarts at the same address: the link drops,
    // and the worker finds its coordinator again by itself.
    drop(router);
    drop(coord);
    let listener = eventually("the coordinator's address free again", || async move {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    let _coord = rma_coordinator::spawn(rma_testkit::coordinator_config("home", None), listener)
        .expect("coordinator again");
    tokio::time::timeout(
        Duration::from_secs(30),
        rx.wait_for(|s| s.linked && s.registrations >= 2),
    )
    .await
    .expect("linked again with the router gone")
    .expect("status");
    assert_eq!(worker.status().coordinator_id.as_deref(), Some("home"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_follows_a_new_heartbeat_interval_from_a_heartbeat_reply() {
    use axum::routing::post;
    use rma_proto::api::CoordinatorRegistered;
    use rma_proto::membership::HeartbeatReply;
    rma_testkit::init_tracing();
    // A router that says "a minute" when the coordinator registers, then "100 ms" in its
    // heartbeat replies, as the edge router does when the federation grows or shrinks.
    let beats = Arc::new(AtomicU64::new(0));
    let counted = beats.clone();
    let app = axum::Router::new()
        .route(
            "/api/edge/register",
            post(|| async {
                axum::Json(CoordinatorRegistered {
                    status: "registered".into(),
                    role: "edge_coordinator".into(),
                    coordinator_id: "follower".into(),
                    total_coordinators: 1,
                    message: String::new(),
                    heartbeat_interval_ms: Some(60_000),
                })
            }),
        )
        .route(
            "/api/edge/heartbeat",
            post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::Relaxed);
                    axum::Json(HeartbeatReply {
                        status: "ok".into(),
                        revoked: vec![],
                        heartbeat_interval_ms: Some(100),
                    })
                }
            }),
        );
    let listener = rma_testkit::listener().await;
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cc = rma_testkit::coordinator_config("follower", Some(url));
    cc.router_heartbeat_interval = Duration::from_secs(60);
    let _coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    // At a minute apart, 5 heartbeats would take 4 minutes; at 100 ms, well under the limit.
    eventually_within("five heartbeats", Duration::from_secs(10), || {
        let n = beats.load(Ordering::Relaxed);
        async move { (n >= 5).then_some(()) }
    })
    .await;
}

/// The benchmarks' shape ([`Cluster::start_on_threads`]): each role on a single-threaded
/// runtime and thread of its own. Echo goes through the whole path, each role's thread is
/// there while the cluster is, and none is left once it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_on_their_own_threads_serve_and_stop_with_the_cluster() {
    fn role_threads() -> BTreeSet<String> {
        std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| name.starts_with("role-"))
            .collect()
    }
    let c = Cluster::start_on_threads(1, 1).await;
    let resp = c
        .client()
        .call_service("echo", "", "text/plain", Bytes::from_static(b"hi"))
        .await
        .expect("echo answers");
    assert_eq!(resp.status, 200);
    assert_eq!(&resp.body[..], b"hi");
    assert_eq!(resp.header("x-rma-worker"), Some("worker-0"));
    assert_eq!(
        role_threads(),
        BTreeSet::from(["role-router", "role-coord-0", "role-worker-0"].map(String::from))
    );
    drop(c);
    eventually("every role's thread has ended", || {
        let left = role_threads();
        async move { left.is_empty().then_some(()) }
    })
    .await;
}
