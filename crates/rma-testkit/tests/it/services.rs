//! The document services through the federation: router → coordinator → worker, real
//! Tesseract, real Poppler, generated letters.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use rma_client::{Client, ClientError, RawResponse};
use rma_fixtures::{
    PdfPage, char_accuracy, jpeg, letters, pdf, pdf_with_text, photograph, png, render_page,
};
use rma_proto::WorkerType;
use rma_proto::job::{JobAccepted, JobProgress, JobState, JobView};
use rma_proto::results::ServiceResult;
use rma_testkit::{Cluster, eventually, eventually_within};
use serde_json::Value;

fn json(r: &RawResponse) -> Value {
    assert!(
        r.status.is_success(),
        "{} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    r.json().expect("JSON")
}

/// Polls a job (through `client`) until it is in `state`; at most 60 s.
async fn job_in_state(client: &Client, id: &str, state: JobState) -> JobView {
    eventually_within(
        &format!("job {id} {}", state.as_str()),
        Duration::from_secs(60),
        || async move {
            let v = client.job(id).await.ok()?;
            (v.state == state).then_some(v)
        },
    )
    .await
}

fn status_and_code(r: &RawResponse) -> (u16, String) {
    let code = r
        .json()
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (r.status.as_u16(), code)
}

/// One CPU worker and one storage worker behind one coordinator.
async fn cluster_with_storage() -> Cluster {
    let mut c = Cluster::start(1, 1).await;
    c.add_worker_with("storage-0", |w| w.worker_type = Some(WorkerType::Storage))
        .await;
    c.wait_linked().await;
    let client = c.client();
    eventually("router routes store", || {
        let client = client.clone();
        async move {
            let r = client
                .call_service("store", "", "text/plain", Bytes::from_static(b"warm-up"))
                .await
                .ok()?;
            (r.status == 200).then_some(())
        }
    })
    .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_reads_clean_letters_through_the_federation() {
    let c = Cluster::start(1, 1).await;
    for l in [letters::COUNCIL_TAX, letters::BANK_STATEMENT] {
        let page = render_page(l.text, 34.0).expect("render");
        let r = c
            .client()
            .call_service("ocr", "", "image/png", png(&page).into())
            .await
            .expect("ocr");
        let v = json(&r);
        let acc = char_accuracy(l.text, v["text"].as_str().expect("text"));
        assert!(acc >= 0.95, "{}: {:.1} %", l.name, acc * 100.0);
        assert_eq!(v["pages"].as_array().expect("pages").len(), 1);
        assert!(v["confidence"].as_f64().expect("confidence") > 80.0);
        assert_eq!(r.header("x-rma-worker"), Some("worker-0"));
    }
    // Word boxes on request, with the words where they are.
    let page = render_page("Amount due £187.45", 40.0).expect("render");
    let v = json(
        &c.client()
            .call_service("ocr", "boxes=true", "image/png", png(&page).into())
            .await
            .expect("ocr"),
    );
    let words = v["pages"][0]["words"].as_array().expect("words");
    let amount = words
        .iter()
        .find(|w| w["text"] == "£187.45")
        .expect("the amount is a word");
    assert!(amount["x"].as_u64().expect("x") > words[0]["x"].as_u64().expect("x"));
    assert!(amount["w"].as_u64().expect("w") > 0);
    // A language that is not installed is a clear 400.
    let r = c
        .client()
        .call_service("ocr", "lang=klingon", "image/png", png(&page).into())
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (400, "bad_request".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_text_reads_the_layer_and_ocrs_the_scanned_pages() {
    let c = Cluster::start(1, 1).await;
    let scan = render_page(letters::UTILITY.text, 34.0).expect("render");
    let doc = pdf(&[
        PdfPage::Text(letters::COUNCIL_TAX.text),
        PdfPage::Scan(&scan),
        PdfPage::Text("Page three says £12.50"),
    ]);
    let v = json(
        &c.client()
            .call_service("pdf-text", "", "application/pdf", doc.into())
            .await
            .expect("pdf-text"),
    );
    assert_eq!(v["page_count"], 3);
    assert_eq!(
        v["ocr_pages"],
        serde_json::json!([2]),
        "only the scanned page is OCR'd"
    );
    let pages = v["pages"].as_array().expect("pages");
    assert_eq!(pages[0]["source"], "text");
    assert_eq!(pages[1]["source"], "ocr");
    assert!(
        pages[0]["text"]
            .as_str()
            .expect("t")
            .contains("COUNCIL TAX REMINDER NOTICE")
    );
    assert!(char_accuracy(letters::UTILITY.text, pages[1]["text"].as_str().expect("t")) >= 0.95);
    assert!(pages[2]["text"].as_str().expect("t").contains("£12.50"));
    // Without OCR, the scanned page is reported as having no text.
    let doc = pdf(&[PdfPage::Scan(&scan)]);
    let v = json(
        &c.client()
            .call_service("pdf-text", "ocr=false", "application/pdf", doc.into())
            .await
            .expect("pdf-text"),
    );
    assert_eq!(v["pages_without_text"], serde_json::json!([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhance_rescues_a_phone_photo() {
    let c = Cluster::start(1, 1).await;
    let l = letters::DEBT_COLLECTION;
    let photo = jpeg(
        &photograph(&render_page(l.text, 34.0).expect("render"), -2.0, 11),
        80,
    );
    let raw = json(
        &c.client()
            .call_service("ocr", "", "image/jpeg", photo.clone().into())
            .await
            .expect("ocr"),
    );
    let enhanced = c
        .client()
        .call_service("enhance", "", "image/jpeg", photo.into())
        .await
        .expect("enhance");
    assert_eq!(enhanced.status, 200);
    assert_eq!(enhanced.header("content-type"), Some("image/png"));
    assert!(enhanced.body.starts_with(b"\x89PNG"));
    let after = json(
        &c.client()
            .call_service("ocr", "", "image/png", enhanced.body.clone())
            .await
            .expect("ocr"),
    );
    let a = char_accuracy(l.text, raw["text"].as_str().expect("t"));
    let b = char_accuracy(l.text, after["text"].as_str().expect("t"));
    eprintln!(
        "debt collection photo: raw {:.1} %, enhanced {:.1} %",
        a * 100.0,
        b * 100.0
    );
    assert!(b > a + 0.05 && b >= 0.9, "raw {a:.3}, enhanced {b:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_finds_the_planted_facts() {
    let c = Cluster::start(1, 1).await;
    for l in letters::ALL {
        let v = json(
            &c.client()
                .call_service(
                    "extract",
                    "",
                    "text/plain; charset=utf-8",
                    Bytes::from_static(l.text.as_bytes()),
                )
                .await
                .expect("extract"),
        );
        assert_eq!(v["letter_type"], l.letter_type, "{}", l.name);
        let amounts: Vec<&str> = v["amounts"]
            .as_array()
            .expect("a")
            .iter()
            .filter_map(|a| a["value"].as_str())
            .collect();
        for a in l.amounts {
            assert!(amounts.contains(a), "{}: {a} in {amounts:?}", l.name);
        }
        assert_eq!(v["sender"]["name"], l.sender);
    }
    // A scanned letter is read first, then its facts extracted.
    let page = render_page(letters::COUNTY_COURT.text, 34.0).expect("render");
    let v = json(
        &c.client()
            .call_service("extract", "", "image/png", png(&page).into())
            .await
            .expect("extract"),
    );
    assert_eq!(v["text_source"], "ocr");
    assert_eq!(v["letter_type"], "county_court");
    let refs: Vec<&str> = v["references"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|a| a["value"].as_str())
        .collect();
    assert!(refs.contains(&"K9QZ1234"), "{refs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_that_lie_or_are_too_big_are_refused() {
    let c = Cluster::start(1, 1).await;
    let page = png(&render_page("hello", 30.0).expect("render"));
    let r = c
        .client()
        .call_service("ocr", "", "application/pdf", page.clone().into())
        .await
        .expect("answer");
    assert_eq!(
        status_and_code(&r),
        (415, "unsupported_media_type".into()),
        "a PNG claiming to be a PDF"
    );
    let r = c
        .client()
        .call_service("ocr", "", "image/png", Bytes::from_static(b"plain words"))
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (415, "unsupported_media_type".into()));
    let r = c
        .client()
        .call_service("pdf-text", "", "image/png", page.clone().into())
        .await
        .expect("answer");
    assert_eq!(
        status_and_code(&r),
        (415, "unsupported_media_type".into()),
        "an image is not a PDF"
    );
    let r = c
        .client()
        .call_service(
            "process",
            "",
            "application/zip",
            Bytes::from_static(b"PK\x03\x04zip"),
        )
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (415, "unsupported_media_type".into()));
    // A decompression bomb: a tiny file announcing 40 000 × 40 000 pixels.
    let bomb = rma_fixtures::png_bomb(40_000, 40_000);
    let r = c
        .client()
        .call_service("ocr", "", "image/png", bomb.clone().into())
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (413, "payload_too_large".into()));
    let r = c
        .client()
        .call_service("enhance", "", "image/png", bomb.into())
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (413, "payload_too_large".into()));
    // A PDF over the page limit.
    let many: Vec<&str> = vec!["page"; 201];
    let r = c
        .client()
        .call_service(
            "pdf-text",
            "",
            "application/pdf",
            pdf_with_text(&many).into(),
        )
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (413, "payload_too_large".into()));
    // Corrupt PDF.
    let r = c
        .client()
        .call_service(
            "pdf-text",
            "",
            "application/pdf",
            Bytes::from_static(b"%PDF-1.4\nnonsense"),
        )
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (400, "bad_request".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_keeps_documents_by_content_and_refuses_bad_hashes() {
    let c = cluster_with_storage().await;
    let doc = pdf_with_text(&["A letter to keep"]);
    let v = json(
        &c.client()
            .call_service("store", "", "application/pdf", doc.clone().into())
            .await
            .expect("store"),
    );
    let hash = v["hash"].as_str().expect("hash").to_owned();
    // The storage worker was given ciphertext: the hash is not the document's, and nothing on
    // its disk holds a word of it.
    assert_eq!(hash.len(), 64);
    assert_ne!(hash, blake3::hash(&doc).to_hex().as_str());
    let mut files = vec![c.dir.path().join("storage-0")];
    let mut seen = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("dir")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            let bytes = std::fs::read(&p).expect("file");
            for needle in [&b"A letter to keep"[..], b"%PDF", b"application/pdf"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds {:?}",
                    p.display(),
                    String::from_utf8_lossy(needle)
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "the object is on the storage worker's disk");
    assert_eq!(v["size"], doc.len());
    assert_eq!(v["content_type"], "application/pdf");
    let again = json(
        &c.client()
            .call_service("store", "", "application/pdf", doc.clone().into())
            .await
            .expect("store"),
    );
    assert_eq!(again["created"], false);
    let back = c
        .client()
        .raw(
            Method::GET,
            &format!("api/service/store/{hash}"),
            None,
            Bytes::new(),
            &[],
        )
        .await
        .expect("get");
    assert_eq!(back.status, 200);
    assert_eq!(back.body, Bytes::from(doc));
    assert_eq!(back.header("content-type"), Some("application/pdf"));
    assert_eq!(back.header("x-rma-worker"), Some("storage-0"));
    let bad = c
        .client()
        .raw(
            Method::GET,
            "api/service/store/..%2F..%2Fetc%2Fpasswd",
            None,
            Bytes::new(),
            &[],
        )
        .await
        .expect("get");
    assert_eq!(status_and_code(&bad), (400, "bad_request".into()));
    let missing = c
        .client()
        .raw(
            Method::GET,
            &format!("api/service/store/{}", "0".repeat(64)),
            None,
            Bytes::new(),
            &[],
        )
        .await
        .expect("get");
    assert_eq!(status_and_code(&missing), (404, "not_found".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_answered_from_the_cache() {
    let c = cluster_with_storage().await;
    let page = png(&render_page(letters::UTILITY.text, 34.0).expect("render"));
    let first = c
        .client()
        .call_service("ocr", "", "image/png", page.clone().into())
        .await
        .expect("ocr");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-rma-cache"), Some("miss"));
    let client = c.client();
    let hit = eventually("the second request hits the cache", || {
        let (client, page) = (client.clone(), page.clone());
        async move {
            let r = client
                .call_service("ocr", "", "image/png", page.into())
                .await
                .ok()?;
            (r.header("x-rma-cache") == Some("hit")).then_some(r)
        }
    })
    .await;
    assert_eq!(hit.body, first.body, "the cached answer is the answer");
    // Other options are another key.
    let other = c
        .client()
        .call_service("ocr", "boxes=true", "image/png", page.into())
        .await
        .expect("ocr");
    assert_eq!(other.header("x-rma-cache"), Some("miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_reads_a_photo_and_a_pdf_end_to_end_and_stores_them() {
    let c = cluster_with_storage().await;
    let l = letters::COUNCIL_TAX;
    let photo = jpeg(
        &photograph(&render_page(l.text, 34.0).expect("render"), 2.0, 5),
        80,
    );
    let r = c
        .client()
        .call_service("process", "", "image/jpeg", photo.clone().into())
        .await
        .expect("process");
    let v = json(&r);
    assert_eq!(v["kind"], "image");
    assert!(char_accuracy(l.text, v["text"].as_str().expect("text")) >= 0.95);
    assert_eq!(v["facts"]["letter_type"], "council_tax");
    let amounts: Vec<&str> = v["facts"]["amounts"]
        .as_array()
        .expect("a")
        .iter()
        .filter_map(|a| a["value"].as_str())
        .collect();
    assert!(
        amounts.contains(&"187.45") && amounts.contains(&"1312.15"),
        "{amounts:?}"
    );
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    // Two readings: the cleaned image and the photo as sent.
    assert_eq!(
        steps,
        [
            "store", "enhance", "store", "ocr", "ocr", "extract", "store"
        ]
    );
    for s in v["steps"].as_array().expect("steps") {
        let expected = if s["step"] == "store" {
            "storage-0"
        } else {
            ""
        };
        if !expected.is_empty() {
            assert_eq!(s["worker"], expected, "store runs on the storage worker");
        }
        assert_eq!(s["coordinator"], "coord-0");
    }
    // The original is stored as sent, the enhanced image beside it.
    let original = v["stored"]["original"]["hash"].as_str().expect("hash");
    let back = c
        .client()
        .raw(
            Method::GET,
            &format!("api/service/store/{original}"),
            None,
            Bytes::new(),
            &[],
        )
        .await
        .expect("get");
    assert_eq!(back.body, Bytes::from(photo));
    assert_eq!(v["stored"]["enhanced"]["content_type"], "image/png");
    assert!(v["stored"]["result"]["hash"].as_str().is_some());

    let doc = pdf_with_text(&[letters::UNIVERSAL_CREDIT.text]);
    let v = json(
        &c.client()
            .call_service("process", "", "application/pdf", doc.into())
            .await
            .expect("process"),
    );
    assert_eq!(v["kind"], "pdf");
    assert_eq!(v["facts"]["letter_type"], "universal_credit");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(steps, ["store", "pdf-text", "extract", "store"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_report_progress_and_results_through_the_router() {
    let c = cluster_with_storage().await;
    let scan = render_page(letters::DEBT_COLLECTION.text, 34.0).expect("render");
    let doc = pdf(&[PdfPage::Scan(&scan), PdfPage::Scan(&scan)]);
    let r = c
        .client()
        .raw(
            Method::POST,
            "api/service/ocr",
            Some("application/pdf"),
            doc.into(),
            &[("prefer", "respond-async")],
        )
        .await
        .expect("submit");
    assert_eq!(r.status, 202);
    let location = r.header("location").expect("location").to_owned();
    let accepted: JobAccepted = r.parse().expect("job accepted");
    assert_eq!(location, format!("/api/jobs/{}", accepted.job_id));
    assert_eq!(accepted.location, location);
    let client = c.client();
    let done = job_in_state(&client, &accepted.job_id, JobState::Done).await;
    assert_eq!(
        done.progress,
        JobProgress { done: 2, total: 2 },
        "pages done of total"
    );
    let Some(ServiceResult::Ocr(ocr)) = &done.result else {
        panic!("an OCR result: {:?}", done.result)
    };
    assert_eq!(ocr.pages.len(), 2);
    let worker = done.worker.as_deref().expect("worker");
    assert!(worker == "worker-0" || worker == "storage-0", "{worker}");
    assert!(done.run_ms.is_some() && done.finished_at.is_some());

    // A job whose answer is not JSON (an enhanced image) is fetched from its result URL.
    let photo = jpeg(&photograph(&scan, 1.0, 3), 80);
    let job = client
        .submit_job("enhance", "", "image/jpeg", photo.into())
        .await
        .expect("submit");
    let done = job_in_state(&client, &job.job_id, JobState::Done).await;
    assert!(done.result.is_none(), "not JSON, so not inline");
    assert_eq!(
        done.result_url.as_deref(),
        Some(format!("/api/jobs/{}/result", job.job_id).as_str())
    );
    let png = client.job_result(&job.job_id).await.expect("result");
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG"));

    // A failing job says why; an unknown one is 404; a malformed id is 400.
    let job = client
        .submit_job("ocr", "", "image/png", Bytes::from_static(b"not an image"))
        .await
        .expect("submit");
    let failed = job_in_state(&client, &job.job_id, JobState::Failed).await;
    assert_eq!(failed.status, Some(415));
    assert_eq!(failed.error_code.as_deref(), Some("unsupported_media_type"));
    assert!(
        failed
            .error
            .as_deref()
            .expect("error")
            .contains("not a PNG"),
        "{failed:?}"
    );
    let api_error = |e: ClientError| match e {
        ClientError::Api { status, body } => (status.as_u16(), body.error),
        other => panic!("an error answer, not {other}"),
    };
    let e = client
        .job("coord-0-j0000000000000000")
        .await
        .expect_err("unknown");
    assert_eq!(api_error(e), (404, "not_found".into()));
    let e = client.job("nonsense").await.expect_err("malformed");
    assert_eq!(api_error(e), (400, "bad_request".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_coordinator_restart() {
    rma_testkit::init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("jobs.db");
    let l = rma_testkit::listener().await;
    let addr = l.local_addr().expect("addr");
    let config = || {
        let mut c = rma_testkit::coordinator_config("durable", None);
        c.jobs_db = Some(db.clone());
        c
    };
    let coord = rma_coordinator::spawn(config(), l).expect("coordinator");
    let client = rma_testkit::coordinator_services(&coord.url());
    // No worker yet: the jobs wait in the queue.
    let mut ids = Vec::new();
    for i in 0..3 {
        let text = format!("Council Tax reminder number {i}: £{i}0.00 due");
        let job = client
            .submit_job("extract", "", "text/plain", text.into())
            .await
            .expect("submit");
        assert_eq!(job.state, JobState::Queued);
        ids.push(job.job_id);
    }
    // It waits: queued, or briefly running while the runner looks for a worker and finds none.
    let v = client.job(&ids[0]).await.expect("get");
    assert!(
        matches!(v.state, JobState::Queued | JobState::Running),
        "{:?}",
        v.state
    );
    drop(coord);

    let l = eventually("port free", || async {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    let coord = rma_coordinator::spawn(config(), l).expect("coordinator again");
    let _w = rma_worker::spawn(rma_testkit::worker_config(
        &coord.url(),
        "late-worker",
        dir.path().join("w"),
    ))
    .expect("worker");
    for (i, id) in ids.iter().enumerate() {
        let v = job_in_state(&client, id, JobState::Done).await;
        let facts = v.result.as_ref().and_then(|r| r.facts()).expect("facts");
        assert_eq!(facts.letter_type, "council_tax");
        assert_eq!(facts.amounts[0].value, format!("{i}0.00"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_proxies_to_an_openai_compatible_backend() {
    use axum::{Json, Router, routing::post};
    // A small local server that speaks the chat/completions shape.
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|Json(req): Json<Value>| async move {
            let last = req["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone()).unwrap_or_default();
            Json(serde_json::json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": req["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("you said: {}", last.as_str().unwrap_or(""))}, "finish_reason": "stop"}],
            }))
        }),
    );
    let l = rma_testkit::listener().await;
    let backend = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await });

    let mut c = Cluster::start(1, 1).await;
    let r = c
        .client()
        .call_service("ai", "", "application/json", Bytes::from_static(b"{}"))
        .await
        .expect("answer");
    assert_eq!(
        status_and_code(&r),
        (503, "no_worker".into()),
        "no worker offers ai without a backend"
    );
    c.add_worker_with("ai-0", |w| w.ai_backend = Some(backend.clone()))
        .await;
    c.wait_linked().await;
    let body =
        serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": "hello"}]});
    let client = c.client();
    let r = eventually("ai routed", || {
        let client = client.clone();
        let body = body.to_string();
        async move {
            let r = client
                .raw(
                    Method::POST,
                    "api/service/ai/v1/chat/completions",
                    Some("application/json"),
                    body.into(),
                    &[],
                )
                .await
                .ok()?;
            (r.status == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(r.header("x-rma-worker"), Some("ai-0"));
    let v = json(&r);
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["choices"][0]["message"]["content"], "you said: hello");
    let r = c
        .client()
        .raw(
            Method::POST,
            "api/service/ai/admin/shutdown",
            Some("application/json"),
            Bytes::new(),
            &[],
        )
        .await
        .expect("answer");
    assert_eq!(status_and_code(&r), (404, "not_found".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_deletes_its_result_and_every_stored_copy() {
    let c = cluster_with_storage().await;
    let client = c.client();
    let doc = pdf_with_text(&["A letter to forget"]);
    let accepted = client
        .submit_job("process", "", "application/pdf", doc.into())
        .await
        .expect("submitted");
    // 128 random bits in the id.
    let tail = accepted.job_id.rsplit_once("-j").expect("job id").1;
    assert_eq!(tail.len(), 32, "{}", accepted.job_id);
    let done = client
        .wait(&accepted.job_id, Duration::from_secs(60), |_| {})
        .await
        .expect("done");
    assert_eq!(done.state, JobState::Done);
    let result = serde_json::to_value(&done.result).expect("json");
    let hashes: Vec<String> = ["original", "result"]
        .iter()
        .map(|k| {
            result["stored"][k]["hash"]
                .as_str()
                .expect("stored")
                .to_owned()
        })
        .collect();
    let get_stored = async |h: &str| {
        client
            .raw(
                Method::GET,
                &format!("api/service/store/{h}"),
                None,
                Bytes::new(),
                &[],
            )
            .await
            .expect("get")
            .status
    };
    for h in &hashes {
        assert_eq!(get_stored(h).await, 200, "stored before the delete");
    }
    // The steps' answers were cached (sealed) too; the job names their entries.
    let cache_keys: Vec<String> = result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["cache_key"].as_str().map(str::to_owned))
        .collect();
    assert!(!cache_keys.is_empty(), "{result}");
    let get_cached = async |k: &str| {
        eventually("the cache entry is there", || async {
            let r = client
                .raw(
                    Method::GET,
                    &format!("api/service/cache/{k}"),
                    None,
                    Bytes::new(),
                    &[],
                )
                .await
                .ok()?;
            (r.status == 200).then_some(())
        })
        .await
    };
    for k in &cache_keys {
        get_cached(k).await;
    }

    client.delete_job(&accepted.job_id).await.expect("deleted");
    let e = client.job(&accepted.job_id).await.expect_err("gone");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    for h in &hashes {
        assert_eq!(get_stored(h).await, 404, "{h}: every copy is gone");
    }
    for k in &cache_keys {
        let r = client
            .raw(
                Method::GET,
                &format!("api/service/cache/{k}"),
                None,
                Bytes::new(),
                &[],
            )
            .await
            .expect("get");
        assert_eq!(r.status.as_u16(), 404, "{k}: the cached answer is gone");
    }
    let e = client
        .delete_job(&accepted.job_id)
        .await
        .expect_err("twice");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    let e = client.delete_job("not-a-job").await.expect_err("bad id");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");
}

/// Letters of the extraction corpus (issue 10) through the real pipeline: a clean render, a
/// phone photo, a fax and a harsh photo. Whatever OCR makes of them, no amount or date that is
/// not on the letter comes back without `uncertain`; the clean one is read completely.
/// (`bench/extract.sh` runs the whole corpus.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_never_reports_a_wrong_figure_unflagged_on_corpus_letters() {
    use rma_fixtures::corpus::{Fonts, TUNE_SEED, letter};
    use rma_fixtures::score::score;
    let c = Cluster::start(1, 1).await;
    let fonts = Fonts::load().expect("fonts (scripts/deps.sh installs them)");
    // Tuning-part indices: family = i % 15, condition = (i / 15) % 12.
    for i in [0usize, 31, 124, 172] {
        let g = letter(&fonts, TUNE_SEED, false, i).expect("letter");
        let ct = if g.ext == "png" {
            "image/png"
        } else {
            "image/jpeg"
        };
        let r = c
            .client()
            .call_service("process", "", ct, Bytes::from(g.bytes.clone()))
            .await
            .expect("process");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let result: rma_proto::results::ProcessResult =
            serde_json::from_slice(&r.body).expect("process json");
        let s = score(&g.truth, &result.facts.facts);
        let what = format!("{} ({}): {:?}", g.truth.id, g.truth.condition, s.misses);
        assert_eq!(s.amounts.wrong_unflagged, 0, "{what}");
        assert_eq!(s.dates.wrong_unflagged, 0, "{what}");
        if g.truth.condition == "clean" {
            assert_eq!(s.kind, 1, "{what}");
            assert_eq!(s.amounts.right, s.amounts.truth, "{what}");
            assert_eq!(s.dates.right, s.dates.truth, "{what}");
        }
    }
}
