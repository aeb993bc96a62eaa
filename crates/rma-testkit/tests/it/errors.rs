//! Every error case of the contract answers JSON `{error, message}` with the right status.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use rma_auth::Role;
use rma_client::{Client, RawResponse};
use rma_testkit::Cluster;

fn assert_error(r: &RawResponse, status: u16, code: &str) {
    assert_eq!(
        r.status.as_u16(),
        status,
        "body: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "JSON content type, got {:?}",
        r.header("content-type")
    );
    let v = r.json().expect("a JSON body");
    assert_eq!(v["error"], code, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {v}"
    );
}

async fn post_json(c: &Client, path: &str, body: &str) -> RawResponse {
    c.raw(
        Method::POST,
        path,
        Some("application/json"),
        Bytes::from(body.to_owned()),
        &[],
    )
    .await
    .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_rejects_bad_input_with_json_errors() {
    let c = Cluster::start(1, 1).await;
    let r = c.client();
    // Membership calls carry a member's credential; bad input then gets 400.
    let coordinator = c.member_client(Role::Coordinator, "ghost");
    let worker = c.member_client(Role::Worker, "ghost");
    assert_error(
        &post_json(&r, "api/edge/register", "{}").await,
        401,
        "unauthorized",
    );
    let r = coordinator.clone();
    assert_error(
        &post_json(&r, "api/edge/register", "{not json").await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(&r, "api/edge/register", "{}").await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(&r, "api/edge/register", r#"{"url":"ftp://x"}"#).await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(&r, "api/edge/register", r#"{"url":"no scheme"}"#).await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(
            &r,
            "api/edge/register",
            r#"{"coordinator_id":"../x","url":"http://a"}"#,
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(&r, "api/edge/register", r#"{"url":42}"#).await,
        400,
        "bad_request",
    );
    let no_type = r
        .raw(
            Method::POST,
            "api/edge/register",
            None,
            Bytes::from_static(b"{}"),
            &[],
        )
        .await
        .expect("answer");
    assert_error(&no_type, 415, "unsupported_media_type");
    assert_error(
        &post_json(&r, "api/edge/heartbeat", r#"{"coordinator_id":"ghost"}"#).await,
        404,
        "not_found",
    );
    let del = r
        .raw(Method::DELETE, "api/edge/ghost", None, Bytes::new(), &[])
        .await
        .expect("answer");
    assert_error(&del, 404, "not_found");
    assert_error(
        &post_json(&worker, "api/worker/heartbeat", r#"{"worker_id":"ghost"}"#).await,
        404,
        "not_found",
    );
    assert_error(
        &post_json(&worker, "api/worker/register", r#"{"worker_id":""}"#).await,
        400,
        "bad_request",
    );
    let r = c.client();
    let unknown = r
        .raw(Method::GET, "api/nowhere", None, Bytes::new(), &[])
        .await
        .expect("answer");
    assert_error(&unknown, 404, "not_found");
    let wrong = r
        .raw(Method::GET, "api/edge/register", None, Bytes::new(), &[])
        .await
        .expect("answer");
    assert_error(&wrong, 405, "method_not_allowed");
    let bad_name = r
        .call_service("Bad%20Name", "", "text/plain", Bytes::new())
        .await
        .expect("answer");
    assert_error(&bad_name, 400, "bad_request");
    // No worker offers "store" in this build: 503, naming the service.
    let none = r
        .call_service("store", "", "text/plain", Bytes::new())
        .await
        .expect("answer");
    assert_error(&none, 503, "no_worker");
    // The echo service's own input errors pass through.
    let bad_delay = r
        .call_service("echo", "delay_ms=soon", "text/plain", Bytes::new())
        .await
        .expect("answer");
    assert_error(&bad_delay, 400, "bad_request");
    assert!(bad_delay.header("x-rma-worker").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_rejects_bad_input_with_json_errors() {
    let c = Cluster::start(1, 1).await;
    let url = c.coordinators[0].as_ref().expect("alive").url();
    assert_error(
        &post_json(&c.coordinator_client(0), "api/worker/register", "{}").await,
        401,
        "unauthorized",
    );
    let co = Client::new(&url)
        .expect("client")
        .with_identity(rma_testkit::identity("w", Role::Worker));
    assert_error(
        &post_json(&co, "api/worker/register", "[1,2").await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(&co, "api/worker/register", r#"{"worker_id":"a b"}"#).await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(
            &co,
            "api/worker/register",
            r#"{"worker_id":"w","tunnel_url":"gopher://x"}"#,
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        &post_json(&co, "api/worker/heartbeat", r#"{"worker_id":"w"}"#).await,
        404,
        "not_found",
    );
    assert_error(
        &post_json(&co, "api/worker/heartbeat", r#"{"worker_id":"ghost"}"#).await,
        403,
        "forbidden",
    );
    // A worker's credential does not buy services; a client key does (here: no worker).
    let as_worker = co
        .call_service("store", "", "image/png", Bytes::new())
        .await
        .expect("answer");
    assert_error(&as_worker, 403, "forbidden");
    let none = rma_testkit::coordinator_services(&url)
        .call_service("store", "", "image/png", Bytes::new())
        .await
        .expect("answer");
    assert_error(&none, 503, "no_worker");
    assert_eq!(none.header("x-rma-coordinator"), Some("coord-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413_at_router_and_coordinator() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.max_body_bytes = 1024;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let r = Client::new(&router.url()).expect("client");
    // Refused from the length alone, a body of megabytes still gets its 413 (what the client
    // is still sending is read and dropped), never a connection closed under the upload.
    let huge = Bytes::from(vec![0u8; 2 * 1024 * 1024]);
    for _ in 0..10 {
        let answer = r
            .call_service("echo", "", "application/octet-stream", huge.clone())
            .await
            .expect("an answer, not a broken pipe");
        assert_error(&answer, 413, "payload_too_large");
    }
    let big = Bytes::from(vec![0u8; 1025]);
    assert_error(
        &r.call_service("echo", "", "application/octet-stream", big.clone())
            .await
            .expect("answer"),
        413,
        "payload_too_large",
    );

    let mut cc = rma_testkit::coordinator_config("small", None);
    cc.max_body_bytes = 1024;
    let coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    let co = rma_testkit::coordinator_services(&coord.url());
    assert_error(
        &co.call_service("echo", "", "application/octet-stream", big)
            .await
            .expect("answer"),
        413,
        "payload_too_large",
    );
    // Exactly at the limit is fine as far as the limit goes (then: no worker).
    let at = co
        .call_service(
            "echo",
            "",
            "application/octet-stream",
            Bytes::from(vec![0u8; 1024]),
        )
        .await
        .expect("answer");
    assert_error(&at, 503, "no_worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coordinators_the_router_is_degraded_and_says_503() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let router = rma_router::spawn(
        rma_testkit::router_config(dir.path().join("r.db")),
        rma_testkit::listener().await,
    )
    .expect("router");
    let r = Client::new(&router.url()).expect("client");
    let (status, health) = r.health().await.expect("health");
    assert_eq!(status, 503);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["coordinators"], 0);
    assert_error(
        &r.call_service("echo", "", "text/plain", Bytes::new())
            .await
            .expect("answer"),
        503,
        "no_coordinator",
    );
    let w1 = r
        .clone()
        .with_identity(rma_testkit::identity("w1", Role::Worker));
    assert_error(
        &post_json(&w1, "api/worker/register", r#"{"worker_id":"w1"}"#).await,
        503,
        "no_coordinator",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_slower_than_the_request_timeout_gives_504() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cc = rma_testkit::coordinator_config("slow", None);
    cc.request_timeout = Duration::from_millis(300);
    let coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    let w = rma_worker::spawn(rma_testkit::worker_config(
        &coord.url(),
        "w-slow",
        dir.path().to_path_buf(),
    ))
    .expect("worker");
    rma_testkit::wait_linked_worker(&w).await;
    let co = rma_testkit::coordinator_services(&coord.url());
    let r = co
        .call_service("echo", "delay_ms=3000", "text/plain", Bytes::new())
        .await
        .expect("answer");
    assert_error(&r, 504, "timeout");
    // The link survives a timeout: the next request is served.
    let r = co
        .call_service("echo", "", "text/plain", Bytes::from_static(b"ok"))
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_views_need_the_admin_token() {
    let c = Cluster::start(1, 1).await;
    let anyone = c.public_client();
    let e = anyone.coordinators().await.expect_err("refused");
    assert!(
        matches!(&e, rma_client::ClientError::Api { status, body } if status.as_u16() == 401 && body.error == "unauthorized"),
        "{e}"
    );
    let metrics = anyone
        .raw(Method::GET, "metrics", None, Bytes::new(), &[])
        .await
        .expect("answer");
    assert_error(&metrics, 401, "unauthorized");
    let wrong = anyone
        .raw(
            Method::GET,
            "api/admin/coordinators",
            None,
            Bytes::new(),
            &[("authorization", "Bearer guess")],
        )
        .await
        .expect("answer");
    assert_error(&wrong, 401, "unauthorized");
    // The public topology shows the network's shape, not where its machines are.
    let public = anyone.topology().await.expect("topology");
    assert_eq!(public.coordinators.len(), 1);
    assert!(public.coordinators.iter().all(|c| c.url.is_empty()));
    assert_eq!(public.workers.len(), 1);

    let admin = c.client();
    assert_eq!(admin.coordinators().await.expect("list").len(), 1);
    let full = admin.topology().await.expect("topology");
    assert!(full.coordinators[0].url.starts_with("http://127.0.0.1:"));
    let m = admin
        .raw(Method::GET, "metrics", None, Bytes::new(), &[])
        .await
        .expect("metrics");
    assert_eq!(m.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_without_a_token_writes_one_beside_its_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("registry").join("r.db");
    let mut rc = rma_testkit::router_config(db);
    rc.admin_token = None;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let token = std::fs::read_to_string(dir.path().join("registry").join("admin.token"))
        .expect("admin.token written");
    let admin = Client::new(&router.url())
        .expect("client")
        .with_bearer(token.trim());
    assert!(admin.coordinators().await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_gets_429_while_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.ip_rate_limit = 1;
    rc.ip_rate_burst = 5;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let send = async |from: [u8; 4]| {
        let http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(from))
            .build()
            .expect("client");
        let r = http
            .post(format!("{}/api/service/echo", router.url()))
            .body("x")
            .send()
            .await
            .expect("answer");
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = r.json().await.expect("JSON");
        (body["error"].as_str().unwrap_or_default().to_owned(), retry)
    };
    // The burst is served (here: told that no coordinator is up), then the flood is refused.
    for _ in 0..5 {
        assert_eq!(send([127, 0, 0, 1]).await.0, "no_coordinator");
    }
    let (code, retry) = send([127, 0, 0, 1]).await;
    assert_eq!(code, "rate_limited");
    assert_eq!(retry.as_deref(), Some("1"));
    // Another address is served meanwhile; job polls and health are not limited.
    assert_eq!(send([127, 0, 0, 2]).await.0, "no_coordinator");
    let health = reqwest::get(format!("{}/health", router.url()))
        .await
        .expect("health");
    assert_eq!(health.status(), 503, "degraded, not limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_uploads_too_many_megabytes_an_hour_gets_429() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.ip_upload_mb_per_hour = 1;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let anyone = Client::new(&router.url()).expect("client");
    let upload = async |size: usize| {
        let r = anyone
            .call_service(
                "echo",
                "",
                "application/octet-stream",
                Bytes::from(vec![0u8; size]),
            )
            .await
            .expect("answer");
        r.json().expect("JSON")["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // 600 KB passes the quota (here: no coordinator is up), the next 600 KB does not.
    assert_eq!(upload(600 * 1024).await, "no_coordinator");
    assert_eq!(upload(600 * 1024).await, "rate_limited");
    // Small uploads still fit in what is left.
    assert_eq!(upload(1024).await, "no_coordinator");
    // A client key is not held to the per-address quota.
    let charity = anyone
        .clone()
        .with_identity(rma_testkit::identity("charity", Role::Client));
    let r = charity
        .call_service(
            "echo",
            "",
            "application/octet-stream",
            Bytes::from(vec![0u8; 900 * 1024]),
        )
        .await
        .expect("answer");
    assert_eq!(r.json().expect("JSON")["error"], "no_coordinator");
}
