//! Self-healing placement through a real federation: workers that start on `echo` take up
//! `ocr` live when letters queue for it, show it in the router's topology and in their own
//! status, and give it back once the queue has drained — no restart, no re-registration.

use std::time::Duration;

use bytes::Bytes;
use rma_proto::api::Topology;
use rma_proto::job::JobState;
use rma_testkit::{Cluster, eventually, eventually_within};

fn placed(t: &Topology) -> Vec<(String, Vec<String>)> {
    t.workers
        .iter()
        .filter(|w| !w.placed.is_empty())
        .map(|w| (w.id.clone(), w.placed.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_take_up_a_queued_service_live_and_give_it_back() {
    let mut c = Cluster::start(1, 0).await;
    for id in ["w-echo-1", "w-echo-2"] {
        c.add_worker_with(id, |w| w.services = Some(vec!["echo".into()]))
            .await;
    }
    c.wait_linked().await;
    let admin = c.client();
    let t = admin.topology().await.expect("topology");
    for w in &t.workers {
        assert_eq!(w.services, ["echo"], "{} starts on echo only", w.id);
    }
    // Letters arrive.
    let page =
        rma_fixtures::render_page("Council Tax reminder\nAmount due 187.45", 36.0).expect("render");
    let png = Bytes::from(rma_fixtures::png(&page));
    let mut jobs = Vec::new();
    for _ in 0..4 {
        let j = admin
            .submit_job("ocr", "", "image/png", png.clone())
            .await
            .expect("job accepted");
        jobs.push(j.job_id);
    }

    // A worker was moved onto OCR without a restart; the router's topology and the worker's
    // own status say so.
    let lent = eventually("the router shows a worker lent ocr", || {
        let admin = admin.clone();
        async move {
            let t = admin.topology().await.ok()?;
            placed(&t).into_iter().next()
        }
    })
    .await;
    assert_eq!(lent.1, ["ocr"]);
    let i = usize::from(lent.0 == "w-echo-2");
    let status = c.workers[i].as_ref().expect("worker").watch();
    eventually("the lent worker knows its services", || {
        let s = status.borrow().clone();
        async move {
            s.assigned_services
                .contains(&"ocr".to_owned())
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        status.borrow().registrations,
        1,
        "moved live, not by registering again"
    );

    // Every letter is read.
    for id in &jobs {
        let view = eventually_within("the job finishes", Duration::from_secs(60), || {
            let admin = admin.clone();
            let id = id.clone();
            async move {
                let v = admin.job(&id).await.ok()?;
                matches!(v.state, JobState::Done | JobState::Failed).then_some(v)
            }
        })
        .await;
        assert_eq!(view.state, JobState::Done, "{view:?}");
        let text = admin.job_result(id).await.expect("result");
        assert!(
            String::from_utf8_lossy(&text.body).contains("187"),
            "{:?}",
            text.body
        );
    }

    // The queue drained: OCR is taken back, echo stays.
    eventually_within("ocr taken back", Duration::from_secs(20), || {
        let admin = admin.clone();
        async move {
            let t = admin.topology().await.ok()?;
            (placed(&t).is_empty() && t.workers.iter().all(|w| w.services == ["echo"]))
                .then_some(())
        }
    })
    .await;
    eventually("the worker hears it", || {
        let s = status.borrow().clone();
        async move { (s.assigned_services == ["echo"]).then_some(()) }
    })
    .await;
    // Echo never stopped.
    let r = admin
        .call_service("echo", "", "text/plain", Bytes::from_static(b"still"))
        .await
        .expect("echo");
    assert_eq!(r.status, 200);
    let metrics = c
        .coordinator_client(0)
        .raw(reqwest::Method::GET, "/metrics", None, Bytes::new(), &[])
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        r#"rma_coordinator_placement_moves_total{service="ocr",move="assign"}"#,
        r#"rma_coordinator_placement_moves_total{service="ocr",move="withdraw"}"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let _ = &mut c;
}
