//! `process`: the pipeline behind "Read document". One document in; for images `enhance` then
//! `ocr`, for PDFs `pdf-text` (with its OCR fallback); then `extract`; the original, the cleaned
//! image and the result saved with `store` when a storage worker exists. Each step is dispatched
//! on its own, so steps may run on different workers; the answer says which step ran where.

use std::time::Instant as StdInstant;

use bytes::Bytes;
use rma_http::ApiError;
use rma_proto::media::{self, Kind};
use rma_proto::service;
use serde_json::{Value, json};

use crate::AppState;
use crate::cache::cached;
use crate::dispatch::{Served, dispatch};
use crate::link::{Call, ProgressFn, Reply};

/// The steps run so far and the workers that ran them.
struct Trace {
    steps: Vec<Value>,
    workers: Vec<String>,
    coordinator: String,
}

impl Trace {
    fn add(&mut self, name: &str, served: &Served, started: StdInstant) {
        self.steps.push(step_json(
            name,
            served,
            started.elapsed().as_millis(),
            &self.coordinator,
        ));
        if !self.workers.contains(&served.worker) {
            self.workers.push(served.worker.clone());
        }
    }
}

/// One step as reported in the answer.
fn step_json(name: &str, served: &Served, ms: u128, coordinator: &str) -> Value {
    json!({
        "step": name,
        "worker": served.worker,
        "coordinator": coordinator,
        "status": served.reply.status,
        "ms": ms,
        "cache": served.cache,
    })
}

fn offered(state: &AppState, name: &str) -> bool {
    state
        .workers()
        .inventory(tokio::time::Instant::now())
        .contains_key(name)
}

/// Runs the pipeline for `call` (its body is the document).
pub async fn run(
    state: &AppState,
    call: Call,
    progress: Option<ProgressFn>,
) -> Result<Served, ApiError> {
    if call.method != "POST" || !call.path.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            rma_proto::error_code::METHOD_NOT_ALLOWED,
            "process takes the document with POST /api/service/process",
        ));
    }
    if call.body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send a document",
        ));
    }
    let kind = media::sniff(&call.body).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            rma_proto::error_code::UNSUPPORTED_MEDIA_TYPE,
            "the document is not a PNG, JPEG, TIFF, WebP image or a PDF",
        )
    })?;
    let coordinator = state.config().id.clone();
    let storing = offered(state, service::STORE);
    let enhancing = kind.is_image() && offered(state, service::ENHANCE);
    let total = 2 + u32::from(enhancing) + if storing { 3 } else { 0 };
    let mut done = 0;
    let report = |done: u32| {
        if let Some(p) = &progress {
            p(done, total);
        }
    };
    report(0);
    let mut trace = Trace {
        steps: Vec::new(),
        workers: Vec::new(),
        coordinator,
    };
    let mut stored = serde_json::Map::new();
    let sub = |service: &str, method: &str, ct: Option<String>, query: &str, body: Bytes| Call {
        service: service.to_owned(),
        method: method.to_owned(),
        path: String::new(),
        query: query.to_owned(),
        content_type: ct,
        request_id: call.request_id.clone(),
        body,
    };
    let ocr_query = lang_query(&call.query);

    if storing {
        let t = StdInstant::now();
        let s = run_step(
            state,
            "store original",
            sub(
                service::STORE,
                "POST",
                Some(kind.mime().into()),
                "",
                call.body.clone(),
            ),
        )
        .await?;
        stored.insert("original".into(), json_of(&s.reply)?);
        trace.add("store", &s, t);
        done += 1;
        report(done);
    }

    let read: Value;
    if kind == Kind::Pdf {
        let t = StdInstant::now();
        let s = run_step(
            state,
            "pdf-text",
            sub(
                service::PDF_TEXT,
                "POST",
                Some(kind.mime().into()),
                &ocr_query,
                call.body.clone(),
            ),
        )
        .await?;
        read = json_of(&s.reply)?;
        trace.add("pdf-text", &s, t);
        done += 1;
        report(done);
    } else {
        let mut image = call.body.clone();
        let mut image_type = kind.mime().to_owned();
        if enhancing {
            let t = StdInstant::now();
            let s = run_step(
                state,
                "enhance",
                sub(
                    service::ENHANCE,
                    "POST",
                    Some(image_type.clone()),
                    "",
                    image.clone(),
                ),
            )
            .await?;
            image = s.reply.body.clone();
            image_type = "image/png".into();
            trace.add("enhance", &s, t);
            done += 1;
            report(done);
            if storing {
                let t = StdInstant::now();
                let st = run_step(
                    state,
                    "store enhanced",
                    sub(
                        service::STORE,
                        "POST",
                        Some(image_type.clone()),
                        "",
                        image.clone(),
                    ),
                )
                .await?;
                stored.insert("enhanced".into(), json_of(&st.reply)?);
                trace.add("store", &st, t);
                done += 1;
                report(done);
            }
        }
        let t = StdInstant::now();
        let s = run_step(
            state,
            "ocr",
            sub(service::OCR, "POST", Some(image_type), &ocr_query, image),
        )
        .await?;
        read = json_of(&s.reply)?;
        trace.add("ocr", &s, t);
        done += 1;
        report(done);
    }
    let text = read["text"].as_str().unwrap_or_default().to_owned();

    let t = StdInstant::now();
    let s = run_step(
        state,
        "extract",
        sub(
            service::EXTRACT,
            "POST",
            Some("text/plain; charset=utf-8".into()),
            "",
            Bytes::from(text.clone()),
        ),
    )
    .await?;
    let facts = json_of(&s.reply)?;
    trace.add("extract", &s, t);
    done += 1;
    report(done);

    let mut result = json!({
        "kind": if kind == Kind::Pdf { "pdf" } else { "image" },
        "content_type": kind.mime(),
        "text": text,
        "pages": read["pages"],
        "ocr_pages": read.get("ocr_pages").cloned().unwrap_or(Value::Null),
        "confidence": read.get("confidence").cloned().unwrap_or(Value::Null),
        "facts": facts,
        "steps": trace.steps,
        "stored": Value::Object(stored),
    });
    if storing {
        let t = StdInstant::now();
        let body = Bytes::from(serde_json::to_vec(&result).unwrap_or_default());
        let s = run_step(
            state,
            "store result",
            sub(
                service::STORE,
                "POST",
                Some("application/json".into()),
                "",
                body,
            ),
        )
        .await?;
        let saved = json_of(&s.reply)?;
        trace.add("store", &s, t);
        result["stored"]["result"] = saved;
        result["steps"] = json!(trace.steps);
        done += 1;
        report(done);
    }
    Ok(Served {
        reply: Reply {
            status: 200,
            content_type: Some("application/json".into()),
            body: Bytes::from(serde_json::to_vec(&result).unwrap_or_default()),
        },
        worker: trace.workers.join(","),
        attempts: 1,
        cache: None,
    })
}

