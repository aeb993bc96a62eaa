//! A closed federation, from outside: strangers, thieves of credentials and revoked members
//! get nothing; members enrol with a join token over HTTP and renew at the router.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rma_auth::Role;
use rma_client::Client;
use rma_proto::api::WorkerRegister;
use rma_proto::link::{self, LinkMessage};
use rma_proto::membership::InviteRequest;
use rma_testkit::{Cluster, eventually};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Dials a coordinator's link with `bearer` (if any); the HTTP status when refused.
async fn dial(
    coordinator: &str,
    bearer: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let url = format!(
        "{}/api/worker/link",
        coordinator.replace("http://", "ws://")
    );
    let mut req = url.into_client_request().expect("request");
    if let Some(b) = bearer {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {b}").parse().expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("dial: {e}"),
    }
}

/// The next link message on `ws`.
async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<LinkMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Binary(b)) => return link::decode_bytes(&b).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_its_key_never_receives_a_document() {
    let c = Cluster::start(1, 1).await;
    let coordinator = c.coordinators[0].as_ref().expect("alive").url();

    // No credential: the link upgrade is refused with 401, a forged one too.
    assert_eq!(dial(&coordinator, None).await.err(), Some(401));
    assert_eq!(
        dial(&coordinator, Some("e30.e30.e30")).await.err(),
        Some(401)
    );
    // A coordinator's credential is not a worker's: 403.
    let coord_cred = rma_testkit::identity("coord-x", Role::Coordinator).bearer();
    assert_eq!(dial(&coordinator, Some(&coord_cred)).await.err(), Some(403));

    // A thief with a worker's credential but not its key: the credential alone registers
    // nothing (no proof of the key) ...
    let victim = rma_testkit::identity("thief-target", Role::Worker);
    let stolen = victim.bearer();
    let plain = Client::new(&coordinator)
        .expect("client")
        .with_bearer(stolen.clone());
    let e = plain
        .register_worker(&WorkerRegister {
            worker_id: "thief-target".into(),
            ..Default::default()
        })
        .await
        .expect_err("no proof, no registration");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "{e}");
    // ... and cannot answer the link's challenge: the hello is rejected and nothing is sent.
    let legit = Client::new(&coordinator)
        .expect("client")
        .with_identity(victim);
    legit
        .register_worker(&WorkerRegister {
            worker_id: "thief-target".into(),
            ..Default::default()
        })
        .await
        .expect("the real worker registers");
    let mut ws = dial(&coordinator, Some(&stolen)).await.expect("upgrade");
    let Some(LinkMessage::Challenge {
        coordinator_id,
        nonce,
    }) = next_message(&mut ws).await
    else {
        panic!("the coordinator challenges first")
    };
    assert_eq!(coordinator_id, "coord-0");
    assert!(nonce.len() >= 40, "{nonce}");
    let forged = rma_auth::NodeKey::generate().sign(&rma_auth::proof::link_message(
        &coordinator_id,
        &nonce,
        "thief-target",
    ));
    let hello = link::encode(
        &LinkMessage::Hello {
            protocol_version: link::PROTOCOL_VERSION,
            worker_id: "thief-target".into(),
            signature: forged,
        },
        &[],
    );
    ws.send(Message::Binary(hello.into())).await.expect("send");
    match next_message(&mut ws).await {
        Some(LinkMessage::Reject { reason, .. }) => assert_eq!(reason, "unauthorized"),
        other => panic!("expected a reject, got {other:?}"),
    }
    assert!(
        next_message(&mut ws).await.is_none(),
        "then the link closes"
    );

    // Every document goes to the one worker that proved itself.
    let router = c.client();
    let mut served = BTreeSet::new();
    for _ in 0..10 {
        let r = router
            .call_service(
                "echo",
                "",
                "text/plain",
                Bytes::from_static(b"private letter"),
            )
            .await
            .expect("echo");
        assert_eq!(r.status, 200);
        served.insert(r.header("x-rma-worker").unwrap_or_default().to_owned());
    }
    assert_eq!(served, BTreeSet::from(["worker-0".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_worker_is_dropped_within_one_heartbeat() {
    let c = Cluster::start(1, 2).await;
    let admin = c.client();
    admin.revoke("worker-1").await.expect("revoked");
    eventually("worker-1 gone from the topology", || {
        let admin = admin.clone();
        async move {
            let t = admin.topology().await.ok()?;
            (t.workers.len() == 1 && t.workers[0].id == "worker-0").then_some(())
        }
    })
    .await;
    let w1 = c.workers[1].as_ref().expect("process still runs");
    eventually("worker-1's link closed", || {
        let linked = w1.status().linked;
        async move { (!linked).then_some(()) }
    })
    .await;
    for _ in 0..6 {
        let r = admin
            .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
            .await
            .expect("echo");
        assert_eq!(r.header("x-rma-worker"), Some("worker-0"));
    }
    // It keeps trying and keeps being refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!w1.status().linked);
    let nodes = admin.nodes().await.expect("nodes");
    assert!(
        nodes
            .iter()
            .any(|n| n.node_id == "worker-1" && n.revoked_at.is_some()),
        "{nodes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_enrol_with_a_join_token_renew_and_run_only_what_it_allows() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let router = rma_router::spawn(
        rma_testkit::router_config(dir.path().join("r.db")),
        rma_testkit::listener().await,
    )
    .expect("router");
    let admin = Client::new(&router.url())
        .expect("client")
        .with_bearer(rma_testkit::ADMIN_TOKEN);
    let invite = async |role: &str, services: Option<Vec<String>>| {
        admin
            .invite(&InviteRequest {
                role: role.into(),
                services,
                ttl_s: Some(60),
                uses: Some(1),
                owner: None,
                router_url: None,
            })
            .await
            .expect("invite")
            .token
    };

    // A coordinator enrols with its token; its identity is kept in its data dir.
    let cdir = dir.path().join("c");
    let token = invite("coordinator", None).await;
    let cid = rma_client::identity::obtain(&cdir, Some(&token), Role::Coordinator, "enrolled-c")
        .await
        .expect("enrolled");
    assert_eq!(cid.node_id(), "enrolled-c");
    assert_eq!(cid.router_url(), Some(router.url().as_str()));
    let again = rma_client::identity::obtain(&cdir, None, Role::Coordinator, "ignored")
        .await
        .expect("kept");
    assert_eq!(again.bearer(), cid.bearer(), "a restart needs no token");
    let e = rma_client::identity::obtain(&cdir, None, Role::Worker, "x")
        .await
        .expect_err("wrong role");
    assert!(e.to_string().contains("not of a worker"), "{e}");

    let mut cc = rma_testkit::coordinator_config("unused", Some(router.url()));
    cc.id = cid.node_id();
    cc.identity = cid.clone();
    let coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");

    // A worker invited for echo only: offered more, assigned echo only.
    let wdir = dir.path().join("w");
    let token = invite("worker", Some(vec!["echo".into()])).await;
    let wid = rma_client::identity::obtain(&wdir, Some(&token), Role::Worker, "enrolled-w")
        .await
        .expect("enrolled");
    let e = rma_client::identity::obtain(&dir.path().join("w2"), Some(&token), Role::Worker, "w2")
        .await
        .expect_err("used up");
    assert!(e.to_string().contains("used up"), "{e}");
    let mut wc = rma_testkit::worker_config(&router.url(), "unused", wdir.clone());
    wc.worker_id = wid.node_id();
    wc.identity = wid.clone();
    wc.capabilities = Some(rma_proto::Capabilities {
        cpu_cores: 2,
        memory_bytes: 1 << 30,
        disk_free_bytes: 500_000_000_000,
        ..Default::default()
    });
    let w = rma_worker::spawn(wc).expect("worker");
    rma_testkit::wait_linked_worker(&w).await;
    assert_eq!(w.status().assigned_services, ["echo"]);
    assert_eq!(w.status().coordinator_id.as_deref(), Some("enrolled-c"));
    let r = eventually("echo through the enrolled nodes", || {
        let admin = admin.clone();
        async move {
            let r = admin
                .call_service("echo", "", "text/plain", Bytes::from_static(b"enrolled"))
                .await
                .ok()?;
            (r.status == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(r.header("x-rma-worker"), Some("enrolled-w"));

    // Renewal: a fresh credential for the same node, kept in the data dir.
    let before = wid.credential();
    rma_client::identity::renew(&wid).await.expect("renewed");
    let after = wid.credential();
    assert_ne!(before.claims.jti, after.claims.jti);
    assert_eq!(after.claims.sub, "enrolled-w");
    assert_eq!(after.claims.services, Some(vec!["echo".to_owned()]));
    let stored = rma_auth::Identity::load(&wdir)
        .expect("load")
        .expect("kept");
    assert_eq!(stored.bearer(), after.token);
    drop(w);
    drop(coord);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_router_takes_uploads_only_with_a_client_key_and_limits_each_client() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.clients_keyed = true;
    rc.client_rate_limit = 1;
    rc.client_rate_burst = 3;
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    let upload = async |c: &Client| {
        let r = c
            .call_service("echo", "", "text/plain", Bytes::from_static(b"letter"))
            .await
            .expect("answer");
        let v: serde_json::Value = r.json().unwrap_or_default();
        (
            r.status.as_u16(),
            v["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let anyone = Client::new(&router.url()).expect("client");
    assert_eq!(upload(&anyone).await, (401, "unauthorized".into()));
    let worker = anyone
        .clone()
        .with_identity(rma_testkit::identity("w", Role::Worker));
    assert_eq!(
        upload(&worker).await,
        (403, "forbidden".into()),
        "a worker is not a client"
    );

    // A client key passes (here: to be told no coordinator is up), up to its own limit.
    let charity = anyone
        .clone()
        .with_identity(rma_testkit::identity("charity-a", Role::Client));
    for _ in 0..3 {
        assert_eq!(upload(&charity).await, (503, "no_coordinator".into()));
    }
    assert_eq!(upload(&charity).await, (429, "rate_limited".into()));
    let other = anyone
        .clone()
        .with_identity(rma_testkit::identity("charity-b", Role::Client));
    assert_eq!(
        upload(&other).await,
        (503, "no_coordinator".into()),
        "another client has its own bucket"
    );
    // Revoked: refused at once.
    let admin = anyone.clone().with_bearer(rma_testkit::ADMIN_TOKEN);
    admin.revoke("charity-b").await.expect("revoke");
    assert_eq!(upload(&other).await, (403, "forbidden".into()));
    // Job polls need no key: the id is the key.
    let poll = anyone
        .raw(
            reqwest::Method::GET,
            &rma_proto::job::path(&rma_proto::ids::job_id("coord-x", 7)),
            None,
            Bytes::new(),
            &[],
        )
        .await
        .expect("poll");
    assert_eq!(poll.status.as_u16(), 404);
}

/// A coordinator's services are the federation's: whoever reaches its URL directly gets 401
/// without a credential, 403 with a worker's, and is served with a client key; through the
/// router anyone is served (the router shows its own credential), and nothing but the
/// federation's own router credential passes for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_runs_services_only_for_its_router_and_members() {
    let c = Cluster::start(1, 1).await;
    let coordinator = c.coordinators[0].as_ref().expect("alive").url();
    let echo = async |client: &Client, extra: &[(&str, &str)]| {
        let r = client
            .raw(
                reqwest::Method::POST,
                "/api/service/echo",
                Some("text/plain"),
                Bytes::from_static(b"letter"),
                extra,
            )
            .await
            .expect("answer");
        let v: serde_json::Value = r.json().unwrap_or_default();
        (
            r.status.as_u16(),
            v["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let anyone = Client::new(&coordinator).expect("client");
    assert_eq!(echo(&anyone, &[]).await, (401, "unauthorized".into()));
    let worker = anyone
        .clone()
        .with_bearer(rma_testkit::identity("w-x", Role::Worker).bearer());
    assert_eq!(echo(&worker, &[]).await, (403, "forbidden".into()));
    // Jobs too: a stranger cannot queue work.
    let job = anyone
        .raw(
            reqwest::Method::POST,
            "/api/service/echo",
            Some("text/plain"),
            Bytes::from_static(b"later"),
            &[("prefer", "respond-async")],
        )
        .await
        .expect("answer");
    assert_eq!(job.status.as_u16(), 401);
    // Router credentials: another federation's, a forged one, and a client key passed off as
    // one are refused; the federation's own passes.
    let header = rma_proto::headers::ROUTER_CREDENTIAL;
    let stranger = rma_auth::FederationKey::generate()
        .router_credential("router", "coord-0")
        .expect("signs")
        .token;
    assert_eq!(echo(&anyone, &[(header, &stranger)]).await.0, 401);
    assert_eq!(echo(&anyone, &[(header, "e30.e30.e30")]).await.0, 401);
    assert_eq!(
        echo(&anyone, &[(header, rma_testkit::client_key())])
            .await
            .0,
        403
    );
    // Our federation's, made out to another coordinator (captured there): refused here.
    let elsewhere = rma_testkit::federation()
        .router_credential("router", "coord-1")
        .expect("signs")
        .token;
    assert_eq!(
        echo(&anyone, &[(header, &elsewhere)]).await,
        (403, "forbidden".into())
    );
    let ours = rma_testkit::federation()
        .router_credential("router", "coord-0")
        .expect("signs")
        .token;
    assert_eq!(
        echo(&anyone, &[(header, &ours)]).await,
        (200, String::new())
    );
    // A client key, and the public through the router.
    let member = rma_testkit::coordinator_services(&coordinator);
    assert_eq!(echo(&member, &[]).await, (200, String::new()));
    assert_eq!(echo(&c.public_client(), &[]).await, (200, String::new()));
}

/// A client key used at a coordinator directly is limited per client there, as the router
/// limits it: past its burst, 429 with Retry-After (and the refused upload is read, so the
/// client gets the answer); another client has its own bucket; the router's forwards are not
/// counted against anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_used_at_a_coordinator_directly_is_rate_limited_there() {
    let mut cc = rma_testkit::coordinator_config("limited", None);
    cc.client_rate_limit = 1;
    cc.client_rate_burst = 2;
    let coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    let url = coord.url();
    let letter = Bytes::from(vec![b'x'; 256 * 1024]);
    let send = async |client: &Client, extra: &[(&str, &str)]| {
        client
            .raw(
                reqwest::Method::POST,
                "/api/service/echo",
                Some("text/plain"),
                letter.clone(),
                extra,
            )
            .await
            .expect("an answer")
    };
    let charity = rma_testkit::coordinator_services(&url);
    for _ in 0..2 {
        // No worker here: 503, but admitted.
        assert_eq!(send(&charity, &[]).await.status.as_u16(), 503);
    }
    let refused = send(&charity, &[]).await;
    assert_eq!(refused.status.as_u16(), 429);
    let v: serde_json::Value = refused.json().expect("json");
    assert_eq!(v["error"], "rate_limited", "{v}");
    let wait: u64 = refused
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("retry-after");
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    let other = Client::new(&url)
        .expect("client")
        .with_bearer(rma_testkit::identity("charity-other", Role::Client).bearer());
    assert_eq!(
        send(&other, &[]).await.status.as_u16(),
        503,
        "another client has its own bucket"
    );
    let router = rma_testkit::federation()
        .router_credential("router", "limited")
        .expect("signs")
        .token;
    for _ in 0..5 {
        let r = send(
            &Client::new(&url).expect("client"),
            &[(rma_proto::headers::ROUTER_CREDENTIAL, &router)],
        )
        .await;
        assert_eq!(r.status.as_u16(), 503, "the router is not limited here");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_coordinator_and_the_link_speak_tls() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write");
    // Our own CA, trusted as `RMA_CA_CERT` makes the CLI trust it.
    rma_client::trust_pem(ck.cert.pem().as_bytes()).expect("trust");
    let tls = rma_http::tls::server_config(&cert, &key).expect("tls config");
    assert!(
        rma_http::tls::server_config(&key, &cert).is_err(),
        "swapped files"
    );

    let mut rc = rma_testkit::router_config(dir.path().join("r.db"));
    rc.tls = Some(tls.clone());
    let router = rma_router::spawn(rc, rma_testkit::listener().await).expect("router");
    assert!(
        router.url().starts_with("https://127.0.0.1:"),
        "{}",
        router.url()
    );
    let mut cc = rma_testkit::coordinator_config("tls-c", Some(router.url()));
    cc.tls = Some(tls);
    let coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    assert!(coord.url().starts_with("https://"), "{}", coord.url());
    let w = rma_worker::spawn(rma_testkit::worker_config(
        &router.url(),
        "tls-w",
        dir.path().join("w"),
    ))
    .expect("worker");
    rma_testkit::wait_linked_worker(&w).await;

    let admin = Client::new(&router.url())
        .expect("client")
        .with_bearer(rma_testkit::ADMIN_TOKEN);
    let r = eventually("echo over https and wss", || {
        let admin = admin.clone();
        async move {
            let r = admin
                .call_service(
                    "echo",
                    "",
                    "text/plain",
                    Bytes::from_static(b"sealed in transit"),
                )
                .await
                .ok()?;
            (r.status == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(r.header("x-rma-worker"), Some("tls-w"));
    assert_eq!(r.body, Bytes::from_static(b"sealed in transit"));
    // Plain http to a TLS port gets nothing.
    let plain = router.url().replace("https://", "http://");
    assert!(reqwest::get(format!("{plain}/health")).await.is_err());
    drop(w);
    drop(coord);
}

/// An echo that lies: it answers something else than it was sent.
struct LyingEcho;

impl rma_services::Service for LyingEcho {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn call(
        &self,
        req: rma_services::ServiceRequest,
    ) -> rma_services::BoxFuture<'_, Result<rma_services::ServiceReply, rma_services::ServiceError>>
    {
        Box::pin(async move {
            Ok(rma_services::ServiceReply::ok(
                req.call.content_type.clone(),
                Bytes::from_static(b"you owe us 9999 pounds"),
            ))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_checks_catch_a_lying_worker_and_quarantine_it() {
    let mut c = Cluster::start(1, 2).await;
    let mut lies = rma_services::Registry::new();
    lies.add(Arc::new(LyingEcho));
    let liar = rma_worker::spawn_with(
        rma_testkit::worker_config(&c.router_url, "liar", c.dir.path().join("liar")),
        lies,
    )
    .expect("liar");
    c.workers.push(Some(liar));
    c.wait_linked().await;

    let client = c.client();
    let mut verdicts = BTreeSet::new();
    for i in 0..40 {
        let body = format!("letter {i}");
        let r = client
            .call_service(
                "echo",
                "verify=true",
                "text/plain",
                Bytes::from(body.clone()),
            )
            .await
            .expect("echo");
        assert_eq!(r.status, 200);
        // The majority's answer comes back, even when the liar answered first.
        assert_eq!(r.body, Bytes::from(body), "answer {i}");
        let v = r.header("x-rma-verified").expect("a verdict").to_owned();
        verdicts.insert(v);
    }
    assert!(verdicts.contains("agreed"), "{verdicts:?}");
    assert!(verdicts.contains("disagreed"), "{verdicts:?}");
    let admin = c.client();
    eventually("the liar shows as quarantined", || {
        let admin = admin.clone();
        async move {
            let t = admin.topology().await.ok()?;
            t.workers
                .iter()
                .any(|w| w.id == "liar" && w.status == rma_proto::api::WorkerStatus::Quarantined)
                .then_some(())
        }
    })
    .await;
    // Quarantined: it gets no new work.
    for _ in 0..10 {
        let r = client
            .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
            .await
            .expect("echo");
        assert_ne!(r.header("x-rma-worker"), Some("liar"));
        assert_eq!(r.body, Bytes::from_static(b"x"));
    }
    // A job asked to be verified says so.
    let job = client
        .submit_job(
            "echo",
            "verify=true",
            "text/plain",
            Bytes::from_static(b"job"),
        )
        .await
        .expect("job");
    let view = client
        .wait(&job.job_id, Duration::from_secs(30), |_| {})
        .await
        .expect("done");
    assert_eq!(view.verified, Some(rma_proto::job::Verdict::Agreed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_key_has_a_bounded_share_of_the_job_queue() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let router = rma_router::spawn(
        rma_testkit::router_config(dir.path().join("r.db")),
        rma_testkit::listener().await,
    )
    .expect("router");
    let mut cc = rma_testkit::coordinator_config("queue-c", Some(router.url()));
    cc.max_unfinished_jobs_per_client = 2;
    let _coord = rma_coordinator::spawn(cc, rma_testkit::listener().await).expect("coordinator");
    let w = rma_worker::spawn(rma_testkit::worker_config(
        &router.url(),
        "queue-w",
        dir.path().join("w"),
    ))
    .expect("worker");
    rma_testkit::wait_linked_worker(&w).await;
    let as_client = |id: &str| {
        Client::new(&router.url())
            .expect("client")
            .with_identity(rma_testkit::identity(id, Role::Client))
    };
    // One try each (submit_job would wait and retry a 429).
    let try_submit = async |c: &Client| {
        c.raw(
            reqwest::Method::POST,
            "api/service/echo?delay_ms=3000",
            Some("text/plain"),
            Bytes::from_static(b"slow"),
            &[("prefer", "respond-async")],
        )
        .await
        .expect("answer")
    };
    let submit = async |c: &Client| try_submit(c).await.status.as_u16();
    let org = as_client("org-a");
    eventually("the router routes echo", || {
        let org = org.clone();
        async move {
            let r = org
                .call_service("echo", "", "text/plain", Bytes::from_static(b"x"))
                .await
                .ok()?;
            (r.status == 200).then_some(())
        }
    })
    .await;
    assert_eq!(submit(&org).await, 202);
    assert_eq!(submit(&org).await, 202);
    // The router passed the client key on; the coordinator bounds that client's queue.
    let third = try_submit(&org).await;
    assert_eq!(third.status.as_u16(), 429, "over this client's share");
    assert!(
        third.error_message().contains("org-a"),
        "{}",
        third.error_message()
    );
    // Another organisation, and anonymous uploads, are not held back by it.
    assert_eq!(submit(&as_client("org-b")).await, 202);
    let anyone = Client::new(&router.url()).expect("client");
    assert_eq!(submit(&anyone).await, 202);
}
