//! Dispatch of service requests: pick an active worker offering the service, send the request
//! down its link, and when the link drops under it, send it to another (up to `max_attempts`).

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rma_http::{ApiError, read_body, request_id, set_header};
use rma_proto::{headers, service};
use tokio::time::Instant;

use crate::AppState;
use crate::link::{Call, LinkError, Reply};

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
    Path((service, rest)): Path<(String, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        state,
        service,
        format!("/{rest}"),
        method,
        uri,
        headers,
        body,
    )
    .await
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
        Ok(call) => match dispatch(&state, call).await {
            Ok((reply, worker, attempts)) => {
                let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut resp = (status, reply.body).into_response();
                if let Some(ct) = reply.content_type {
                    set_header(resp.headers_mut(), "content-type", &ct);
                }
                set_header(resp.headers_mut(), headers::WORKER, &worker);
                set_header(resp.headers_mut(), headers::ATTEMPTS, &attempts.to_string());
                resp
            }
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
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

/// Sends `call` to a worker; on a dropped link, to another. Returns the reply, the worker that
/// gave it and how many workers were tried.
pub async fn dispatch(state: &AppState, call: Call) -> Result<(Reply, String, u32), ApiError> {
    let cfg = state.config();
    let mut tried: HashSet<String> = HashSet::new();
    for attempt in 1..=cfg.max_attempts {
        let picked = state.workers().pick(&call.service, &tried, Instant::now());
        let Some((worker, link)) = picked else {
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
        match link.call(call.clone(), cfg.request_timeout, None).await {
            Ok(reply) => return Ok((reply, worker, attempt)),
            Err(LinkError::Closed) => {
                tracing::warn!(%worker, service = %call.service, attempt, "link dropped mid-request; retrying on another worker");
                metrics::counter!("rma_coordinator_retries_total").increment(1);
                tried.insert(worker);
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
    Err(ApiError::upstream(format!(
        "{} workers' links dropped while serving {:?}; giving up",
        tried.len(),
        call.service
    )))
}
