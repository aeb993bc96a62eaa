//! `process`: the pipeline behind "Read document". One document in; for images two readings
//! at once — `enhance` then `ocr` of the cleaned image, and `ocr` of the image as sent — for
//! PDFs `pdf-text` (with its OCR fallback); then `extract` over the readings (it keeps what they
//! agree on and flags where they differ); the original, the cleaned image and the result saved
//! with `store` when a storage worker exists. Each step is dispatched
//! on its own, so steps may run on different workers; the answer says which step ran where.

use axum::http::StatusCode;
use bytes::Bytes;
use rma_http::ApiError;
use rma_proto::job::JobStep;
use rma_proto::media::{self, Kind};
use rma_proto::results::{
    DocumentKind, ExtractResult, OcrResult, PdfTextResult, ProcessResult, StoredObject, StoredRefs,
};
use rma_proto::{ServiceCall, ServiceReply, error_code, service};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::cache::cached;
use crate::dispatch::{Dispatcher, Served};
use crate::link::ProgressFn;

/// One run of the pipeline: the steps so far, who ran them, and the progress reported.
struct Run<'a> {
    d: &'a Dispatcher,
    request_id: Option<String>,
    /// The coordinator's span: every step is its child.
    traceparent: Option<String>,
    steps: Vec<JobStep>,
    workers: Vec<String>,
    progress: Option<ProgressFn>,
    done: u32,
    total: u32,
    /// Spot-check every step (`?verify=true`).
    verify: bool,
}

impl Run<'_> {
    /// Runs one step: dispatches it (through the cache unless it is `store`), fails the
    /// pipeline on an error answer, and records its timing, worker and progress.
    async fn step(&mut self, label: &str, call: ServiceCall) -> Result<ServiceReply, ApiError> {
        let started = Instant::now();
        let dispatched = dispatch(self.d, self.verify, label, call).await;
        self.record(label, started, dispatched)
    }

    /// Records a dispatched step (see [`Run::step`]): its error, or its timing, worker and
    /// progress.
    fn record(
        &mut self,
        label: &str,
        started: Instant,
        dispatched: Result<(String, Option<String>, Served), ApiError>,
    ) -> Result<ServiceReply, ApiError> {
        let (step, key, served) = dispatched?;
        let Served {
            reply,
            worker,
            cache,
            verified,
            ..
        } = served;
        if reply.status >= 400 {
            return Err(ApiError::new(
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY),
                error_code::for_status(reply.status),
                format!(
                    "step {label} failed on worker {worker}: {}",
                    reply.error_message()
                ),
            ));
        }
        self.steps.push(JobStep {
            step,
            worker: worker.clone(),
            coordinator: self.d.coordinator_id.clone(),
            status: reply.status,
            ms: started.elapsed().as_millis() as u64,
            // Kept only when the cache was consulted (an entry may exist under it).
            cache_key: key.filter(|_| cache.is_some()),
            cache: cache.map(str::to_owned),
            verified,
        });
        if !self.workers.contains(&worker) {
            self.workers.push(worker);
        }
        self.done += 1;
        self.report();
        Ok(reply)
    }

    /// A step whose answer is JSON of type `T`.
    async fn json_step<T: DeserializeOwned>(
        &mut self,
        label: &str,
        call: ServiceCall,
    ) -> Result<T, ApiError> {
        let reply = self.step(label, call).await?;
        reply.parse().map_err(|e| {
            ApiError::upstream(format!("step {label} answered something unexpected: {e}"))
        })
    }

    /// A step whose answer is JSON of type `T`, from a dispatch begun elsewhere.
    fn record_json<T: DeserializeOwned>(
        &mut self,
        label: &str,
        started: Instant,
        dispatched: Result<(String, Option<String>, Served), ApiError>,
    ) -> Result<T, ApiError> {
        let reply = self.record(label, started, dispatched)?;
        reply.parse().map_err(|e| {
            ApiError::upstream(format!("step {label} answered something unexpected: {e}"))
        })
    }

    fn report(&self) {
        if let Some(p) = &self.progress {
            p(self.done, self.total);
        }
    }

    /// A `POST` of `body` to `service`, carrying the request id.
    fn call(&self, service: &str, content_type: &str, query: &str, body: Bytes) -> ServiceCall {
        ServiceCall {
            query: query.to_owned(),
            request_id: self.request_id.clone(),
            traceparent: self.traceparent.clone(),
            ..ServiceCall::post(service, Some(content_type.to_owned()), body)
        }
    }
}

/// Dispatches one step (through the cache unless it is `store`); returns the service, the
/// cache key consulted, and what was served.
async fn dispatch(
    d: &Dispatcher,
    verify: bool,
    label: &str,
    call: ServiceCall,
) -> Result<(String, Option<String>, Served), ApiError> {
    let step = call.service.clone();
    let key = (call.service != service::STORE).then(|| crate::cache::key(&call));
    let served = if call.service == service::STORE {
        d.dispatch(&call, None).await
    } else {
        cached(d, call, None, verify).await
    }
    .map_err(|e| ApiError::new(e.status, e.code, format!("step {label}: {}", e.message)))?;
    Ok((step, key, served))
}

