//! One contract, two routers: the same black-box checks against `rma router` and against the
//! edge router (edge/, the Cloudflare Worker and its Durable Object in local workerd through
//! `wrangler dev`), with real `rma coordinator` and `rma worker` processes and shortened
//! timeouts: membership and auth, errors, registration and heartbeats, forwarding and retry,
//! a coordinator killed under load, expiry, topology and its WebSocket, jobs, revocation and
//! the usage meter.
//!
//! The edge half needs `edge/node_modules` (`npm ci` in edge/, done by `scripts/test`). Without
//! it the edge test says so on stderr and passes without running, unless `RMA_EDGE=1` (set by
//! `scripts/test`), which makes that a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Proc, rma, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::Command;

/// Seconds without a heartbeat before a coordinator is stale; removed after twice this.
const STALE_S: u64 = 3;

/// The router under test: its URL and admin token, and the process that dies with the test.
struct Router {
    url: String,
    admin: String,
    kind: &'static str,
    _proc: Proc,
    /// wrangler dev's process group: workerd children outlive a kill of wrangler alone.
    _group: Option<Group>,
    _dir: tempfile::TempDir,
}

/// Kills a process group (wrangler's workerd children with it) when dropped.
struct Group(u32);
impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

async fn rust_router() -> Router {
    rust_router_with(&["--ip-rate-limit", "0"]).await
}

/// `rma router` with shortened timeouts and `extra` flags.
async fn rust_router_with(extra: &[&str]) -> Router {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let stale = STALE_S.to_string();
    let mut args = vec![
        "router",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().expect("utf-8"),
        "--stale-after",
        &stale,
        "--coordinator-heartbeat-interval",
        "1",
        "--max-body",
        "1048576",
    ];
    args.extend_from_slice(extra);
    let (proc, url) = start(&args, "listening").await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .expect("admin.token beside --db")
        .trim()
        .to_owned();
    Router {
        url,
        admin,
        kind: "rma router",
        _proc: proc,
        _group: None,
        _dir: dir,
    }
}

fn edge_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../edge")
}

fn random_hex() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

async fn edge_router() -> Option<Router> {
    edge_router_with(&["IP_RATE_LIMIT:0"]).await
}

/// `wrangler dev` of edge/ on a free loopback port, with its state in a temporary folder, and
/// `extra` variables (`NAME:value`).
async fn edge_router_with(extra: &[&str]) -> Option<Router> {
    // Our reqwest is built without a default TLS provider; the library installs ring.
    rma_client::install_crypto_provider();
    let wrangler = edge_dir().join("node_modules/.bin/wrangler");
    if !wrangler.exists() {
        assert!(
            std::env::var("RMA_EDGE").as_deref() != Ok("1"),
            "RMA_EDGE=1 but {} is missing: run `npm ci` in edge/",
            wrangler.display()
        );
        eprintln!(
            "SKIPPED: the edge router is not installed (npm ci in edge/); RMA_EDGE=1 makes this a failure"
        );
        return None;
    }
    let dist = edge_dir().join("../web/dist/index.html");
    assert!(
        dist.exists(),
        "the web UI is not built ({}): the edge serves it",
        dist.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let admin = random_hex();
    let vars = [
        format!("ADMIN_TOKEN:{admin}"),
        format!("FEDERATION_KEY:{}", random_hex()),
        "ALLOW_LOOPBACK:true".into(),
        format!("STALE_AFTER_S:{STALE_S}"),
        format!("EXPIRE_AFTER_S:{}", 2 * STALE_S),
        "HEARTBEAT_INTERVAL_S:1".into(),
        "HEARTBEAT_BUDGET:100000000".into(),
        "ROUTE_CACHE_MS:300".into(),
        "MAX_BODY_MB:1".into(),
    ];
    let vars: Vec<String> = vars
        .into_iter()
        .chain(extra.iter().map(|v| (*v).to_owned()))
        .collect();
    // wrangler's output goes to a file: a child holding the test's stderr would keep a pipe
    // open after the test ends. It is printed when the edge does not come up.
    let log_path = dir.path().join("wrangler.log");
    let log = std::fs::File::create(&log_path).expect("wrangler.log");
    let mut cmd = Command::new(&wrangler);
    cmd.current_dir(edge_dir())
        .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
        .arg("--persist-to")
        .arg(dir.path())
        .args(["--log-level", "warn"])
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    for v in &vars {
        cmd.arg("--var").arg(v);
    }
    let child = cmd.spawn().expect("spawn wrangler dev");
    let group = Group(child.id().expect("pid"));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    // Ready when the Worker itself answers /health (JSON with a status): wrangler's proxy can
    // answer, 404 with no body, a moment before the Worker is loaded behind it.
    let worker_answers = |http: reqwest::Client, url: String| async move {
        match http.get(format!("{url}/health")).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v["status"].is_string()),
            Err(_) => false,
        }
    };
    while !worker_answers(http.clone(), url.clone()).await {
        if tokio::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("wrangler dev did not answer /health within 90 s:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Some(Router {
        url,
        admin,
        kind: "edge router",
        _proc: Proc(child),
        _group: Some(group),
        _dir: dir,
    })
}

