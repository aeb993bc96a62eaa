//! The coordinator's HTTP API, the top layer: worker registration and heartbeats, the link
//! upgrade, service requests (synchronous, or as jobs), job look-ups, health, metrics and a
//! worker listing. Handlers only translate HTTP to calls of the layers below and back.

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use rma_http::auth::WorkerClaims;
use rma_http::trace::{ServerTiming, TraceContext};
use rma_http::{ApiError, JsonBody, ServiceTarget, request_id, set_header};
use rma_proto::api::{
    Ack, CoordinatorHealth, WorkerHeartbeat, WorkerRegister, WorkerRegistered, WorkerSummary,
};
use rma_proto::job::{JobAccepted, JobState, JobView};
use rma_proto::{ServiceCall, capability, headers, ids};
use tokio::time::Instant;

use crate::AppState;
use crate::dispatch::Served;
use crate::execute::execute;
use crate::registry::WorkerEntry;

/// The coordinator's axum app over `state`.
pub(crate) fn app(state: AppState) -> Router {
    let r = Router::new()
        .route("/api/worker/register", post(register))
        .route("/api/worker/heartbeat", post(heartbeat))
        .route("/api/worker/link", get(link_upgrade))
        .route("/api/workers", get(workers))
        .route("/api/service/{service}", any(service))
        .route("/api/service/{service}/{*rest}", any(service))
        .route("/api/jobs/{id}", get(job).delete(delete_job))
        .route("/api/jobs/{id}/result", get(job_result))
        .route("/api/jobs/{id}/corrections", post(correct_job))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(raft_routes())
        .with_state(state);
    rma_http::finish(r)
}

/// The replication group's endpoints ([`crate::group`]). Log entries carry documents (base64 in
/// JSON), so their bodies may be far larger than axum's 2 MB default.
fn raft_routes() -> Router<AppState> {
    Router::new()
        .route("/api/raft/append", post(crate::group::append))
        .route("/api/raft/vote", post(crate::group::vote))
        .route("/api/raft/snapshot", post(crate::group::snapshot))
        .route("/api/raft/write", post(crate::group::write))
        .route("/api/raft/join", post(crate::group::join))
        .route("/api/raft/status", get(crate::group::status))
        .route("/api/raft/jobs", get(crate::group::jobs))
        .route(
            "/api/raft/blob/{hash}",
            get(crate::group::get_blob).put(crate::group::put_blob),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::group::MAX_RPC_BYTES,
        ))
}

