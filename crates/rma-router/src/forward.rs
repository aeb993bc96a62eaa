//! Forwarding service requests: pick a coordinator whose last heartbeat says it has a worker
//! for the service (round-robin), send the request there, and carry out the forwarding policy
//! ([`rma_http::forwarding::Policy::ROUTER`]) on what happened: a connection error, a 502 or a
//! 503 tries the next. The body is buffered once so a retry resends the same bytes.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rma_client::RawResponse;
use rma_client::forward::ForwardError;
use rma_http::forwarding::{Decision, Outcome, Policy};
use rma_http::trace::{ServerTiming, TraceContext};
use rma_http::{ApiError, ServiceTarget, request_id, set_header};
use rma_proto::{headers, service};
use tokio::time::Instant;

use crate::AppState;

/// Coordinators tried before looking at the registry again.
const MAX_TRIES_PER_ROUND: usize = 8;

/// Request headers passed on to the coordinator (besides content type and request id).
const PASS_REQUEST: [&str; 3] = ["accept", "prefer", headers::FORWARDED_BY];

/// Response headers passed back to the client (besides ours).
const PASS_RESPONSE: [&str; 8] = [
    headers::SERVER_TIMING,
    headers::CACHE,
    headers::VERIFIED,
    "content-type",
    "location",
    headers::COORDINATOR,
    headers::WORKER,
    headers::ATTEMPTS,
];

/// `ANY /api/service/{service}[/{*rest}]`.
pub(crate) async fn service(
    State(state): State<AppState>,
    client: Option<axum::Extension<crate::limit::ClientKey>>,
    target: Result<ServiceTarget, ApiError>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let start_wall = std::time::SystemTime::now();
    let parent = TraceContext::from_headers(&headers);
    let span = TraceContext::child_of(parent.as_ref());
    let rid = request_id(&headers);
    let label = target
        .as_ref()
        .map_or("other", |t| service::metric_label(&t.service));
    let result = match target {
        Ok(t) => {
            let client = client.map(|axum::Extension(k)| k.0);
            let hop = Hop {
                rid: &rid,
                client: client.as_deref(),
                trace: &span,
            };
            forward(&state, t, method, &headers, body, hop).await
        }
        Err(e) => Err(e),
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    set_header(resp.headers_mut(), headers::REQUEST_ID, &rid);
    // Our own time is what the hops below did not account for.
    let below = ServerTiming::from_headers(resp.headers());
    let own = (started.elapsed().as_secs_f64() * 1000.0 - below.total_ms()).max(0.0);
    let mut timing = ServerTiming(vec![("router".to_owned(), own)]);
    timing.0.extend(below.0);
    set_header(resp.headers_mut(), headers::SERVER_TIMING, &timing.header());
    set_header(resp.headers_mut(), headers::TRACERESPONSE, &span.header());
    rma_http::trace::record(span.sampled, || rma_http::trace::Span {
        name: "router",
        context: span,
        parent: parent.map(|p| p.span_id),
        start: start_wall,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("rma.service", label.to_owned()),
            (
                "http.response.status_code",
                resp.status().as_u16().to_string(),
            ),
        ],
    });
    let outcome = rma_http::metrics::status_label(resp.status());
    metrics::counter!("rma_router_service_requests_total", "service" => label, "status" => outcome)
        .increment(1);
    metrics::histogram!("rma_router_service_request_seconds", "service" => label)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Who a forwarded request is for: its request id, its verified client key, its trace span.
struct Hop<'a> {
    rid: &'a str,
    client: Option<&'a str>,
    trace: &'a TraceContext,
}

