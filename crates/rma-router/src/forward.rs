//! Forwarding service requests: pick a coordinator whose last heartbeat says it has a worker
//! for the service (round-robin), send the request there, and on a connection error, a 502 or a
//! 503 try the next. The body is buffered once so a retry resends the same bytes.

use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rma_http::{ApiError, read_body, request_id, set_header};
use rma_proto::{headers, service};
use std::time::Duration;

use tokio::time::Instant;

use crate::AppState;

/// Request headers passed on to the coordinator.
const PASS_REQUEST: [&str; 4] = ["content-type", "accept", "prefer", headers::FORWARDED_BY];

/// Response headers passed back to the client (besides ours).
const PASS_RESPONSE: [&str; 6] = [
    headers::CACHE,
    "content-type",
    "location",
    headers::COORDINATOR,
    headers::WORKER,
    headers::ATTEMPTS,
];

/// `ANY /api/service/{service}`.
pub async fn service(
    State(state): State<AppState>,
    Path(service): Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(state, service, String::new(), method, uri, headers, body).await
}

/// `ANY /api/service/{service}/{*rest}`, for services with sub-resources.
pub async fn service_rest(
    State(state): State<AppState>,
    Path((service, _rest)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rest = rma_http::service_rest(&uri.0, &service);
    forward(state, service, rest, method, uri, headers, body).await
}

async fn forward(
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
    let result = forward_inner(
        &state,
        &service_name,
        &rest,
        method,
        &uri,
        &headers,
        body,
        &rid,
    )
    .await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    set_header(resp.headers_mut(), headers::REQUEST_ID, &rid);
    let outcome = resp.status().as_u16().to_string();
    metrics::counter!("rma_router_service_requests_total", "service" => service_label(&service_name), "status" => outcome).increment(1);
    metrics::histogram!("rma_router_service_request_seconds", "service" => service_label(&service_name)).record(started.elapsed().as_secs_f64());
    resp
}

/// Keeps metric labels bounded: unknown names are folded into `other`.
fn service_label(name: &str) -> String {
    const KNOWN: [&str; 10] = [
        service::OCR,
        service::ENHANCE,
        service::AI,
        service::STORE,
        service::CACHE,
        service::PDF_TEXT,
        service::EXTRACT,
        service::ECHO,
        "process",
        service::EDGE_PROXY,
    ];
    if KNOWN.contains(&name) {
        name.to_owned()
    } else {
        "other".to_owned()
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward_inner(
    state: &AppState,
    service_name: &str,
    rest: &str,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
    rid: &str,
) -> Result<Response, ApiError> {
    if !service::is_valid_name(service_name) {
        return Err(ApiError::bad_request(format!(
            "service type {service_name:?} is not a plain name (lowercase letters, digits, '-')"
        )));
    }
    let body: Bytes = read_body(headers, body, state.config().max_body_bytes).await?;
    let forwarded_by = headers
        .get(headers::FORWARDED_BY)
        .and_then(|v| v.to_str().ok());
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut last_failure = String::new();
    let mut tried = 0usize;
    let deadline = Instant::now() + state.config().failover_wait;
    loop {
        let candidates: Vec<(String, String)> = {
            let reg = state.registry();
            reg.candidates_for_service(service_name, Instant::now(), state.next_turn())
                .into_iter()
                // A coordinator passing on a job it cannot run is not sent it back.
                .filter(|e| Some(e.id.as_str()) != forwarded_by)
                .map(|e| (e.id.clone(), e.url.clone()))
                .collect()
        };
        if candidates.is_empty() && tried == 0 {
            let any = state.registry().fresh_count(Instant::now()) > 0;
            return Err(if any {
                ApiError::no_worker(format!(
                    "no coordinator has an active worker offering the {service_name:?} service"
                ))
            } else {
                ApiError::no_coordinator("no coordinator is registered and fresh")
            });
        }
        for (cid, url) in candidates {
            tried += 1;
            let target = format!("{url}/api/service/{service_name}{rest}{query}");
            let mut req = state
                .http()
                .request(method.clone(), &target)
                .timeout(state.config().request_timeout)
                .header(headers::REQUEST_ID, rid)
                .body(body.clone());
            for name in PASS_REQUEST {
                if let Some(v) = headers.get(name) {
                    req = req.header(name, v);
                }
            }
            match req.send().await {
                Err(e) if e.is_timeout() => {
                    return Err(ApiError::timeout(format!(
                        "coordinator {cid} did not answer within {} s",
                        state.config().request_timeout.as_secs()
                    )));
                }
                Err(e) => {
                    tracing::warn!(coordinator = %cid, error = %e, request_id = rid, "coordinator unreachable; trying the next");
                    state.registry().mark_unreachable(&cid);
                    last_failure = format!("coordinator {cid} unreachable");
                }
                Ok(resp) if matches!(resp.status().as_u16(), 502 | 503) => {
                    tracing::warn!(coordinator = %cid, status = %resp.status(), request_id = rid, "coordinator could not serve; trying the next");
                    last_failure = format!("coordinator {cid} answered {}", resp.status());
                }
                Ok(resp) => {
                    state.registry().record_request(&cid, Instant::now());
                    return Ok(relay(resp, &cid, tried).await);
                }
            }
        }
        // Every coordinator that offered the service failed. During a failover (a coordinator
        // died, its workers are re-homing) another one will offer it within moments: wait for
        // that, up to `failover_wait`, instead of failing the request.
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ApiError::no_worker(format!(
        "no coordinator could serve {service_name:?}: tried {tried} time(s) over {} s, last: {last_failure}",
        state.config().failover_wait.as_secs()
    )))
}

/// `GET /api/jobs/{id}`: asked of the coordinator that holds the job (named in its id).
pub async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    job_at(state, id, "").await
}

/// `GET /api/jobs/{id}/result`.
pub async fn job_result(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    job_at(state, id, "/result").await
}

async fn job_at(state: AppState, id: String, suffix: &str) -> Response {
    let Some(coordinator) = rma_proto::ids::job_coordinator(&id) else {
        return ApiError::bad_request(format!("{id:?} is not a job id")).into_response();
    };
    let url = state.registry().get(coordinator).map(|e| e.url.clone());
    let Some(url) = url else {
        return ApiError::not_found(format!(
            "job {id} is held by coordinator {coordinator}, which is not registered now"
        ))
        .into_response();
    };
    match state
        .http()
        .get(format!("{url}/api/jobs/{id}{suffix}"))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
    {
        Ok(resp) => relay(resp, coordinator, 1).await,
        Err(e) => {
            state.registry().mark_unreachable(coordinator);
            ApiError::upstream(format!(
                "coordinator {coordinator} holding job {id} is unreachable: {e}"
            ))
            .into_response()
        }
    }
}

/// Turns the coordinator's answer into ours, with the headers that name who served it.
async fn relay(resp: reqwest::Response, coordinator: &str, attempts: usize) -> Response {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for name in PASS_RESPONSE {
        if let Some(v) = resp.headers().get(name) {
            out_headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    if !out_headers.contains_key(headers::COORDINATOR) {
        set_header(&mut out_headers, headers::COORDINATOR, coordinator);
    }
    set_header(
        &mut out_headers,
        "x-rma-router-attempts",
        &attempts.to_string(),
    );
    match resp.bytes().await {
        Ok(body) => (status, out_headers, body).into_response(),
        Err(e) => ApiError::upstream(format!(
            "coordinator {coordinator} broke off its answer: {e}"
        ))
        .into_response(),
    }
}