async fn register(
    State(state): State<AppState>,
    WorkerClaims(claims): WorkerClaims,
    headers: HeaderMap,
    JsonBody(req): JsonBody<WorkerRegister>,
) -> Result<Json<WorkerRegistered>, ApiError> {
    ids::validate(&req.worker_id).map_err(|e| ApiError::bad_request(format!("worker_id: {e}")))?;
    rma_http::auth::same_node(&claims, "worker", &req.worker_id)?;
    // A registration decides where work goes (a tunnel URL): the credential alone is not
    // enough, the worker proves it holds the key.
    rma_auth::proof::check_request(
        &claims.cnf,
        &claims.sub,
        headers
            .get(rma_auth::proof::PROOF_HEADER)
            .and_then(|v| v.to_str().ok()),
        rma_auth::unix_now(),
    )
    .map_err(|e| ApiError::from_auth(&e))?;
    let tunnel_url = match &req.tunnel_url {
        // Only URLs the coordinator's policy lets it call: no proxy into its own network.
        Some(t) => Some(
            rma_client::guard::check_registered(&state.config().url_policy, "tunnel_url", t)
                .await
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    let mut assignment =
        capability::assign(&req.capabilities, req.worker_type, req.services.as_deref());
    // The credential decides what the worker may run, whatever it claims it can.
    assignment.services.retain(|s| claims.allows(s));
    // It is sent what it starts with; the rest it could run is standby for placement.
    let eligible = assignment.services.clone();
    if let Some(initial) = &req.initial_services {
        assignment.services.retain(|s| initial.contains(s));
    }
    let cfg = state.config();
    state.registry().lock().register(WorkerEntry {
        id: req.worker_id.clone(),
        worker_type: assignment.worker_type,
        services: assignment.services.clone(),
        eligible,
        base: assignment.services.clone(),
        tunnel_url,
        registered_at: SystemTime::now(),
        last_seen: Instant::now(),
        load: 0.0,
        reported_active: 0,
        link: None,
        requests: Default::default(),
        tunnel_down: false,
        owner: claims.owner().to_owned(),
        strikes: 0,
        quarantined: false,
        cores: req.capabilities.cpu_cores,
        observed: Default::default(),
        failures: Default::default(),
    });
    tracing::info!(worker = %req.worker_id, r#type = %assignment.worker_type, services = ?assignment.services, standby = ?standby_of(&req, &assignment.services), "worker registered");
    metrics::counter!("rma_coordinator_worker_registrations_total").increment(1);
    metrics::gauge!("rma_coordinator_worker_queue_depth", "worker" => crate::registry::worker_label(&req.worker_id)).set(0.0);
    state.registry().changed();
    Ok(Json(WorkerRegistered {
        status: "registered".into(),
        worker_id: req.worker_id,
        worker_type: assignment.worker_type,
        assigned_services: assignment.services,
        coordinator_id: cfg.id.clone(),
        coordinator_url: Some(state.public_url().to_owned()),
        heartbeat_interval_s: cfg.worker_heartbeat_interval.as_secs().max(1),
    }))
}

/// What a registering worker could run beyond what it starts with (for the log).
fn standby_of(req: &WorkerRegister, assigned: &[String]) -> Vec<String> {
    req.initial_services
        .as_ref()
        .map(|_| {
            req.services
                .iter()
                .flatten()
                .filter(|s| !assigned.contains(s))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn heartbeat(
    State(state): State<AppState>,
    WorkerClaims(claims): WorkerClaims,
    JsonBody(hb): JsonBody<WorkerHeartbeat>,
) -> Result<Json<Ack>, ApiError> {
    rma_http::auth::same_node(&claims, "worker", &hb.worker_id)?;
    if !hb.current_load.is_finite() {
        return Err(ApiError::bad_request(
            "current_load must be a finite number",
        ));
    }
    let label = crate::registry::worker_label(&hb.worker_id);
    metrics::counter!("rma_coordinator_worker_heartbeats_total", "worker" => label.clone(), "via" => "http")
        .increment(1);
    metrics::gauge!("rma_coordinator_worker_heartbeats_failed", "worker" => label)
        .set(f64::from(hb.heartbeats_failed));
    let known = state.registry().lock().heartbeat(
        &hb.worker_id,
        hb.current_load,
        hb.active_requests,
        Instant::now(),
    );
    if known {
        Ok(Json(Ack::ok()))
    } else {
        Err(ApiError::not_found(format!(
            "worker {:?} is not registered here; register again",
            hb.worker_id
        )))
    }
}

/// `GET /api/worker/link`: 401/403 before the upgrade without a valid worker credential;
/// after it the worker must still prove it holds the credential's key.
async fn link_upgrade(
    State(state): State<AppState>,
    WorkerClaims(claims): WorkerClaims,
    ws: WebSocketUpgrade,
) -> Response {
    let limit = state.config().max_body_bytes + 64 * 1024;
    // A coordinator holds thousands of links, mostly idle: a small read buffer per link (it
    // grows for a large document) keeps each one cheap.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(8 * 1024)
        .on_upgrade(move |socket| {
            crate::session::serve(
                state.registry().clone(),
                state.session_config(),
                state.shutdown(),
                claims,
                socket,
            )
        })
}

/// `GET /api/workers` (metrics token): the workers with their tunnel URLs.
async fn workers(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<WorkerSummary>>, ApiError> {
    state.require_metrics_token(&headers)?;
    Ok(Json(state.registry().lock().summaries(Instant::now())))
}

/// `GET /metrics` (metrics token).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.require_metrics_token(&headers) {
        Ok(()) => rma_http::metrics_handler().await,
        Err(e) => e.into_response(),
    }
}

async fn health(State(state): State<AppState>) -> Json<CoordinatorHealth> {
    let counts = state.registry().lock().counts(Instant::now());
    Json(CoordinatorHealth {
        status: if counts.active > 0 {
            "healthy"
        } else {
            "degraded"
        }
        .into(),
        coordinator: state.config().id.clone(),
        workers: counts,
    })
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

/// `ANY /api/service/{service}[/{*rest}]`: runs the call now, or stores it as a job.
async fn service(
    State(state): State<AppState>,
    target: Result<ServiceTarget, ApiError>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let rid = request_id(&headers);
    let _active = state.track_request();
    let label = target.as_ref().map_or("other", ServiceTarget::metric_label);
    let start_wall = std::time::SystemTime::now();
    let parent = TraceContext::from_headers(&headers);
    let span = TraceContext::child_of(parent.as_ref());
    let mut timing = ServerTiming::default();
    // Only callers with a credential of the federation get its workers' time, and a client
    // key used here directly within its rate.
    let admitted = match state.service_caller(&headers) {
        Err(e) => Err(e.into_response()),
        Ok(caller) => state
            .rate_limit(&caller)
            .map_err(|wait| rma_http::rate_limited(wait, &format!("client {}", caller.sub))),
    };
    let call = match admitted {
        Ok(()) => call_of(&state, target, method, &headers, body, &rid)
            .await
            .map_err(IntoResponse::into_response),
        Err(refused) => {
            // A client already sending its document gets the refusal, not a broken pipe.
            rma_http::discard_body(body).await;
            Err(refused)
        }
    };
    let mut resp = match call {
        Err(refused) => refused,
        Ok(mut call) if wants_async(&headers) => {
            call.traceparent = Some(span.header());
            let client = state.client_of(&headers);
            let submitted = match (state.group_config(), state.group()) {
                // In a group, a job is acknowledged once the group has committed it.
                (_, Some(g)) => crate::group::submit(&state, &g, call, client).await,
                (Some(_), None) => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    rma_proto::error_code::NO_COORDINATOR,
                    "this coordinator's replication group is still starting; try again",
                )),
                (None, None) => state.jobs().submit(call, client).await,
            };
            match submitted {
                Ok(id) => accepted(id),
                Err(e) => e.into_response(),
            }
        }
        Ok(mut call) => {
            call.traceparent = Some(span.header());
            let dispatching = Instant::now();
            let result = execute(state.dispatcher(), call, None).await;
            let dispatched = dispatching.elapsed();
            let worker = result
                .as_ref()
                .ok()
                .and_then(|s| s.reply.took_us)
                .map(std::time::Duration::from_micros);
            timing.push("coordinator", started.elapsed().saturating_sub(dispatched));
            match worker {
                Some(w) => {
                    timing.push("link", dispatched.saturating_sub(w));
                    timing.push("worker", w);
                }
                None => timing.push("dispatch", dispatched),
            }
            match result {
                Ok(served) => into_response(served),
                Err(e) => e.into_response(),
            }
        }
    };
    if !timing.0.is_empty() {
        set_header(resp.headers_mut(), headers::SERVER_TIMING, &timing.header());
    }
    rma_http::trace::record(span.sampled, || rma_http::trace::Span {
        name: "coordinator",
        context: span,
        parent: parent.map(|p| p.span_id),
        start: start_wall,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("rma.node", state.config().id.clone()),
            ("rma.service", label.to_owned()),
            (
                "http.response.status_code",
                resp.status().as_u16().to_string(),
            ),
        ],
    });
    set_header(resp.headers_mut(), headers::COORDINATOR, &state.config().id);
    set_header(resp.headers_mut(), headers::REQUEST_ID, &rid);
    metrics::counter!("rma_coordinator_service_requests_total", "service" => label, "status" => rma_http::metrics::status_label(resp.status())).increment(1);
    metrics::histogram!("rma_coordinator_service_request_seconds", "service" => label)
        .record(started.elapsed().as_secs_f64());
    resp
}

async fn call_of(
    state: &AppState,
    target: Result<ServiceTarget, ApiError>,
    method: Method,
    headers: &HeaderMap,
    body: Body,
    rid: &str,
) -> Result<ServiceCall, ApiError> {
    target?
        .read_call(
            &method,
            headers,
            body,
            state.config().max_body_bytes,
            Some(rid.to_owned()),
        )
        .await
}

/// `202 Accepted` with `Location` for a stored job.
fn accepted(id: String) -> Response {
    let location = rma_proto::job::location(&id);
    let mut r = (
        StatusCode::ACCEPTED,
        Json(JobAccepted {
            job_id: id,
            state: JobState::Queued,
            location: location.clone(),
        }),
    )
        .into_response();
    set_header(r.headers_mut(), "location", &location);
    r
}

/// An answer as an HTTP response, with the headers that name who served it.
fn into_response(served: Served) -> Response {
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
    if let Some(v) = served.verified {
        set_header(resp.headers_mut(), headers::VERIFIED, v.as_str());
    }
    resp
}

/// `GET /api/jobs/{id}`.
async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    check_job_id(&id)?;
    if let Some(g) = state.group()
        && let Some(v) = crate::group::view(&state, &g, &id).await
    {
        return Ok(Json(v));
    }
    state.jobs().view(&id).await?.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no job {id} here (finished jobs are kept for the retention time)"
        ))
    })
}