/// Polls `f` until it gives `Some`, up to `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Router {
    async fn invite(&self, role: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/api/admin/invites", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({"role": role, "uses": 1}))
            .send()
            .await
            .expect("invite");
        assert_eq!(r.status(), 200, "{}: invite", self.kind);
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }

    async fn get(&self, path: &str, admin: bool) -> (u16, Value) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.url));
        if admin {
            req = req.bearer_auth(&self.admin);
        }
        let r = req.send().await.expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn topology(&self) -> Value {
        self.get("/api/topology", true).await.1
    }

    /// A coordinator process enrolled with a fresh invite.
    async fn coordinator(&self, id: &str, dir: &Path) -> (Proc, String) {
        let join = self.invite("coordinator").await;
        start(
            &[
                "coordinator",
                "--listen",
                "127.0.0.1:0",
                "--join",
                &join,
                "--data-dir",
                dir.join(id).to_str().expect("utf-8"),
                // Each its own jobs file, in the test's folder (not one shared file in the
                // working directory, the source tree).
                "--jobs-db",
                dir.join(id).join("jobs.db").to_str().expect("utf-8"),
                "--id",
                id,
                "--router-heartbeat",
                "1",
            ],
            "listening",
        )
        .await
    }

    /// A worker process enrolled with a fresh invite (the token names this router).
    async fn worker(&self, id: &str, dir: &Path) -> Proc {
        let join = self.invite("worker").await;
        let child = rma(&["worker", "--heartbeat-interval", "1"])
            .env("RMA_JOIN_TOKEN", &join)
            .env("WORKER_ID", id)
            .env("WORKER_TYPE", "cpu")
            .env("RMA_DATA_DIR", dir.join(id))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker");
        Proc(child)
    }

    /// Waits until the topology shows `coordinators` fresh and `workers` active.
    async fn settled(&self, coordinators: usize, workers: usize) {
        let what = format!(
            "{}: {coordinators} healthy coordinator(s) and {workers} active worker(s)",
            self.kind
        );
        eventually(&what, Duration::from_secs(60), || async {
            let t = self.topology().await;
            let healthy = t["coordinators"]
                .as_array()?
                .iter()
                .filter(|c| c["status"] == "healthy")
                .count();
            let active = t["workers"]
                .as_array()?
                .iter()
                .filter(|w| w["status"] == "active")
                .count();
            (healthy == coordinators && active == workers).then_some(())
        })
        .await;
    }

    async fn echo(&self, body: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/service/echo", self.url))
            .header("content-type", "text/plain")
            .body(body.to_owned())
            .send()
            .await
            .expect("echo")
    }
}