async fn forward(
    state: &AppState,
    target: ServiceTarget,
    method: Method,
    headers: &HeaderMap,
    body: Body,
    hop: Hop<'_>,
) -> Result<Response, ApiError> {
    let Hop { rid, client, trace } = hop;
    let call = target
        .read_call(
            &method,
            headers,
            body,
            state.config().max_body_bytes,
            Some(rid.to_owned()),
        )
        .await?;
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded_by = text(headers::FORWARDED_BY);
    let mut extra: Vec<(&str, &str)> = PASS_REQUEST
        .iter()
        .filter_map(|n| text(*n).map(|v| (*n, v)))
        .collect();
    // A verified client key goes on, so the coordinator can bound that client's queue.
    let client_auth = client.map(|t| format!("Bearer {t}"));
    if let Some(a) = &client_auth {
        extra.push(("authorization", a));
    }
    // The coordinator's parent is the router's span.
    let traceparent = trace.header();
    extra.push((headers::TRACEPARENT, &traceparent));
    let timeout = state.config().request_timeout;
    let mut last_failure = String::new();
    let mut tried = 0usize;
    let deadline = Instant::now() + state.config().failover_wait;
    loop {
        let choosing = Instant::now();
        let candidates: Vec<(String, String)> = {
            let mut reg = state.registry();
            let turn = state.next_turn();
            let policy = state.config().balance;
            reg.candidates_for_service(
                &call.service,
                Instant::now(),
                turn,
                policy,
                &mut rand::rng(),
            )
            .into_iter()
            // A coordinator passing on a job it cannot run is not sent it back.
            .filter(|e| Some(e.id.as_str()) != forwarded_by)
            // A round tries a few; the next round (a failover in progress) asks again.
            .take(MAX_TRIES_PER_ROUND)
            .map(|e| (e.id.clone(), e.url.clone()))
            .collect()
        };
        metrics::histogram!("rma_router_selection_seconds")
            .record(choosing.elapsed().as_secs_f64());
        if candidates.is_empty() && tried == 0 {
            let any = state.registry().fresh_count(Instant::now()) > 0;
            return Err(if any {
                ApiError::no_worker(format!(
                    "no coordinator has an active worker offering the {:?} service",
                    call.service
                ))
            } else {
                ApiError::no_coordinator("no coordinator is registered and fresh")
            });
        }
        for (cid, url) in candidates {
            tried += 1;
            let (forwarder, upstream) = state.upstream(&url)?;
            // Coordinators run services only for the federation's members: this router shows
            // a credential made out to this coordinator alone.
            let own = state.own_credential(&cid)?;
            let mut hop_headers = extra.clone();
            hop_headers.push((headers::ROUTER_CREDENTIAL, &own));
            let mut ticket = Ticket::start(state, &cid, &call.service);
            let sent =
                tokio::time::timeout(timeout, forwarder.send(&upstream, &call, &hop_headers));
            let (outcome, answer) = match sent.await {
                Err(_) => (Outcome::TimedOut, None),
                Ok(Err(ForwardError::Request(m))) => return Err(ApiError::bad_request(m)),
                Ok(Err(e)) => {
                    tracing::warn!(coordinator = %cid, error = %e, request_id = rid, "coordinator unreachable; trying the next");
                    state.registry().mark_unreachable(&cid);
                    last_failure = format!("coordinator {cid} unreachable");
                    (Outcome::Unreachable, None)
                }
                Ok(Ok(resp)) => (Outcome::Answered(resp.status.as_u16()), Some(resp)),
            };
            // 2xx–3xx teach its speed; 502, 503, no connection and timeouts count against it;
            // a 4xx (the client's fault) or a 500 from a service does neither.
            ticket.answered = matches!(outcome, Outcome::Answered(s) if s < 400);
            ticket.failed = !matches!(outcome, Outcome::Answered(s) if s != 502 && s != 503);
            drop(ticket);
            match (Policy::ROUTER.classify(outcome), answer) {
                (Decision::Fail, _) => {
                    return Err(ApiError::timeout(format!(
                        "coordinator {cid} did not answer within {} s",
                        timeout.as_secs()
                    )));
                }
                (Decision::Answer, Some(resp)) => {
                    state.registry().record_request(&cid, Instant::now());
                    return Ok(relay(resp, &cid, tried));
                }
                (_, Some(resp)) => {
                    tracing::warn!(coordinator = %cid, status = %resp.status, request_id = rid, "coordinator could not serve; trying the next");
                    last_failure = format!("coordinator {cid} answered {}", resp.status);
                }
                (_, None) => {}
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
        "no coordinator could serve {:?}: tried {tried} time(s) over {} s, last: {last_failure}",
        call.service,
        state.config().failover_wait.as_secs()
    )))
}

/// What of a job a request is about.
#[derive(Clone, Copy)]
enum JobPart {
    Job,
    Result,
    Corrections,
}

/// `GET /api/jobs/{id}`: asked of the coordinator that holds the job (named in its id).
pub(crate) async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    job_at(state, id, Method::GET, JobPart::Job, bytes::Bytes::new()).await
}

