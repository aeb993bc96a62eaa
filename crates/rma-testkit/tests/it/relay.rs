//! The router link: the router forwards service requests to a coordinator over one multiplexed
//! WebSocket, with the same answers, headers and checks as over HTTP; only the router's
//! credential for that coordinator opens one.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use rma_auth::Role;
use rma_proto::relay::{self, RelayMessage};
use rma_testkit::{Cluster, eventually};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The coordinator's router-link counters: (links open, calls that came over them).
async fn link_counts(c: &Cluster, i: usize) -> (u64, u64) {
    let (_, h) = c.coordinator_client(i).health().await.expect("health");
    (
        h["router_links"].as_u64().expect("router_links"),
        h["router_link_calls"].as_u64().expect("router_link_calls"),
    )
}

/// Echo `body` through the router; the answer's status, body and `Server-Timing`.
async fn echo(c: &Cluster, body: Bytes, headers: &[(&str, &str)]) -> rma_client::RawResponse {
    c.client()
        .raw(
            Method::POST,
            "api/service/echo",
            Some("application/octet-stream"),
            body,
            headers,
        )
        .await
        .expect("echo answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_forwards_over_one_link_per_coordinator_with_http_s_answers() {
    let c = Cluster::start(1, 1).await;
    // The first forward goes over HTTP and opens the link behind it.
    eventually("the router holds a link to the coordinator", || async {
        let r = echo(&c, Bytes::from_static(b"hello"), &[]).await;
        assert_eq!(r.status, 200);
        (link_counts(&c, 0).await.0 == 1).then_some(())
    })
    .await;
    // A lone call keeps a connection of its own: HTTP.
    let (_, before) = link_counts(&c, 0).await;
    assert_eq!(echo(&c, Bytes::from_static(b"x"), &[]).await.status, 200);
    assert_eq!(link_counts(&c, 0).await.1, before, "a lone call over HTTP");

    // Calls at the same time share the link; each gets its own body back, timed and traced
    // across the hops.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let answers = futures_util::future::join_all((0..64u32).map(|i| {
        let body = Bytes::from(format!("letter {i} ").repeat(100 + i as usize));
        let tp = tp.clone();
        let c = &c;
        async move {
            let r = echo(c, body.clone(), &[("traceparent", tp.as_str())]).await;
            (body, r)
        }
    }))
    .await;
    for (sent, r) in &answers {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(&r.body, sent);
        let timing = r.header("server-timing").expect("server-timing");
        for hop in ["router", "coordinator", "link", "worker"] {
            assert!(timing.contains(hop), "{hop} missing in {timing}");
        }
        assert!(r.header("x-rma-worker").is_some());
        assert!(
            r.header("traceresponse").is_some_and(|t| t.contains(trace)),
            "the trace goes on"
        );
    }
    let (links, shared) = link_counts(&c, 0).await;
    assert_eq!(links, 1, "one link, however many calls");
    assert!(shared > before, "calls at the same time went over the link");

    // While one call is held at the coordinator, every other shares the link.
    let held = tokio::spawn({
        let client = c.client();
        async move {
            client
                .raw(
                    Method::POST,
                    "api/service/echo?delay_ms=5000",
                    Some("text/plain"),
                    Bytes::from_static(b"held"),
                    &[],
                )
                .await
        }
    });
    eventually("a call held at the coordinator", || async {
        let (_, before) = link_counts(&c, 0).await;
        assert_eq!(
            echo(&c, Bytes::from_static(b"probe"), &[]).await.status,
            200
        );
        (link_counts(&c, 0).await.1 == before + 1).then_some(())
    })
    .await;
    // A body of 200 KB rides it, byte for byte; one of 3 MB (a photo of a letter) goes over
    // HTTP, so it does not hold up the calls behind it on the one connection.
    let bytes = |n: usize| Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let (_, before) = link_counts(&c, 0).await;
    let mid = bytes(200 * 1024);
    let r = echo(&c, mid.clone(), &[]).await;
    assert_eq!((r.status.as_u16(), &r.body), (200, &mid));
    assert_eq!(
        link_counts(&c, 0).await.1,
        before + 1,
        "200 KB over the link"
    );
    let big = bytes(3 * 1024 * 1024);
    let r = echo(&c, big.clone(), &[]).await;
    assert_eq!((r.status.as_u16(), &r.body), (200, &big));
    assert_eq!(link_counts(&c, 0).await.1, before + 1, "3 MB over HTTP");

    // A job: 202 with where to look.
    let r = echo(
        &c,
        Bytes::from_static(b"later"),
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").expect("location").to_owned();
    // The coordinator's refusals pass through as they are.
    let r = c
        .client()
        .raw(
            Method::POST,
            "api/service/echo?delay_ms=nope",
            Some("text/plain"),
            Bytes::from_static(b"x"),
            &[],
        )
        .await
        .expect("answers");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json().expect("json error")["error"].is_string());
    assert_eq!(
        link_counts(&c, 0).await.1,
        before + 3,
        "the job and the refusal over the link"
    );
    let held = held.await.expect("task").expect("answers");
    assert_eq!((held.status.as_u16(), &held.body[..]), (200, &b"held"[..]));

    // The job's result, once done.
    let path = location.trim_start_matches('/').to_owned();
    eventually("the job done", || async {
        let r = c
            .client()
            .raw(
                Method::GET,
                &format!("{path}/result"),
                None,
                Bytes::new(),
                &[],
            )
            .await
            .ok()?;
        (r.status == 200 && &r.body[..] == b"later").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_forwarding_over_http_only_opens_no_link() {
    let mut c = Cluster::start(1, 1).await;
    let mut rc = rma_testkit::router_config(c.dir.path().join("router.db"));
    rc.forward_link = false;
    c.restart_router_with(rc).await;
    eventually("the router routes again", || async {
        let r = c
            .client()
            .raw(
                Method::POST,
                "api/service/echo",
                None,
                Bytes::from_static(b"x"),
                &[],
            )
            .await
            .ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(echo(&c, Bytes::from_static(b"y"), &[]).await.status, 200);
    }
    assert_eq!(link_counts(&c, 0).await, (0, 0));
}

/// Dials coordinator `url`'s router link with these headers; the HTTP status when refused.
async fn dial(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = format!("{}{}", url.replace("http://", "ws://"), relay::PATH)
        .into_client_request()
        .expect("request");
    for (n, v) in headers {
        req.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("dial: {e}"),
    }
}

/// Sends one call and waits for its answer.
async fn call(ws: &mut Ws, id: u64, path: &str, headers: Vec<(String, String)>) -> (u16, Bytes) {
    let msg = RelayMessage::Call {
        id,
        method: "POST".into(),
        path: path.into(),
        headers,
    };
    ws.send(Message::Binary(
        relay::encode(&msg, b"over the link").into(),
    ))
    .await
    .expect("send");
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("frame");
        if let Message::Binary(b) = m {
            match relay::decode(&b).expect("a relay frame") {
                (
                    RelayMessage::Answer {
                        id: got, status, ..
                    },
                    body,
                ) if got == id => {
                    return (status, body);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_router_opens_a_link_and_every_call_is_checked_like_http() {
    let c = Cluster::start(1, 1).await;
    let url = c.coordinators[0].as_ref().expect("alive").url();
    let id = "coord-0";
    let router_for = |aud: &str| {
        rma_testkit::federation()
            .router_credential("router", aud)
            .expect("credential")
            .token
    };

    // No credential, a client key, a worker's credential, the router's for another
    // coordinator: refused before the upgrade.
    assert_eq!(dial(&url, &[]).await.err(), Some(401));
    let client = format!("Bearer {}", rma_testkit::client_key());
    assert_eq!(
        dial(&url, &[("authorization", &client)]).await.err(),
        Some(403)
    );
    let worker = rma_testkit::identity("w-x", Role::Worker).bearer();
    assert_eq!(
        dial(&url, &[("x-rma-router-credential", &worker)])
            .await
            .err(),
        Some(403)
    );
    let other = router_for("someone-else");
    assert_eq!(
        dial(&url, &[("x-rma-router-credential", &other)])
            .await
            .err(),
        Some(403)
    );

    // The router's own opens it; each call is still checked as an HTTP request would be.
    let own = router_for(id);
    let mut ws = dial(&url, &[("x-rma-router-credential", &own)])
        .await
        .expect("the router's credential opens the link");
    let with = |cred: &str| {
        vec![
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("x-rma-router-credential".to_owned(), cred.to_owned()),
        ]
    };
    let (status, body) = call(&mut ws, 1, "/api/service/echo", with(&own)).await;
    assert_eq!((status, &body[..]), (200, &b"over the link"[..]));
    let (status, _) = call(&mut ws, 2, "/api/service/echo", vec![]).await;
    assert_eq!(status, 401, "a call without a credential");
    let (status, _) = call(&mut ws, 3, "/api/service/echo", with(&other)).await;
    assert_eq!(status, 403, "a call with another coordinator's credential");
    // Only service requests travel it.
    let (status, body) = call(&mut ws, 4, "/api/workers", with(&own)).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _) = call(&mut ws, 5, "/api/service/../workers", with(&own)).await;
    assert_ne!(status, 200);

    // Garbage ends the link, not the coordinator.
    ws.send(Message::Binary(Bytes::from_static(b"\0\0\0\x02{]")))
        .await
        .expect("send");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the coordinator closes a link sending garbage"
    );
    assert_eq!(
        echo(&c, Bytes::from_static(b"still"), &[]).await.status,
        200
    );
}