/// `lang=` from the client's query, passed on to OCR; nothing else is.
fn lang_query(query: &str) -> String {
    query
        .split('&')
        .filter(|p| p.starts_with("lang="))
        .collect::<Vec<_>>()
        .join("&")
}

/// Dispatches one step; a failed step fails the pipeline, naming the step.
async fn run_step(state: &AppState, name: &str, call: Call) -> Result<Served, ApiError> {
    let served = if call.service == service::STORE {
        dispatch(state, &call, None).await
    } else {
        cached(state, call, None).await
    }
    .map_err(|e| ApiError::new(e.status, e.code, format!("step {name}: {}", e.message)))?;
    if served.reply.status >= 400 {
        let msg = serde_json::from_slice::<rma_proto::ErrorBody>(&served.reply.body)
            .map(|b| b.message)
            .unwrap_or_else(|_| {
                String::from_utf8_lossy(&served.reply.body)
                    .chars()
                    .take(200)
                    .collect()
            });
        let status = axum::http::StatusCode::from_u16(served.reply.status)
            .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
        let code = match served.reply.status {
            400 => rma_proto::error_code::BAD_REQUEST,
            413 => rma_proto::error_code::PAYLOAD_TOO_LARGE,
            415 => rma_proto::error_code::UNSUPPORTED_MEDIA_TYPE,
            _ => rma_proto::error_code::UPSTREAM_FAILED,
        };
        return Err(ApiError::new(
            status,
            code,
            format!("step {name} failed on worker {}: {msg}", served.worker),
        ));
    }
    Ok(served)
}

fn json_of(reply: &Reply) -> Result<Value, ApiError> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| ApiError::upstream(format!("a step answered something that is not JSON: {e}")))
}
