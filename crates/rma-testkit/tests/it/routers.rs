//! Several routers: a coordinator registers and heartbeats with each, a worker's
//! `COORDINATOR_URL` lists several, and any router serves — one router going away loses
//! nothing but itself.

use std::time::Duration;

use bytes::Bytes;
use rma_client::Client;
use rma_testkit::{
    ADMIN_TOKEN, coordinator_config, eventually, listener, router_config, wait_linked_worker,
    worker_config,
};

fn admin(url: &str) -> Client {
    Client::with_timeout(url, Duration::from_secs(30))
        .expect("router client")
        .with_bearer(ADMIN_TOKEN)
}

/// Waits until `router` routes echo (its topology shows `workers` active workers).
async fn routes_echo(router: &Client, workers: usize) {
    eventually(
        &format!("{} shows {workers} active workers", router.base()),
        || {
            let router = router.clone();
            async move {
                let t = router.topology().await.ok()?;
                let active = t
                    .workers
                    .iter()
                    .filter(|w| w.status == rma_proto::api::WorkerStatus::Active)
                    .count();
                (active == workers).then_some(())
            }
        },
    )
    .await;
}

async fn echo(router: &Client) -> rma_client::RawResponse {
    router
        .call_service("echo", "", "text/plain", Bytes::from_static(b"either"))
        .await
        .expect("echo answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_registers_with_every_router_and_either_serves() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two routers of one federation (they share its key, as an operator copies federation.key).
    let a = rma_router::spawn(router_config(dir.path().join("a.db")), listener().await)
        .expect("router a");
    let b = rma_router::spawn(router_config(dir.path().join("b.db")), listener().await)
        .expect("router b");
    let (ra, rb) = (admin(&a.url()), admin(&b.url()));

    let mut cc = coordinator_config("coord-0", None);
    cc.router_urls = vec![a.url(), b.url()];
    let coordinator = rma_coordinator::spawn(cc, listener().await).expect("coordinator");

    // The worker lists both routers; it registers through the first.
    let list = format!("{}, {}", a.url(), b.url());
    let w0 = rma_worker::spawn(worker_config(&list, "worker-0", dir.path().join("w0")))
        .expect("worker 0");
    wait_linked_worker(&w0).await;
    routes_echo(&ra, 1).await;
    routes_echo(&rb, 1).await;
    for r in [&ra, &rb] {
        let resp = echo(r).await;
        assert_eq!(resp.status, 200);
        assert_eq!(&resp.body[..], b"either");
        assert_eq!(resp.header("x-rma-coordinator"), Some("coord-0"));
    }

    // Router a goes away. Router b still routes, and a new worker whose list starts with the
    // dead router registers through the next one.
    drop(a);
    eventually("router a refuses connections", || {
        let ra = ra.clone();
        async move { ra.topology().await.is_err().then_some(()) }
    })
    .await;
    let w1 = rma_worker::spawn(worker_config(&list, "worker-1", dir.path().join("w1")))
        .expect("worker 1");
    wait_linked_worker(&w1).await;
    assert_eq!(
        w1.watch().borrow().coordinator_id.as_deref(),
        Some("coord-0")
    );
    routes_echo(&rb, 2).await;
    for _ in 0..4 {
        assert_eq!(echo(&rb).await.status, 200);
    }

    // A coordinator stopping says goodbye to every router it can reach.
    let cfg = {
        let mut c = coordinator_config("coord-0", None);
        c.router_urls = vec![ra.base().to_string(), rb.base().to_string()];
        c
    };
    drop(coordinator);
    rma_coordinator::deregister(&cfg, Duration::from_secs(2)).await;
    let left = rb.coordinators().await.expect("list");
    assert!(
        left.iter().all(|c| c.coordinator_id != "coord-0"),
        "router b forgot coord-0: {left:?}"
    );
    drop((w0, w1, b));
}
