//! The real `rma` binary as separate processes: flags, exit codes, `rma up`, and a federation
//! of three processes on loopback.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Proc, rma, start};

#[tokio::test]
async fn bad_flag_values_are_one_line_and_exit_2() {
    for args in [
        vec!["router", "--listen", "nope"],
        vec!["up", "--workers", "0"],
        vec![
            "worker",
            "--coordinator-url",
            "http://x",
            "--worker-type",
            "banana",
        ],
        vec!["coordinator", "--worker-timeout", "soon"],
        vec!["invite", "--router", "http://x", "--role", "king"],
        vec![
            "invite", "--router", "http://x", "--role", "worker", "--ttl", "soon",
        ],
        vec!["revoke"],
        vec!["teleport"],
    ] {
        let out = rma(&args).output().await.expect("run rma");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err:?}"
        );
        assert!(err.starts_with("error: "), "{err}");
    }
    // A URL that parses as a flag but is not usable is also a one-line error (exit 1).
    let out = rma(&["worker", "--coordinator-url", "not a url"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
    // Security is on by default: a node that never enrolled says how to, in one line; admin
    // commands without the admin token too.
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (
            vec!["worker", "--data-dir", dir.path().to_str().expect("utf-8")],
            "--join",
        ),
        (
            vec![
                "coordinator",
                "--data-dir",
                dir.path().join("c").to_str().expect("utf-8"),
            ],
            "rma invite",
        ),
        (
            vec![
                "invite",
                "--router",
                "http://127.0.0.1:9",
                "--role",
                "worker",
            ],
            "RMA_ADMIN_TOKEN",
        ),
        (
            vec![
                "worker",
                "--data-dir",
                dir.path().to_str().expect("utf-8"),
                "--join",
                "rmaj1_forged",
            ],
            "not a join token",
        ),
        // A second router is given the first one's key; a wrong path never makes a new one.
        (
            vec![
                "router",
                "--listen",
                "127.0.0.1:0",
                "--db",
                dir.path().join("r.db").to_str().expect("utf-8"),
                "--federation-key",
                dir.path().join("missing.key").to_str().expect("utf-8"),
            ],
            "missing.key",
        ),
        (vec!["worker", "--coordinator-url", " , "], "no URL"),
    ] {
        let out = rma(&args).output().await.expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn help_explains_every_subcommand_and_its_environment() {
    let out = rma(&["--help"]).output().await.expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "router",
        "coordinator",
        "worker",
        "up",
        "probe",
        "invite",
        "revoke",
        "nodes",
    ] {
        assert!(text.contains(sub), "{sub} in --help");
    }
    for (sub, env) in [
        ("router", "RMA_ROUTER_DB"),
        ("coordinator", "RMA_ROUTER_URL"),
        ("coordinator", "RMA_PUBLIC_URL"),
        ("coordinator", "RMA_COORDINATOR_ID"),
        ("coordinator", "RMA_JOIN_TOKEN"),
        ("worker", "RMA_JOIN_TOKEN"),
        ("invite", "RMA_ADMIN_TOKEN_FILE"),
        ("worker", "COORDINATOR_URL"),
        ("worker", "WORKER_TYPE"),
        ("worker", "WORKER_ID"),
        ("worker", "TUNNEL_URL"),
    ] {
        let out = rma(&[sub, "--help"]).output().await.expect("run");
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(env),
            "{sub} --help names {env}"
        );
    }
}

#[tokio::test]
async fn probe_prints_capabilities_and_services_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = rma(&[
        "probe",
        "--json",
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
    ])
    .output()
    .await
    .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["capabilities"]["cpu_cores"].as_u64().expect("cores") >= 1);
    assert!(
        v["capabilities"]["disk_total_bytes"]
            .as_u64()
            .expect("disk")
            > 0
    );
    assert!(
        v["detected"]
            .as_array()
            .expect("detected")
            .contains(&"cpu".into())
    );
    assert!(
        v["assigned_services"]
            .as_array()
            .expect("services")
            .contains(&"echo".into())
    );
    // It looks and sets nothing up: a data dir not made yet stays unmade.
    let later = dir.path().join("later");
    let forced = rma(&[
        "probe",
        "--json",
        "--worker-type",
        "storage",
        "--data-dir",
        later.to_str().expect("utf-8"),
    ])
    .output()
    .await
    .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&forced.stdout).expect("JSON");
    assert_eq!(v["worker_type"], "storage");
    assert!(
        v["capabilities"]["disk_total_bytes"]
            .as_u64()
            .expect("disk")
            > 0
    );
    assert!(!later.exists(), "probe made {}", later.display());
}