/// POSTs `total` bytes to `url` with `Transfer-Encoding: chunked` (no Content-Length) over a
/// plain socket, and returns the whole answer as text. The server may answer before all is
/// sent; what it did not read is not sent.
async fn chunked_post(url: &str, total: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(authority)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let chunk = vec![b'x'; 64 * 1024];
        let mut wrote = s.write_all(head.as_bytes()).await.is_ok();
        let mut sent = 0;
        while wrote && sent < total {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            wrote = s.write_all(&frame).await.is_ok();
            sent += chunk.len();
        }
        if wrote {
            let _ = s.write_all(b"0\r\n\r\n").await;
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("an answer within 60 s")
}

/// An error answer: the status and the JSON `{error, message}` the contract gives it.
async fn assert_error(r: reqwest::Response, status: u16, code: &str, what: &str) {
    let got = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{what}: {v}");
    assert_eq!(v["error"], code, "{what}: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
}

/// Errors and authentication before anything has joined.
async fn strangers_are_refused_with_json_errors(r: &Router) {
    let http = reqwest::Client::new();
    let k = r.kind;
    // Nothing registered: health says so with 503.
    let (s, v) = r.get("/health", false).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (503, Some("degraded")),
        "{k}: {v}"
    );
    // No credential: no joining, no heartbeats, no worker registration.
    for path in [
        "/api/edge/register",
        "/api/edge/heartbeat",
        "/api/worker/register",
    ] {
        let resp = http
            .post(format!("{}{path}", r.url))
            .json(&json!({"coordinator_id": "x", "worker_id": "x", "url": "http://127.0.0.1:1"}))
            .send()
            .await
            .expect("post");
        assert_error(resp, 401, "unauthorized", &format!("{k} {path}")).await;
    }
    // A made-up credential is not this federation's.
    let resp = http
        .post(format!("{}/api/edge/register", r.url))
        .bearer_auth("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA")
        .json(&json!({"url": "http://127.0.0.1:1"}))
        .send()
        .await
        .expect("post");
    assert_error(resp, 401, "unauthorized", &format!("{k} forged credential")).await;
    // Admin views need the admin token.
    for path in [
        "/api/admin/coordinators",
        "/api/admin/usage",
        "/api/admin/nodes",
        "/metrics",
    ] {
        let resp = http
            .get(format!("{}{path}", r.url))
            .bearer_auth("not-the-token")
            .send()
            .await
            .expect("get");
        assert_error(resp, 401, "unauthorized", &format!("{k} {path}")).await;
    }
    // Join tokens: made up, or not a token at all.
    let key = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    for token in ["nonsense", "rmaj1_eyJyIjoiaHR0cDovL3giLCJzIjoiMDAifQ"] {
        let resp = http
            .post(format!("{}/api/enroll", r.url))
            .json(&json!({"token": token, "public_key": key}))
            .send()
            .await
            .expect("enroll");
        assert_error(resp, 401, "unauthorized", &format!("{k} enroll {token}")).await;
    }
    // Bad invites are 400; bad JSON is 400.
    for body in [
        json!({"role": "king"}),
        json!({"role": "worker", "uses": 0}),
    ] {
        let resp = http
            .post(format!("{}/api/admin/invites", r.url))
            .bearer_auth(&r.admin)
            .json(&body)
            .send()
            .await
            .expect("invite");
        assert_error(resp, 400, "bad_request", &format!("{k} invite {body}")).await;
    }
    let resp = http
        .post(format!("{}/api/enroll", r.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("enroll");
    assert_error(resp, 400, "bad_request", &format!("{k} bad JSON")).await;
    // Routes that do not exist, service names that are not names, job ids that are not ids.
    let resp = http
        .get(format!("{}/api/nothing-here", r.url))
        .send()
        .await
        .expect("get");
    assert_error(resp, 404, "not_found", &format!("{k} unknown route")).await;
    let resp = http
        .post(format!("{}/api/service/Bad_Name", r.url))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_error(resp, 400, "bad_request", &format!("{k} bad service name")).await;
    let resp = http
        .get(format!("{}/api/jobs/not-a-job", r.url))
        .send()
        .await
        .expect("get");
    assert_error(resp, 400, "bad_request", &format!("{k} bad job id")).await;
    // No coordinator: a service request is 503 no_coordinator.
    let resp = r.echo("anyone?").await;
    assert_error(
        resp,
        503,
        "no_coordinator",
        &format!("{k} empty federation"),
    )
    .await;
    // The web UI is served at /.
    let page = http.get(format!("{}/", r.url)).send().await.expect("get /");
    assert_eq!(page.status(), 200, "{k} /");
    assert!(
        page.text().await.unwrap_or_default().contains("<html"),
        "{k}: / is the web UI"
    );
}

/// Two coordinators and two workers join, documents flow, a coordinator dies under load,
/// expires, and the rest of the contract holds around them.
async fn a_federation_joins_serves_and_survives_a_dead_coordinator(r: &Router) {
    let k = r.kind;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut c1, _) = r.coordinator("c1", dir.path()).await;
    let (_c2, _) = r.coordinator("c2", dir.path()).await;
    let _w1 = r.worker("w1", dir.path()).await;
    let _w2 = r.worker("w2", dir.path()).await;
    r.settled(2, 2).await;
    let (s, v) = r.get("/health", false).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("healthy")),
        "{k}: {v}"
    );

    // The admin list and the public topology (no addresses without the token).
    let (s, list) = r.get("/api/admin/coordinators", true).await;
    assert_eq!(s, 200, "{k}");
    let mut ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["coordinator_id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["c1", "c2"], "{k}: {list}");
    let (_, public) = r.get("/api/topology", false).await;
    for c in public["coordinators"].as_array().expect("coordinators") {
        assert_eq!(c["url"], "", "{k}: public topology shows no address: {c}");
    }

    // Documents flow through both hops; the answer names who served it. The topology can show
    // a worker active a moment before its coordinator's next heartbeat (at most a second
    // later) lists its services in the routes: the first document may wait for that.
    eventually(
        &format!("{k}: the first document flows"),
        Duration::from_secs(10),
        || async { (r.echo("first").await.status() == 200).then_some(()) },
    )
    .await;
    for i in 0..10 {
        let body = format!("letter {i}");
        let resp = r.echo(&body).await;
        assert_eq!(resp.status(), 200, "{k}");
        let h = resp.headers().clone();
        assert!(h.contains_key("x-rma-coordinator"), "{k}: {h:?}");
        assert!(h.contains_key("x-rma-worker"), "{k}: {h:?}");
        assert_eq!(
            h.get("x-rma-router-attempts").and_then(|v| v.to_str().ok()),
            Some("1"),
            "{k}"
        );
        let timing = h
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            timing.starts_with("router;dur="),
            "{k}: Server-Timing {timing}"
        );
        assert_eq!(resp.text().await.expect("body"), body, "{k}");
    }
    // Over the body limit: 413, before any coordinator is bothered — and as an answer the
    // client reads, not a connection closed under it while it is still sending.
    let resp = r.echo(&"x".repeat(2 * 1024 * 1024)).await;
    assert_error(resp, 413, "payload_too_large", &format!("{k} big body")).await;
    // The same without a Content-Length (chunked): refused once the limit is passed.
    let answer = chunked_post(&format!("{}/api/service/echo", r.url), 2 * 1024 * 1024).await;
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("payload_too_large"),
        "{k} chunked big body: {}",
        answer.chars().take(300).collect::<String>()
    );
    // A service nobody offers: 503 no_worker.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/service/nobody-runs-this", r.url))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_error(resp, 503, "no_worker", &format!("{k} unknown service")).await;

    // Jobs: accepted at a coordinator, looked up through the router by the id alone.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/service/echo", r.url))
        .header("prefer", "respond-async")
        .body("later")
        .send()
        .await
        .expect("async");
    assert_eq!(resp.status(), 202, "{k}");
    let accepted: Value = resp.json().await.expect("json");
    let job = accepted["job_id"].as_str().expect("job id").to_owned();
    let done = eventually(
        &format!("{k}: job {job} done"),
        Duration::from_secs(30),
        || async {
            let (s, v) = r.get(&format!("/api/jobs/{job}"), false).await;
            (s == 200 && v["state"] == "done").then_some(v)
        },
    )
    .await;
    assert_eq!(done["id"], job.as_str(), "{k}");
    let (s, _) = r.get(&format!("/api/jobs/{job}/result"), false).await;
    assert_eq!(s, 200, "{k}: job result");
    let (s, v) = r.get("/api/jobs/nosuch-j0123456789abcdef", false).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (404, Some("not_found")),
        "{k}: {v}"
    );
    // A job without facts cannot be corrected.
    let resp = http_post_json(
        &format!("{}/api/jobs/{job}/corrections", r.url),
        json!({"field": "amounts", "index": 0, "value": "1.00"}),
    )
    .await;
    assert_error(resp, 409, "conflict", &format!("{k} correcting an echo")).await;

    // A person corrects a fact read from a letter; it is kept with the job, as a person's.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/service/extract", r.url))
        .header("prefer", "respond-async")
        .header("content-type", "text/plain")
        .body(
            "Council Tax final notice\nThe amount now outstanding is £1,482 37\nPay by 12/04/2026",
        )
        .send()
        .await
        .expect("extract");
    assert_eq!(resp.status(), 202, "{k}");
    let letter: Value = resp.json().await.expect("json");
    let letter = letter["job_id"].as_str().expect("job id").to_owned();
    let read = eventually(
        &format!("{k}: job {letter} done"),
        Duration::from_secs(30),
        || async {
            let (s, v) = r.get(&format!("/api/jobs/{letter}"), false).await;
            (s == 200 && v["state"] == "done").then_some(v)
        },
    )
    .await;
    let amount = &read["result"]["amounts"][0];
    assert_eq!(
        (amount["value"].as_str(), amount["uncertain"].as_bool()),
        (Some("1482.37"), Some(true)),
        "{k}: {read}"
    );
    let url = format!("{}/api/jobs/{letter}/corrections", r.url);
    let resp = http_post_json(
        &url,
        json!({"field": "amounts", "index": 0, "value": "1482.73"}),
    )
    .await;
    assert_eq!(resp.status(), 200, "{k}: correction");
    let (_, again) = r.get(&format!("/api/jobs/{letter}"), false).await;
    let c = &again["corrections"][0];
    assert_eq!(
        (c["value"].as_str(), c["was"].as_str(), c["by"].as_str()),
        (Some("1482.73"), Some("1482.37"), Some("person")),
        "{k}: {again}"
    );
    for (body, what) in [
        (
            json!({"field": "amounts", "index": 5, "value": "1.00"}),
            "index past the facts",
        ),
        (
            json!({"field": "amounts", "index": 0, "value": "lots"}),
            "not an amount",
        ),
        (
            json!({"field": "dates", "index": 0, "value": "12/04/2026"}),
            "not ISO",
        ),
        (json!({"field": "sender", "value": "x"}), "not correctable"),
    ] {
        let resp = http_post_json(&url, body).await;
        assert_error(resp, 400, "bad_request", &format!("{k} correction: {what}")).await;
    }

    // The live topology: the public view first, the whole one after signing in.
    let ws_url = format!("{}/api/topology/ws", r.url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("topology socket");
    let first = next_json(&mut ws).await;
    assert_eq!(
        first["coordinators"].as_array().map(Vec::len),
        Some(2),
        "{k}: {first}"
    );
    assert_eq!(first["coordinators"][0]["url"], "", "{k}: redacted");
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"admin_token": "wrong"}).to_string(),
    ))
    .await
    .expect("send");
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["error"], "unauthorized", "{k}: {refused}");
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"admin_token": r.admin}).to_string(),
    ))
    .await
    .expect("send");
    // Messages already on their way may still be redacted; the signed-in one follows.
    let full = loop {
        let v = next_json(&mut ws).await;
        if v["coordinators"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://"))
        {
            break v;
        }
    };
    assert!(full["workers"].as_array().is_some(), "{k}");

    // A coordinator killed under load: every request still succeeds (the next one is tried on
    // a connection error, with the same buffered body).
    let load = {
        let url = r.url.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            for i in 0..60 {
                let resp = http
                    .post(format!("{url}/api/service/echo"))
                    .body(format!("under load {i}"))
                    .send()
                    .await
                    .expect("echo");
                statuses.push(resp.status().as_u16());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c1.0.start_kill().expect("kill c1");
    let statuses = load.await.expect("load");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{k}: every request served while c1 died: {statuses:?}"
    );
    // Its workers move to c2; c1 goes stale, then expires out of the registry.
    r.settled(1, 2).await;
    eventually(
        &format!("{k}: c1 expired"),
        Duration::from_secs(8 * STALE_S),
        || async {
            let (_, list) = r.get("/api/admin/coordinators", true).await;
            let ids: Vec<String> = list
                .as_array()?
                .iter()
                .filter_map(|c| c["coordinator_id"].as_str().map(str::to_owned))
                .collect();
            (ids == ["c2"]).then_some(())
        },
    )
    .await;

    // Revocation: a revoked coordinator leaves routing at once.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/admin/nodes/c2/revoke", r.url))
        .bearer_auth(&r.admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200, "{k}: revoke");
    let (_, list) = r.get("/api/admin/coordinators", true).await;
    assert_eq!(list, json!([]), "{k}: revoked coordinator out of routing");
    let (_, nodes) = r.get("/api/admin/nodes", true).await;
    let c2 = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == "c2")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(c2["revoked_at"].is_string(), "{k}: {c2}");

    // The usage meter counted all of it.
    let (s, usage) = r.get("/api/admin/usage", true).await;
    assert_eq!(s, 200, "{k}");
    let used = |name: &str| {
        usage["counters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .and_then(|c| c["used"].as_u64())
            .unwrap_or(0)
    };
    assert!(used("requests") >= 70, "{k}: {usage}");
    assert!(used("registry_requests") >= 4, "{k}: {usage}");
    assert!(used("rows_written") >= 4, "{k}: {usage}");
    for c in usage["counters"].as_array().expect("counters") {
        assert_eq!(c["free_tier_limit"], 100_000, "{k}: {c}");
    }
}

async fn http_post_json(url: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("post")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a topology message within 15 s")
            .expect("socket open")
            .expect("message");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

async fn whole_contract(r: Router) {
    eprintln!("contract suite against {} at {}", r.kind, r.url);
    strangers_are_refused_with_json_errors(&r).await;
    a_federation_joins_serves_and_survives_a_dead_coordinator(&r).await;
}

/// A keyed router takes no document without a client key, and an address that calls the
/// federation too often is told to wait.
async fn limits_hold(r: Router) {
    let k = r.kind;
    let http = reqwest::Client::new();
    let resp = r.echo("from a stranger").await;
    assert_error(
        resp,
        401,
        "unauthorized",
        &format!("{k} keyed, no client key"),
    )
    .await;
    // Burst of 3 at 1 a second: a quick run of enrolments meets 429 with Retry-After.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let resp = http
            .post(format!("{}/api/enroll", r.url))
            .json(&json!({"token": "nonsense", "public_key": "x"}))
            .send()
            .await
            .expect("enroll");
        if resp.status() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses.contains(&429), "{k}: {statuses:?}");
    assert_eq!(statuses[0], 401, "{k}: the first is answered: {statuses:?}");
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "{k}: Retry-After"
    );
    // Job look-ups, health and the topology are not limited.
    for _ in 0..8 {
        let (s, _) = r.get("/api/topology", false).await;
        assert_eq!(s, 200, "{k}: topology is not limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_on_rma_router() {
    let r = rust_router_with(&[
        "--clients",
        "keyed",
        "--ip-rate-limit",
        "1",
        "--ip-rate-burst",
        "3",
    ])
    .await;
    limits_hold(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_on_the_edge_router() {
    if let Some(r) =
        edge_router_with(&["CLIENTS_KEYED:true", "IP_RATE_LIMIT:1", "IP_RATE_BURST:3"]).await
    {
        limits_hold(r).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_on_rma_router() {
    whole_contract(rust_router().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_on_the_edge_router() {
    if let Some(r) = edge_router().await {
        whole_contract(r).await;
    }
}
