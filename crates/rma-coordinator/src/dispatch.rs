//! Dispatch of service requests: pick an active worker offering the service, send the request
//! down its link, and when the link drops under it, send it to another (up to `max_attempts`).
//! A `GET` of a sub-resource that one worker does not have (404) is asked of the next one, so a
//! stored document is found on whichever storage worker holds it.

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rma_http::{ApiError, read_body, request_id, set_header};
use rma_proto::{headers, service};
use tokio::time::Instant;

use crate::AppState;
use crate::link::{Call, LinkError, ProgressFn, Reply};

/// The pseudo-service the coordinator runs itself: the document pipeline.
pub const PROCESS: &str = "process";

/// An answer and who gave it.
#[derive(Debug, Clone)]
pub struct Served {
    /// The answer.
    pub reply: Reply,
    /// The worker that gave it (for `process`, every worker that ran a step, comma-separated).
    pub worker: String,
    /// Workers tried.
    pub attempts: u32,
    /// `hit` or `miss` when the cache was consulted.
    pub cache: Option<&'static str>,
}

/// `ANY /api/service/{service}`.
pub async fn service(
    State(state): State<AppState>,
    Path(service): Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, service, String::new(), method, uri, headers, body).await
}

/// `ANY /api/service/{service}/{*rest}`.
pub async fn service_rest(
    State(state): State<AppState>,
    Path((service, _rest)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rest = rma_http::service_rest(&uri.0, &service);
    handle(state, service, rest, method, uri, headers, body).await
}

/// Whether the client asked for an async answer (`Prefer: respond-async`).
fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

async fn handle(
    state: AppState,
    service_name: String,
    rest: String,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let rid = request_id(&headers);
    let _active = state.track_request();
    let mut resp = match prepare(
        &state,
        &service_name,
        rest,
        method,
        &uri,
        &headers,
        body,
        &rid,
    )
    .await
    {
        Err(e) => e.into_response(),
        Ok(call) if wants_async(&headers) => {
            match state.jobs().submit(&call).await {
                Ok(id) => {
                    let location = format!("/api/jobs/{id}");
                    let mut r = (
                    StatusCode::ACCEPTED,
                    Json(serde_json::json!({"job_id": id, "state": "queued", "location": location})),
                )
                    .into_response();
                    set_header(r.headers_mut(), "location", &location);
                    state.jobs().wake();
                    r
                }
                Err(e) => e.into_response(),
            }
        }
        Ok(call) => match execute(&state, call, None).await {
            Ok(served) => into_response(served),
            Err(e) => e.into_response(),
        },
    };
    set_header(resp.headers_mut(), headers::COORDINATOR, &state.config().id);
    set_header(resp.headers_mut(), headers::REQUEST_ID, &rid);
    let label = if service::is_valid_name(&service_name) && service_name.len() <= 16 {
        service_name
    } else {
        "other".to_owned()
    };
    metrics::counter!("rma_coordinator_service_requests_total", "service" => label.clone(), "status" => resp.status().as_u16().to_string()).increment(1);
    metrics::histogram!("rma_coordinator_service_request_seconds", "service" => label)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// An answer as an HTTP response, with the headers that name who served it.
pub fn into_response(served: Served) -> Response {
    let status = StatusCode::from_u16(served.reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = (status, served.reply.body).into_response();
    if let Some(ct) = served.reply.content_type {
        set_header(resp.headers_mut(), "content-type", &ct);
    }
    set_header(resp.headers_mut(), headers::WORKER, &served.worker);
    set_header(
        resp.headers_mut(),
        headers::ATTEMPTS,
        &served.attempts.to_string(),
    );
    if let Some(c) = served.cache {
        set_header(resp.headers_mut(), headers::CACHE, c);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn prepare(
    state: &AppState,
    service_name: &str,
    rest: String,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
    rid: &str,
) -> Result<Call, ApiError> {
    if !service::is_valid_name(service_name) {
        return Err(ApiError::bad_request(format!(
            "service type {service_name:?} is not a plain name (lowercase letters, digits, '-')"
        )));
    }
    let body = read_body(headers, body, state.config().max_body_bytes).await?;
    Ok(Call {
        service: service_name.to_owned(),
        method: method.to_string(),
        path: rest,
        query: uri.query().unwrap_or_default().to_owned(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        request_id: Some(rid.to_owned()),
        body,
    })
}

/// Runs a call the way a client asked for it: `process` through the pipeline, the rest through
/// the cache and a worker.
pub async fn execute(
    state: &AppState,
    call: Call,
    progress: Option<ProgressFn>,
) -> Result<Served, ApiError> {
    if call.service == PROCESS {
        crate::pipeline::run(state, call, progress).await
    } else {
        crate::cache::cached(state, call, progress).await
    }
}

/// Sends `call` to a worker; on a dropped link, to another. A `GET` answered 404 is asked of the
/// next worker too; the last 404 is the answer when none has it.
pub async fn dispatch(
    state: &AppState,
    call: &Call,
    progress: Option<ProgressFn>,
) -> Result<Served, ApiError> {
    let cfg = state.config();
    let mut tried: HashSet<String> = HashSet::new();
    let mut lost = 0u32;
    let mut not_found: Option<Served> = None;
    let mut attempts = 0u32;
    loop {
        let picked = state.workers().pick(&call.service, &tried, Instant::now());
        let Some((worker, route)) = picked else {
            if let Some(nf) = not_found {
                return Ok(nf);
            }
            return Err(ApiError::no_worker(if tried.is_empty() {
                format!("no active worker offers the {:?} service", call.service)
            } else {
                format!(
                    "the link of every worker tried for {:?} dropped ({}), and no other worker offers it",
                    call.service,
                    tried.len()
                )
            }));
        };
        attempts += 1;
        let outcome = match route {
            crate::registry::Route::Link(link) => {
                link.call(call.clone(), cfg.request_timeout, progress.clone())
                    .await
            }
            crate::registry::Route::Http(url) => {
                let r = crate::tunnel::call(state, &url, call).await;
                if matches!(r, Err(LinkError::Closed)) {
                    state.workers().mark_tunnel_down(&worker);
                }
                r
            }
        };
        match outcome {
            Ok(reply) if reply.status == 404 && call.method == "GET" && !call.path.is_empty() => {
                tried.insert(worker.clone());
                not_found = Some(Served {
                    reply,
                    worker,
                    attempts,
                    cache: None,
                });
            }
            Ok(reply) => {
                return Ok(Served {
                    reply,
                    worker,
                    attempts,
                    cache: None,
                });
            }
            Err(LinkError::Closed) => {
                tracing::warn!(%worker, service = %call.service, attempts, "link dropped mid-request; retrying on another worker");
                metrics::counter!("rma_coordinator_retries_total").increment(1);
                tried.insert(worker);
                lost += 1;
                if lost >= cfg.max_attempts {
                    return Err(ApiError::upstream(format!(
                        "{lost} workers' links dropped while serving {:?}; giving up",
                        call.service
                    )));
                }
            }
            Err(LinkError::Timeout) => {
                return Err(ApiError::timeout(format!(
                    "worker {worker} did not answer {:?} within {} s",
                    call.service,
                    cfg.request_timeout.as_secs()
                )));
            }
        }
    }
}