#[tokio::test]
async fn rma_up_serves_echo_through_its_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let (mut up, url) = start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--data-dir",
            data,
        ],
        "rma is up",
    )
    .await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/api/service/echo"))
        .header("content-type", "text/plain")
        .body("hello from the CLI test")
        .send()
        .await
        .expect("echo");
    assert_eq!(resp.status(), 200);
    let worker = resp
        .headers()
        .get("x-rma-worker")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(worker.starts_with("local-"), "{worker}");
    assert_eq!(resp.text().await.expect("body"), "hello from the CLI test");
    let health: serde_json::Value = http
        .get(format!("{url}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "healthy");
    assert!(
        dir.path().join("router.db").exists(),
        "the registry lives in the data dir"
    );
    // Every part enrolled itself: keys and credentials in the data dir, owner-only.
    for f in [
        "federation.key",
        "admin.token",
        "coordinator/node.key",
        "coordinator/identity.json",
        "worker-1/node.key",
        "worker-2/identity.json",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // And the federation is closed: no credential, no membership.
    let r = http
        .post(format!("{url}/api/worker/register"))
        .json(&serde_json::json!({"worker_id": "intruder"}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 401);

    // Ctrl-C (SIGINT) stops it cleanly.
    let pid = up.0.id().expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), up.0.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn router_coordinator_and_worker_as_separate_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("r.db");
    let (_router, router_url) = start(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db.to_str().expect("utf-8"),
        ],
        "listening",
    )
    .await;
    // The router wrote its admin token beside its registry on first start.
    let token_file = dir.path().join("admin.token");
    let admin_token = std::fs::read_to_string(&token_file)
        .expect("admin.token beside --db")
        .trim()
        .to_owned();
    // `rma invite` prints the join token and nothing else.
    let invite = |role: &'static str| {
        let token_file = token_file.clone();
        let router_url = router_url.clone();
        async move {
            let out = rma(&[
                "invite",
                "--router",
                &router_url,
                "--role",
                role,
                "--admin-token-file",
                token_file.to_str().expect("utf-8"),
            ])
            .output()
            .await
            .expect("invite");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let token = String::from_utf8(out.stdout).expect("utf-8");
            assert_eq!(token.trim_end().lines().count(), 1, "{token}");
            assert!(token.starts_with("rmaj1_"), "{token}");
            token.trim().to_owned()
        }
    };
    let coordinator_join = invite("coordinator").await;
    let (coord, coord_url) = start(
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--join",
            &coordinator_join,
            "--data-dir",
            dir.path().join("c").to_str().expect("utf-8"),
            // Its jobs file in the test's folder, not the working directory (the source tree).
            "--jobs-db",
            dir.path().join("c/jobs.db").to_str().expect("utf-8"),
            "--id",
            "proc-coord",
            "--router-heartbeat",
            "1",
        ],
        "listening",
    )
    .await;
    assert!(coord_url.starts_with("http://127.0.0.1:"));
    // The join token was for one use.
    let again = rma(&[
        "coordinator",
        "--join",
        &coordinator_join,
        "--data-dir",
        dir.path().join("c2").to_str().expect("utf-8"),
    ])
    .output()
    .await
    .expect("run");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("used up"));

    let http = reqwest::Client::new();
    // Without a credential nothing joins; with a coordinator's credential, a coordinator
    // still cannot be registered at a metadata or private address.
    let r = http
        .post(format!("{router_url}/api/edge/register"))
        .json(
            &serde_json::json!({"coordinator_id": "evil", "url": "http://169.254.169.254/latest"}),
        )
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 401);
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("c/identity.json")).expect("identity kept"),
    )
    .expect("json");
    let credential = stored["credential"].as_str().expect("credential");
    for url in ["http://169.254.169.254/latest", "http://10.0.0.8:8080"] {
        let r = http
            .post(format!("{router_url}/api/edge/register"))
            .bearer_auth(credential)
            .json(&serde_json::json!({"coordinator_id": "proc-coord", "url": url}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 400, "{url}");
    }

    let worker_join = invite("worker").await;
    // One command: the join token names the router, so no URL is needed.
    let mut worker = rma(&["worker", "--heartbeat-interval", "1"])
        .env("RMA_JOIN_TOKEN", &worker_join)
        .env("WORKER_ID", "proc-worker")
        .env("RMA_DATA_DIR", dir.path().join("w"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resp = loop {
        let r = http
            .post(format!("{router_url}/api/service/echo"))
            .body("through three processes")
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 200
        {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "echo never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        resp.headers()
            .get("x-rma-coordinator")
            .and_then(|v| v.to_str().ok()),
        Some("proc-coord")
    );
    assert_eq!(
        resp.headers()
            .get("x-rma-worker")
            .and_then(|v| v.to_str().ok()),
        Some("proc-worker")
    );
    assert_eq!(resp.text().await.expect("body"), "through three processes");

    // `rma nodes` lists both members.
    let out = rma(&["nodes", "--router", &router_url])
        .env("RMA_ADMIN_TOKEN", &admin_token)
        .output()
        .await
        .expect("nodes");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("proc-coord") && listed.contains("proc-worker"),
        "{listed}"
    );
    // `rma status` shows the federation, quarantined workers included (none here).
    let out = rma(&["status", "--router", &router_url])
        .output()
        .await
        .expect("status");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.contains("proc-coord")
            && status.contains("proc-worker")
            && status.contains("active"),
        "{status}"
    );

    assert!(
        status.contains("P99") && status.contains("REQ/MIN"),
        "{status}"
    );
    assert!(
        !status.contains("usage today"),
        "only with the admin token: {status}"
    );
    let out = rma(&["status", "--router", &router_url])
        .env("RMA_ADMIN_TOKEN", &admin_token)
        .output()
        .await
        .expect("status as admin");
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("usage today (UTC ") && status.contains("rows_written "),
        "{status}"
    );
    // With the admin token and --json: what the router measured forwarding the echo.
    let out = rma(&["status", "--router", &router_url, "--json"])
        .env("RMA_ADMIN_TOKEN", &admin_token)
        .output()
        .await
        .expect("status --json");
    assert!(out.status.success());
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let c = &t["coordinators"][0];
    assert_eq!(c["id"], "proc-coord");
    assert!(c["requests_last_minute"].as_u64() >= Some(1), "{c}");
    assert!(
        c["latency_p99_ms"]["echo"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{c}"
    );
    assert_eq!(c["failures_last_minute"], 0, "{c}");
    assert_eq!(t["workers"][0]["id"], "proc-worker");

    // SIGTERM: the worker drains and exits cleanly; the coordinator deregisters.
    let term = |pid: u32| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    };
    term(worker.id().expect("pid"));
    let status = tokio::time::timeout(Duration::from_secs(15), worker.wait())
        .await
        .expect("worker exits")
        .expect("status");
    assert!(status.success(), "{status:?}");
    term(coord.0.id().expect("pid"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let list: serde_json::Value = http
            .get(format!("{router_url}/api/admin/coordinators"))
            .bearer_auth(&admin_token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        if list.as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator never deregistered: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `rma revoke` marks the worker revoked; its renewals are refused from now on.
    let out = rma(&["revoke", "proc-worker", "--router", &router_url])
        .env("RMA_ADMIN_TOKEN", &admin_token)
        .output()
        .await
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rma(&["nodes", "--router", &router_url, "--json"])
        .env("RMA_ADMIN_TOKEN", &admin_token)
        .output()
        .await
        .expect("nodes");
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let worker = nodes
        .as_array()
        .expect("list")
        .iter()
        .find(|n| n["node_id"] == "proc-worker")
        .expect("listed");
    assert!(worker["revoked_at"].is_string(), "{worker}");
}

#[tokio::test]
async fn rma_submit_reads_letters_and_names_the_files_that_failed() {
    use rma_fixtures::{letters, png, render_page};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (_up, url) = start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        "rma is up",
    )
    .await;
    let letter = dir.path().join("council-tax.png");
    std::fs::write(
        &letter,
        png(&render_page(letters::COUNCIL_TAX.text, 34.0).expect("render")),
    )
    .expect("write");
    let not_a_document = dir.path().join("notes.png");
    std::fs::write(&not_a_document, b"just some words, not an image").expect("write");
    let missing = dir.path().join("missing.pdf");
    let out_dir = dir.path().join("out");

    // One good file: text and facts, and the files under --out.
    let out = rma(&[
        "submit",
        "--router",
        &url,
        "--out",
        out_dir.to_str().expect("utf-8"),
        letter.to_str().expect("utf-8"),
    ])
    .output()
    .await
    .expect("run submit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("letter type  council_tax"), "{stdout}");
    assert!(stdout.contains("£187.45"), "{stdout}");
    assert!(stdout.contains("COUNCIL TAX REMINDER NOTICE"), "{stdout}");
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("council-tax.json")).expect("json written"),
    )
    .expect("JSON");
    assert_eq!(saved["facts"]["letter_type"], "council_tax");
    assert!(
        std::fs::read_to_string(out_dir.join("council-tax.txt"))
            .expect("txt")
            .contains("Leeds City Council")
    );

    // JSON output, and failures named with their reasons and a non-zero exit.
    let out = rma(&[
        "submit",
        "--router",
        &url,
        "--json",
        letter.to_str().expect("utf-8"),
        not_a_document.to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
    ])
    .output()
    .await
    .expect("run submit");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v[0]["job"]["state"], "done");
    assert_eq!(v[0]["job"]["result"]["facts"]["letter_type"], "council_tax");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.png") && stderr.contains("not a PNG"),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing.pdf") && stderr.contains("cannot read it"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 file(s) failed"), "{stderr}");
}