/// Runs the pipeline for `call` (its body is the document).
pub(crate) async fn run(
    d: &Dispatcher,
    call: ServiceCall,
    progress: Option<ProgressFn>,
    verify: bool,
) -> Result<Served, ApiError> {
    if call.method != "POST" || !call.path.is_empty() {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            error_code::METHOD_NOT_ALLOWED,
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
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_code::UNSUPPORTED_MEDIA_TYPE,
            "the document is not a PNG, JPEG, TIFF, WebP image or a PDF",
        )
    })?;
    let storing = d.registry.offers(service::STORE);
    let enhancing = kind.is_image() && d.registry.offers(service::ENHANCE);
    let mut run = Run {
        d,
        request_id: call.request_id.clone(),
        traceparent: call.traceparent.clone(),
        steps: Vec::new(),
        workers: Vec::new(),
        progress,
        done: 0,
        // enhance and a second reading (OCR of the image as sent) when enhancing.
        total: 2 + 2 * u32::from(enhancing) + if storing { 3 } else { 0 },
        verify,
    };
    run.report();
    let ocr_query = lang_query(&call.query);
    let mut stored = StoredRefs::default();

    if storing {
        let c = run.call(service::STORE, kind.mime(), "", call.body.clone());
        stored.original = Some(run.json_step::<StoredObject>("store original", c).await?);
    }

    // Word boxes too: their confidences tell `extract` which figures OCR was unsure of.
    let boxes_query = if ocr_query.is_empty() {
        "boxes=true".to_owned()
    } else {
        format!("{ocr_query}&boxes=true")
    };
    let (text, pages, ocr_pages, confidence, alternatives) = if kind == Kind::Pdf {
        let c = run.call(
            service::PDF_TEXT,
            kind.mime(),
            &ocr_query,
            call.body.clone(),
        );
        let read: PdfTextResult = run.json_step("pdf-text", c).await?;
        (
            read.text,
            read.pages,
            Some(read.ocr_pages),
            None,
            Vec::new(),
        )
    } else if enhancing {
        // Two readings: the cleaned image, and the image as sent, read at the same time
        // (cleaning helps under shadow and hurts where the page was already clean; `extract`
        // keeps what both agree on and flags where they differ).
        let d = run.d;
        let verify = run.verify;
        let original = run.call(service::OCR, kind.mime(), &boxes_query, call.body.clone());
        let as_sent = async move {
            let started = Instant::now();
            (started, dispatch(d, verify, "ocr original", original).await)
        };
        let cleaned = async {
            // Flattened and straightened but left grey: binarising loses thin, small or blurred
            // print (on the corpus it halved amount recall on blurred and low-resolution pages).
            let c = run.call(
                service::ENHANCE,
                kind.mime(),
                "binarize=false",
                call.body.clone(),
            );
            let image = run.step("enhance", c).await?.body;
            if storing {
                let c = run.call(service::STORE, "image/png", "", image.clone());
                stored.enhanced = Some(run.json_step("store enhanced", c).await?);
            }
            // The cleaned page read as one block: on the corpus, automatic segmentation dropped
            // lines of harsh photos that one block keeps (and on a flattened page it is fast).
            let c = run.call(
                service::OCR,
                "image/png",
                &format!("{boxes_query}&layout=block"),
                image,
            );
            run.json_step::<OcrResult>("ocr", c).await
        };
        let (read, (started, other)) = tokio::join!(cleaned, as_sent);
        let read = read?;
        let other: OcrResult = run.record_json("ocr original", started, other)?;
        let alternative = serde_json::json!({ "text": other.text, "pages": other.pages });
        (
            read.text,
            read.pages,
            None,
            Some(read.confidence),
            vec![alternative],
        )
    } else {
        let c = run.call(service::OCR, kind.mime(), &boxes_query, call.body.clone());
        let read: OcrResult = run.json_step("ocr", c).await?;
        (
            read.text,
            read.pages,
            None,
            Some(read.confidence),
            Vec::new(),
        )
    };

    // `extract` gets the pages with their words (as the `ocr` service answered), so a figure
    // OCR was unsure of is flagged instead of reported as certain, and the other reading.
    let reading = if alternatives.is_empty() {
        serde_json::json!({ "text": text, "pages": pages })
    } else {
        serde_json::json!({ "text": text, "pages": pages, "alternatives": alternatives })
    };
    let c = run.call(
        service::EXTRACT,
        "application/json",
        "",
        Bytes::from(serde_json::to_vec(&reading).unwrap_or_default()),
    );
    let facts: ExtractResult = run.json_step("extract", c).await?;

    let mut result = ProcessResult {
        kind: if kind == Kind::Pdf {
            DocumentKind::Pdf
        } else {
            DocumentKind::Image
        },
        content_type: kind.mime().to_owned(),
        text,
        pages,
        ocr_pages,
        confidence,
        facts,
        steps: run.steps.clone(),
        stored,
    };
    if storing {
        let body = Bytes::from(serde_json::to_vec(&result).unwrap_or_default());
        let c = run.call(service::STORE, "application/json", "", body);
        result.stored.result = Some(run.json_step("store result", c).await?);
        result.steps = run.steps.clone();
    }
    // The job's verdict is its worst step's.
    let verified = run.steps.iter().filter_map(|s| s.verified).max();
    Ok(Served {
        reply: ServiceReply::json(&result),
        worker: run.workers.join(","),
        attempts: 1,
        cache: None,
        verified,
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
