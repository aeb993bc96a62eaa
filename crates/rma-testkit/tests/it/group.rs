//! Replicated coordinators in one process: three coordinators hold one job log with Raft. Jobs
//! flow through the router; the leader is killed and its data deleted; every acknowledged job
//! still finishes, once, with the right answer, and both survivors agree on every result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rma_client::Client;
use rma_proto::job::JobState;
use rma_testkit::{Cluster, METRICS_TOKEN, coordinator_config, eventually_within, listener};

/// Starts coordinators `coord-1..=n` as one group, registered at the cluster's router.
async fn group_of(c: &mut Cluster, n: u64) -> Vec<String> {
    let mut ls = Vec::new();
    for _ in 0..n {
        ls.push(listener().await);
    }
    let urls: Vec<String> = ls
        .iter()
        .map(|l| format!("http://{}", l.local_addr().expect("addr")))
        .collect();
    let members: BTreeMap<u64, String> = (1..=n)
        .map(|i| {
            let i_us = usize::try_from(i - 1).expect("small");
            (
                i,
                rma_replica::node_addr(&format!("coord-{i}"), &urls[i_us]),
            )
        })
        .collect();
    for (i, l) in (1..=n).zip(ls) {
        let id = format!("coord-{i}");
        let dir = c.dir.path().join(&id);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cc = coordinator_config(&id, Some(c.router_url.clone()));
        cc.group = Some(rma_coordinator::GroupConfig {
            node_id: i,
            members: members.clone(),
            join: None,
            replace: None,
            path: dir.join("replica.db"),
            snapshot_every: 500,
        });
        c.coordinators
            .push(Some(rma_coordinator::spawn(cc, l).expect("coordinator")));
    }
    urls
}

fn member(url: &str) -> Client {
    Client::with_timeout(url, Duration::from_secs(10))
        .expect("client")
        .with_bearer(METRICS_TOKEN)
}