/// `DELETE /api/jobs/{id}`: the job and its stored copies, at the coordinator holding it.
pub(crate) async fn delete_job(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    job_at(state, id, Method::DELETE, JobPart::Job, bytes::Bytes::new()).await
}

/// `GET /api/jobs/{id}/result`.
pub(crate) async fn job_result(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    job_at(state, id, Method::GET, JobPart::Result, bytes::Bytes::new()).await
}

/// `POST /api/jobs/{id}/corrections`: a person's correction of a fact, kept by the
/// coordinator holding the job. The body is small JSON (64 KB at most).
pub(crate) async fn correct_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match rma_http::read_body(&headers, body, 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    job_at(state, id, Method::POST, JobPart::Corrections, body).await
}

async fn job_at(
    state: AppState,
    id: String,
    method: Method,
    part: JobPart,
    body: bytes::Bytes,
) -> Response {
    let Some(holder) = rma_proto::ids::job_coordinator(&id) else {
        return ApiError::bad_request(format!("{id:?} is not a job id")).into_response();
    };
    let (path, content_type) = match part {
        JobPart::Job => (rma_proto::job::path(&id), None),
        JobPart::Result => (rma_proto::job::result_path(&id), None),
        JobPart::Corrections => (
            rma_proto::job::corrections_path(&id),
            Some("application/json"),
        ),
    };
    // The holder first. When it is gone, its replication group (if it has one) still knows the
    // job: the other coordinators are asked in turn, and the first that knows it answers.
    let (holder_url, others): (Option<String>, Vec<(String, String)>) = {
        let reg = state.registry();
        (
            reg.get(holder).map(|e| e.url.clone()),
            reg.entries()
                .filter(|e| e.id != holder && !reg.is_unreachable(e))
                .map(|e| (e.id.clone(), e.url.clone()))
                .collect(),
        )
    };
    let ask = |url: String| {
        let state = state.clone();
        let (method, path, body) = (method.clone(), path.clone(), body.clone());
        async move {
            let client = state.coordinator(&url).map_err(|e| e.message)?;
            let asked = client.raw(method, &path, content_type, body, &[]);
            match tokio::time::timeout(Duration::from_secs(30), asked).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 30 s".to_owned()),
            }
        }
    };
    let mut failure = None;
    if let Some(url) = holder_url {
        match ask(url).await {
            Ok(resp) => return relay(resp, holder, 1),
            Err(e) => {
                state.registry().mark_unreachable(holder);
                failure = Some(format!(
                    "coordinator {holder} holding job {id} is unreachable: {e}"
                ));
            }
        }
    }
    for (cid, url) in others {
        if let Ok(resp) = ask(url).await
            && resp.status.as_u16() != 404
        {
            return relay(resp, &cid, 1);
        }
    }
    match failure {
        Some(f) => ApiError::upstream(f).into_response(),
        None => ApiError::not_found(format!(
            "job {id} is held by coordinator {holder}, which is not registered now"
        ))
        .into_response(),
    }
}

/// Turns the coordinator's answer into ours, with the headers that name who served it.
fn relay(resp: RawResponse, coordinator: &str, attempts: usize) -> Response {
    let status = StatusCode::from_u16(resp.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for name in PASS_RESPONSE {
        if let Some(v) = resp.headers.get(name) {
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
    (status, out_headers, resp.body).into_response()
}

/// A forward in flight at a coordinator: counted out when dropped (a client that goes away
/// mid-request included); an answer's round trip feeds the coordinator's estimate, anything
/// else counts against its health.
struct Ticket<'a> {
    state: &'a AppState,
    coordinator: &'a str,
    service: &'a str,
    started: Instant,
    answered: bool,
    failed: bool,
}

impl<'a> Ticket<'a> {
    fn start(state: &'a AppState, coordinator: &'a str, service: &'a str) -> Self {
        state.registry().forward_started(coordinator, service);
        Ticket {
            state,
            coordinator,
            service,
            started: Instant::now(),
            answered: false,
            failed: false,
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        self.state.registry().forward_ended(
            self.coordinator,
            self.service,
            now.saturating_duration_since(self.started),
            self.answered,
            self.failed,
            now,
        );
    }
}