#[tokio::test]
async fn use_tunnel_needs_cloudflared_and_registers_the_url_it_prints() {
    // Without cloudflared on the PATH: a clear one-line error.
    let out = rma(&[
        "worker",
        "--coordinator-url",
        "http://127.0.0.1:9",
        "--use-tunnel",
    ])
    .env("PATH", "/nonexistent")
    .output()
    .await
    .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cloudflared") && err.trim_end().lines().count() == 1,
        "{err}"
    );

    // With a stand-in that prints what cloudflared prints (the real one needs the internet).
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("cloudflared");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'INF Requesting new quick Tunnel on trycloudflare.com...' >&2\necho 'INF |  https://quiet-test-tunnel.trycloudflare.com  |' >&2\nexec sleep 600\n",
    )
    .expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (_router, router_url) = start(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--db",
            dir.path().join("r.db").to_str().expect("utf-8"),
        ],
        "listening",
    )
    .await;
    let invite = |role: &'static str| {
        let token = dir.path().join("admin.token");
        let router_url = router_url.clone();
        async move {
            let out = rma(&["invite", "--router", &router_url, "--role", role])
                .env("RMA_ADMIN_TOKEN_FILE", token)
                .output()
                .await
                .expect("invite");
            String::from_utf8(out.stdout)
                .expect("utf-8")
                .trim()
                .to_owned()
        }
    };
    let coordinator_join = invite("coordinator").await;
    let (_coord, coord_url) = start(
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--id",
            "tunnel-test",
            "--join",
            &coordinator_join,
            "--data-dir",
            dir.path().join("c").to_str().expect("utf-8"),
            "--metrics-token",
            "tunnel-metrics",
            "--jobs-db",
            dir.path().join("j.db").to_str().expect("utf-8"),
        ],
        "listening",
    )
    .await;
    let worker_join = invite("worker").await;
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _worker = Proc(
        rma(&[
            "worker",
            "--coordinator-url",
            &coord_url,
            "--worker-id",
            "tunnel-w",
            "--use-tunnel",
            "--data-dir",
            dir.path().join("w").to_str().expect("utf-8"),
            "--join",
            &worker_join,
        ])
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker"),
    );
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let workers: serde_json::Value = http
            .get(format!("{coord_url}/api/workers"))
            .bearer_auth("tunnel-metrics")
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        if workers[0]["tunnel_url"] == "https://quiet-test-tunnel.trycloudflare.com" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tunnel URL was never registered: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