/// `POST /api/jobs/{id}/corrections`: a person corrects one of a finished job's facts; kept
/// with the job (and so in its JSON) as corrected by a person. Whoever holds the id may.
async fn correct_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<rma_proto::job::CorrectionRequest>,
) -> Result<Json<JobView>, ApiError> {
    check_job_id(&id)?;
    if let Some(g) = state.group()
        && g.sm.read(|j| j.jobs.contains_key(&id))
        && let Some(r) = crate::group::correct(&state, &g, &id, req.clone()).await
    {
        return r.map(Json);
    }
    state.jobs().correct(&id, req).await.map(Json)
}

/// `DELETE /api/jobs/{id}`: the job, its result and every stored copy of its document are
/// deleted. Whoever holds the id may: the id is the job's only key.
async fn delete_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Ack>, ApiError> {
    check_job_id(&id)?;
    if let Some(g) = state.group()
        && g.sm.read(|j| j.jobs.contains_key(&id))
    {
        g.write(rma_replica::Command::Delete { job: id.clone() })
            .await?;
        tracing::info!(job = %id, "replicated job deleted");
        metrics::counter!("rma_coordinator_jobs_deleted_total").increment(1);
        return Ok(Json(Ack {
            status: "deleted".into(),
        }));
    }
    if state.jobs().delete(&id, state.dispatcher()).await? {
        tracing::info!(job = %id, "job deleted with its stored copies");
        metrics::counter!("rma_coordinator_jobs_deleted_total").increment(1);
        Ok(Json(Ack {
            status: "deleted".into(),
        }))
    } else {
        Err(ApiError::not_found(format!("no job {id} here")))
    }
}

/// `GET /api/jobs/{id}/result`: the raw result (an enhanced PNG, say).
async fn job_result(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_job_id(&id)?;
    let replicated = match state.group() {
        Some(g) => crate::group::result(&g, &id).await,
        None => None,
    };
    let local = match replicated {
        Some(r) => r,
        None => state.jobs().result(&id).await?,
    };
    let (body, content_type) = local.ok_or_else(|| {
        ApiError::not_found(format!(
            "job {id} has no result (unknown, not finished, or failed)"
        ))
    })?;
    let mut resp = body.into_response();
    if let Some(ct) = content_type {
        set_header(resp.headers_mut(), "content-type", &ct);
    }
    Ok(resp)
}

fn check_job_id(id: &str) -> Result<(), ApiError> {
    if ids::job_coordinator(id).is_none() || ids::validate(id).is_err() {
        return Err(ApiError::bad_request(format!("{id:?} is not a job id")));
    }
    Ok(())
}