async fn status(url: &str) -> Option<serde_json::Value> {
    let r = member(url)
        .raw(
            reqwest::Method::GET,
            "/api/raft/status",
            None,
            Bytes::new(),
            &[],
        )
        .await
        .ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

/// The leader's node id, once every living member agrees on one.
async fn leader(urls: &[(u64, String)]) -> u64 {
    eventually_within(
        "the group has a leader",
        Duration::from_secs(20),
        || async {
            let mut seen = Vec::new();
            for (_, u) in urls {
                seen.push(status(u).await?["leader"].as_u64()?);
            }
            seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0])
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_finishes_every_acknowledged_job_when_its_leader_dies() {
    let mut c = Cluster::start(0, 0).await;
    let urls = group_of(&mut c, 3).await;
    for w in ["worker-0", "worker-1", "worker-2"] {
        c.add_worker(w).await;
    }
    c.wait_linked().await;
    let mut living: Vec<(u64, String)> = (1..=3).zip(urls.iter().cloned()).collect();
    let first = leader(&living).await;
    // The group holds where every worker is and what it is sent.
    let placed = |s: &serde_json::Value| -> usize {
        s["placements"].as_object().map_or(0, |m| {
            m.values()
                .map(|p| p["workers"].as_object().map_or(0, |w| w.len()))
                .sum()
        })
    };
    eventually_within(
        "the group holds all three workers' placement",
        Duration::from_secs(20),
        || async { (placed(&status(&urls[0]).await?) == 3).then_some(()) },
    )
    .await;

    // Jobs through the router, each with its own body.
    let admin = c.client();
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let submit = |i: usize| {
        let admin = admin.clone();
        async move {
            let body = format!("letter {i}").into_bytes();
            admin
                .submit_job(
                    "echo",
                    "delay_ms=300",
                    "text/plain",
                    Bytes::from(body.clone()),
                )
                .await
                .map(|j| (j.job_id, body))
        }
    };
    for i in 0..12 {
        acked.push(submit(i).await.expect("accepted while all are up"));
    }
    // A document larger than an HTTP framework's default body limit replicates too.
    let big = vec![b'x'; 3 << 20];
    let j = admin
        .submit_job(
            "echo",
            "",
            "application/octet-stream",
            Bytes::from(big.clone()),
        )
        .await
        .expect("a 3 MB job is accepted");
    acked.push((j.job_id, big));

    // The leader dies for good: killed, its data gone.
    let idx = usize::try_from(first - 1).expect("small");
    c.kill_coordinator(idx);
    let _ = std::fs::remove_dir_all(c.dir.path().join(format!("coord-{first}")));
    let killed = Instant::now();
    living.retain(|(id, _)| *id != first);

    // Jobs flow again once a new leader is elected.
    let mut refused = 0;
    let mut i = 12;
    let flowing = loop {
        match submit(i).await {
            Ok(j) => {
                acked.push(j);
                break killed.elapsed();
            }
            Err(_) => refused += 1,
        }
        i += 1;
        assert!(killed.elapsed() < Duration::from_secs(30), "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let second = leader(&living).await;
    assert_ne!(second, first);
    for _ in 0..6 {
        i += 1;
        acked.push(submit(i).await.expect("accepted by the new leader"));
    }

    // Every acknowledged job ends, once, with its own body, the same at both survivors.
    for (id, body) in &acked {
        let view = eventually_within(
            &format!("job {id} finishes"),
            Duration::from_secs(60),
            || async {
                let v = admin.job(id).await.ok()?;
                (v.state == JobState::Done).then_some(v)
            },
        )
        .await;
        let got = admin.job_result(id).await.expect("result");
        assert_eq!(&got.body[..], &body[..], "job {id}: {view:?}");
        for (_, u) in &living {
            let r = member(u)
                .job_result(id)
                .await
                .expect("result at a survivor");
            assert_eq!(&r.body[..], &body[..], "{u} agrees on {id}");
        }
    }
    let done = killed.elapsed();
    // The dead leader's workers re-homed; the group's placement says where they are now.
    let survivor = living[0].1.clone();
    eventually_within(
        "placement follows the re-homed workers",
        Duration::from_secs(30),
        || {
            let survivor = survivor.clone();
            async move {
                let s = status(&survivor).await?;
                let at_dead = s["placements"][first.to_string()]["workers"]
                    .as_object()
                    .map_or(0, |w| w.len());
                (at_dead == 0 && placed(&s) == 3).then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "group: leader {first} killed; new leader {second}; jobs accepted again after {} ms ({refused} refused meanwhile); all {} acknowledged jobs done {} ms after the kill",
        flowing.as_millis(),
        acked.len(),
        done.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_endpoints_refuse_strangers_garbage_and_stale_terms_without_touching_the_log() {
    let mut c = Cluster::start(0, 0).await;
    let urls = group_of(&mut c, 3).await;
    let living: Vec<(u64, String)> = (1..=3).zip(urls.iter().cloned()).collect();
    let lead = leader(&living).await;
    let before = status(&urls[0]).await.expect("status");
    let http = reqwest::Client::new();
    let bearer = |id: &str, role| rma_testkit::identity(id, role).bearer();
    let vote = serde_json::json!({
        "vote": {"leader_id": {"term": 0, "node_id": 2}, "committed": false},
        "last_log_id": null
    });
    let post = |path: &str, token: Option<String>, body: String| {
        let mut r = http
            .post(format!("{}{path}", urls[0]))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let code = |r: reqwest::Response| r.status().as_u16();
    // No credential, a worker's, a coordinator's that is not a member: refused.
    let r = post("/api/raft/vote", None, vote.to_string())
        .await
        .expect("sent");
    assert_eq!(code(r), 401);
    let r = post(
        "/api/raft/append",
        Some(bearer("worker-9", rma_auth::Role::Worker)),
        vote.to_string(),
    )
    .await
    .expect("sent");
    assert_eq!(code(r), 403);
    let r = post(
        "/api/raft/vote",
        Some(bearer("coord-9", rma_auth::Role::Coordinator)),
        vote.to_string(),
    )
    .await
    .expect("sent");
    assert_eq!(r.status().as_u16(), 403);
    let body: serde_json::Value = r.json().await.expect("json error");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a member")),
        "{body}"
    );
    // A member's credential with garbage: 400 with the usual error body.
    let member = Some(bearer("coord-2", rma_auth::Role::Coordinator));
    for garbage in ["{", "[1,2,3]", "{\"vote\": \"yes\"}"] {
        let r = post("/api/raft/vote", member.clone(), garbage.into())
            .await
            .expect("sent");
        assert_eq!(r.status().as_u16(), 400, "{garbage}");
        let e: serde_json::Value = r.json().await.expect("json error");
        assert_eq!(e["error"], "bad_request", "{e}");
    }
    // A stale term is answered (not granted) and changes nothing.
    let r = post("/api/raft/vote", member.clone(), vote.to_string())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["Ok"]["vote_granted"], false, "{v}");
    // Joining as somebody else is refused.
    let r = post(
        "/api/raft/join",
        member.clone(),
        serde_json::json!({"node_id": 9, "addr": "coord-1@http://127.0.0.1:1"}).to_string(),
    )
    .await
    .expect("sent");
    assert_eq!(r.status().as_u16(), 403);
    let after = status(&urls[0]).await.expect("status");
    assert_eq!(after["leader"], before["leader"]);
    assert_eq!(after["term"], before["term"]);
    assert_eq!(after["voters"], before["voters"]);
    assert_eq!(leader(&living).await, lead);
    // Blobs: only members keep or give them, and a body must hash to its name.
    let letter = b"a letter".to_vec();
    let hash = rma_replica::content_hash(&letter);
    let put = |token: Option<String>, name: &str, body: Vec<u8>| {
        let mut r = http
            .put(format!("{}/api/raft/blob/{name}", urls[0]))
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = put(None, &hash, letter.clone()).await.expect("sent");
    assert_eq!(r.status().as_u16(), 401);
    let stranger = Some(bearer("coord-9", rma_auth::Role::Coordinator));
    let r = put(stranger.clone(), &hash, letter.clone())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 403);
    let r = put(member.clone(), &hash, b"another letter".to_vec())
        .await
        .expect("sent");
    assert_eq!(
        r.status().as_u16(),
        400,
        "a body that does not hash to its name"
    );
    let get = |token: Option<String>, name: String| {
        let mut r = http.get(format!("{}/api/raft/blob/{name}", urls[0]));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = get(member.clone(), hash.clone()).await.expect("sent");
    assert_eq!(r.status().as_u16(), 404, "nothing was kept");
    let r = put(member.clone(), &hash, letter.clone())
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let r = get(stranger, hash.clone()).await.expect("sent");
    assert_eq!(r.status().as_u16(), 403);
    let r = get(member.clone(), hash.clone()).await.expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), letter);
    // Status and the job list need the metrics token.
    for path in ["/api/raft/status", "/api/raft/jobs"] {
        let r = http
            .get(format!("{}{path}", urls[0]))
            .bearer_auth(bearer("coord-2", rma_auth::Role::Coordinator))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    // A coordinator that is not in a group says so.
    let lone = rma_coordinator::spawn(coordinator_config("coord-lone", None), listener().await)
        .expect("coordinator");
    let r = http
        .post(format!("{}/api/raft/vote", lone.url()))
        .bearer_auth(bearer("coord-2", rma_auth::Role::Coordinator))
        .header("content-type", "application/json")
        .body(vote.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_s_correction_of_a_replicated_job_is_held_by_every_member() {
    let mut c = Cluster::start(0, 0).await;
    let urls = group_of(&mut c, 3).await;
    c.add_worker("worker-0").await;
    c.wait_linked().await;
    let living: Vec<(u64, String)> = (1..=3).zip(urls.iter().cloned()).collect();
    leader(&living).await;
    let admin = c.client();
    let text = "Council Tax reminder\nAmount due: £187.45 by 1 March 2027";
    let job = admin
        .submit_job("extract", "", "text/plain", Bytes::from(text))
        .await
        .expect("accepted")
        .job_id;
    eventually_within("the letter is read", Duration::from_secs(30), || async {
        (admin.job(&job).await.ok()?.state == JobState::Done).then_some(())
    })
    .await;
    let correct = |body: serde_json::Value| {
        let admin = admin.clone();
        let path = format!("api/jobs/{job}/corrections");
        async move {
            admin
                .raw(
                    reqwest::Method::POST,
                    &path,
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    &[],
                )
                .await
                .expect("sent")
        }
    };
    let r = correct(serde_json::json!({"field": "amounts", "index": 0, "value": "187.46"})).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    // Every member holds it.
    for u in &urls {
        let v = eventually_within(
            "the correction reaches every member",
            Duration::from_secs(10),
            || async {
                let v = member(u).job(&job).await.ok()?;
                (v.corrections.len() == 1).then_some(v)
            },
        )
        .await;
        assert_eq!(v.corrections[0].value, "187.46");
        assert_eq!(v.corrections[0].was, "187.45");
    }
    // A correction that names no fact is refused and kept nowhere.
    let r = correct(serde_json::json!({"field": "amounts", "index": 9, "value": "1.00"})).await;
    assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(admin.job(&job).await.expect("job").corrections.len(), 1);
}
