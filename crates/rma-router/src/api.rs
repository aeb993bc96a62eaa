//! The router's HTTP API: registration of coordinators, worker proxying, admin, topology,
//! health and metrics. Service requests are in [`crate::forward`].

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use rma_auth::Role;
use rma_client::ClientError;
use rma_http::auth::{CoordinatorClaims, WorkerClaims};
use rma_http::{ApiError, JsonBody};
use rma_proto::api::{
    Ack, CoordinatorHeartbeat, CoordinatorInfo, CoordinatorRegister, CoordinatorRegistered,
    RouterHealth, Topology, TopologyCoordinator, TopologyWorker, WorkerHeartbeat, WorkerRegister,
    WorkerRegistered,
};
use rma_proto::ids;
use rma_proto::membership::HeartbeatReply;
use tokio::time::Instant;

use crate::registry::Entry;
use crate::store::StoredCoordinator;
use crate::{AppState, forward, to_ms};

/// The router's axum app over `state`.
pub(crate) fn app(state: AppState) -> Router {
    // What costs the federation work is limited per address; polls and views are not.
    let limited = Router::new()
        .route("/api/edge/register", post(register_coordinator))
        .route("/api/worker/register", post(register_worker))
        .route("/api/enroll", post(crate::membership::enroll))
        .route("/api/credentials/renew", post(crate::membership::renew))
        .route("/api/service/{service}", any(forward::service))
        .route("/api/service/{service}/{*rest}", any(forward::service))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limit::middleware,
        ));
    let r = Router::new()
        .merge(limited)
        .route("/api/edge/heartbeat", post(coordinator_heartbeat))
        .route("/api/edge/{coordinator_id}", delete(deregister_coordinator))
        .route("/api/worker/heartbeat", post(worker_heartbeat))
        .route(
            "/api/jobs/{id}",
            get(forward::job).delete(forward::delete_job),
        )
        .route("/api/jobs/{id}/result", get(forward::job_result))
        .route("/api/jobs/{id}/corrections", post(forward::correct_job))
        .route("/api/admin/coordinators", get(coordinators))
        .route("/api/admin/invites", post(crate::membership::invite))
        .route("/api/admin/nodes", get(crate::membership::nodes))
        .route(
            "/api/admin/nodes/{node_id}/revoke",
            post(crate::membership::revoke),
        )
        .route("/api/topology", get(topology))
        .route("/api/topology/ws", get(crate::ui::topology_ws))
        .route("/", get(crate::ui::index))
        .route("/assets/{*path}", get(crate::ui::assets))
        .route("/{file}", get(crate::ui::file))
        .route("/api/admin/usage", get(usage))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::usage::middleware,
        ))
        .with_state(state);
    rma_http::finish(r)
}

async fn register_coordinator(
    State(state): State<AppState>,
    CoordinatorClaims(claims): CoordinatorClaims,
    JsonBody(req): JsonBody<CoordinatorRegister>,
) -> Result<Json<CoordinatorRegistered>, ApiError> {
    let raw_url = req
        .url
        .as_deref()
        .or(req.tunnel_url.as_deref())
        .ok_or_else(|| {
            ApiError::bad_request(
                "url (or tunnel_url) is required: the URL the router reaches this coordinator at",
            )
        })?;
    // Only URLs the router's policy lets it call: no proxy into its own network.
    let url = rma_client::guard::check_registered(&state.config().url_policy, "url", raw_url)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // A coordinator registers under the id its credential names.
    let id = match req.coordinator_id {
        Some(id) => {
            ids::validate(&id)
                .map_err(|e| ApiError::bad_request(format!("coordinator_id: {e}")))?;
            rma_http::auth::same_node(&claims, "coordinator", &id)?;
            id
        }
        None => claims.sub.clone(),
    };
    let now = Instant::now();
    let wall = SystemTime::now();
    let previous = state.registry().get(&id).cloned();
    let registered_at = previous.as_ref().map_or(wall, |p| p.registered_at);
    let row = StoredCoordinator {
        id: id.clone(),
        url: url.clone(),
        location: req.location.clone(),
        registered_at_ms: to_ms(registered_at),
        last_seen_ms: to_ms(wall),
    };
    // Durable first: a coordinator told "registered" is in the file.
    state
        .write(move |s| s.upsert(&row))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // A coordinator credential limited to services routes only those to it.
    let services = req
        .services
        .unwrap_or_default()
        .into_iter()
        .filter(|s| claims.allows(s))
        .map(|s| (s, 1))
        .collect();
    let total = {
        let mut reg = state.registry();
        let (services, workers, load, requests, seen) = match previous {
            // A re-registration keeps the inventory it already reported.
            Some(p) if p.url == url => (p.services, p.workers, p.load, p.requests, p.seen),
            _ => (
                services,
                Vec::new(),
                0.0,
                Default::default(),
                Default::default(),
            ),
        };
        reg.upsert(Entry {
            id: id.clone(),
            url: url.clone(),
            location: req.location,
            registered_at,
            last_seen: now,
            last_seen_wall: wall,
            services,
            workers,
            load,
            active_requests: 0,
            unreachable: false,
            ping_misses: 0,
            inventory_known: true,
            requests,
            seen,
        });
        reg.len()
    };
    metrics::counter!("rma_router_registrations_total").increment(1);
    tracing::info!(coordinator = %id, %url, total, "coordinator registered");
    Ok(Json(CoordinatorRegistered {
        status: "registered".into(),
        role: "edge_coordinator".into(),
        message: format!(
            "coordinator {id} registered at {url}; {total} coordinator(s) in the federation"
        ),
        coordinator_id: id,
        total_coordinators: total,
        heartbeat_interval_ms: told_interval_ms(&state),
    }))
}

/// The heartbeat interval the router asks of coordinators, if it sets one: never so long that
/// a healthy coordinator would look stale between two heartbeats.
fn told_interval_ms(state: &AppState) -> Option<u64> {
    state
        .config()
        .coordinator_heartbeat_interval
        .map(|d| d.min(state.config().stale_after / 2).as_millis() as u64)
}

async fn coordinator_heartbeat(
    State(state): State<AppState>,
    CoordinatorClaims(claims): CoordinatorClaims,
    JsonBody(mut hb): JsonBody<CoordinatorHeartbeat>,
) -> Result<Json<HeartbeatReply>, ApiError> {
    rma_http::auth::same_node(&claims, "coordinator", &hb.coordinator_id)?;
    hb.services.retain(|s, _| claims.allows(s));
    let id = hb.coordinator_id.clone();
    if state
        .registry()
        .heartbeat(hb, Instant::now(), SystemTime::now())
    {
        Ok(Json(HeartbeatReply {
            status: "ok".into(),
            revoked: state.revoked_lately(),
            heartbeat_interval_ms: told_interval_ms(&state),
        }))
    } else {
        Err(ApiError::not_found(format!(
            "coordinator {id:?} is not registered; register again"
        )))
    }
}

async fn deregister_coordinator(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Ack>, ApiError> {
    // The coordinator itself, or an admin.
    if !state.is_admin(&headers) {
        let claims = rma_http::auth::Membership::member(&state, &headers, Role::Coordinator)?;
        rma_http::auth::same_node(&claims, "coordinator", &id)?;
    }
    ids::validate(&id).map_err(|e| ApiError::bad_request(format!("coordinator_id: {e}")))?;
    let known = state.registry().remove(&id).is_some();
    let id2 = id.clone();
    let in_file = state
        .write(move |s| s.delete(&id2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !known && !in_file {
        return Err(ApiError::not_found(format!(
            "coordinator {id:?} is not registered"
        )));
    }
    tracing::info!(coordinator = %id, "coordinator deregistered");
    Ok(Json(Ack {
        status: "deregistered".into(),
    }))
}

/// Proxies a worker registration to the coordinator with the fewest workers, trying the next on
/// a connection failure, and remembers where the worker went.
async fn register_worker(
    State(state): State<AppState>,
    // Checked here too, so a stranger never costs a coordinator a call; the coordinator
    // checks again (it trusts no one's word for it).
    WorkerClaims(claims): WorkerClaims,
    headers: HeaderMap,
    JsonBody(req): JsonBody<WorkerRegister>,
) -> Result<Json<WorkerRegistered>, ApiError> {
    ids::validate(&req.worker_id).map_err(|e| ApiError::bad_request(format!("worker_id: {e}")))?;
    rma_http::auth::same_node(&claims, "worker", &req.worker_id)?;
    let bearer = rma_http::auth::bearer(&headers)
        .unwrap_or_default()
        .to_owned();
    let proof = headers
        .get(rma_auth::proof::PROOF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let candidates: Vec<(String, String)> = {
        let reg = state.registry();
        reg.candidates_for_worker(Instant::now(), state.next_turn())
            .into_iter()
            .map(|e| (e.id.clone(), e.url.clone()))
            .collect()
    };
    if candidates.is_empty() {
        return Err(ApiError::no_coordinator(
            "no coordinator is registered and fresh; start one with `rma coordinator --router-url ...`",
        ));
    }
    let mut last = None;
    for (cid, url) in candidates {
        // Placed here tentatively at once, so concurrent registrations see it.
        state
            .registry()
            .set_home(&req.worker_id, &cid, Instant::now());
        match state
            .coordinator(&url)?
            .with_forwarded(bearer.clone(), proof.clone())
            .register_worker(&req)
            .await
        {
            Ok(reply) => {
                state
                    .registry()
                    .set_home(&req.worker_id, &reply.coordinator_id, Instant::now());
                return Ok(Json(reply));
            }
            Err(ClientError::Api { status, body }) if status.is_client_error() => {
                return Err(pass_error(status.as_u16(), body));
            }
            Err(ClientError::Api { status, .. }) => {
                last = Some(format!("coordinator {cid} answered {status}"));
            }
            Err(e @ ClientError::Decode { .. }) => {
                return Err(ApiError::upstream(format!(
                    "coordinator {cid} answered the registration with an unexpected body: {e}"
                )));
            }
            Err(e) => {
                state.registry().mark_unreachable(&cid);
                last = Some(format!("coordinator {cid} unreachable: {e}"));
            }
        }
    }
    Err(ApiError::no_coordinator(format!(
        "no coordinator accepted the registration ({})",
        last.unwrap_or_default()
    )))
}

/// Sends a worker's heartbeat to the coordinator that holds its registration; 404 when none
/// does, so the worker registers again.
async fn worker_heartbeat(
    State(state): State<AppState>,
    WorkerClaims(claims): WorkerClaims,
    headers: HeaderMap,
    JsonBody(hb): JsonBody<WorkerHeartbeat>,
) -> Result<Json<Ack>, ApiError> {
    ids::validate(&hb.worker_id).map_err(|e| ApiError::bad_request(format!("worker_id: {e}")))?;
    rma_http::auth::same_node(&claims, "worker", &hb.worker_id)?;
    let bearer = rma_http::auth::bearer(&headers)
        .unwrap_or_default()
        .to_owned();
    let home = state
        .registry()
        .home_of(&hb.worker_id)
        .map(|e| (e.id.clone(), e.url.clone()));
    let Some((cid, url)) = home else {
        return Err(ApiError::not_found(format!(
            "worker {:?} is not registered with any coordinator; register again",
            hb.worker_id
        )));
    };
    match state
        .coordinator(&url)?
        .with_bearer(bearer)
        .worker_heartbeat(&hb)
        .await
    {
        Ok(ack) => Ok(Json(ack)),
        Err(ClientError::Api { status, body }) => Err(pass_error(status.as_u16(), body)),
        Err(e) => {
            state.registry().mark_unreachable(&cid);
            Err(ApiError::upstream(format!(
                "coordinator {cid} holding this worker is unreachable: {e}"
            )))
        }
    }
}

/// An upstream error answer, passed on with its status and message; its code is the one the
/// contract gives that status.
fn pass_error(status: u16, body: rma_proto::ErrorBody) -> ApiError {
    let code = rma_proto::error_code::for_status(status);
    ApiError::new(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        code,
        body.message,
    )
}

/// `GET /metrics`, for the admin token only: series name coordinators.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.require_admin(&headers) {
        Ok(()) => rma_http::metrics_handler().await,
        Err(e) => e.into_response(),
    }
}

async fn coordinators(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<CoordinatorInfo>>, ApiError> {
    state.require_admin(&headers)?;
    let reg = state.registry();
    let now = Instant::now();
    Ok(Json(
        reg.entries()
            .map(|e| CoordinatorInfo {
                coordinator_id: e.id.clone(),
                url: e.url.clone(),
                location: e.location.clone(),
                registered_at: rma_http::rfc3339(e.registered_at),
                last_seen: rma_http::rfc3339(e.last_seen_wall),
                status: reg.status(e, now),
            })
            .collect(),
    ))
}

/// The topology as coordinators last reported it.
pub(crate) fn topology_of(state: &AppState) -> Topology {
    let reg = state.registry();
    let now = Instant::now();
    let mut t = Topology::default();
    for e in reg.entries() {
        t.coordinators.push(TopologyCoordinator {
            id: e.id.clone(),
            url: e.url.clone(),
            workers: e.workers.len(),
            load: e.load,
            status: reg.status(e, now),
            requests_last_minute: e.requests.count(now),
            last_seen: rma_http::rfc3339(e.last_seen_wall),
            location: e.location.clone(),
            active_requests: e.seen.services.in_flight(),
            failures_last_minute: e.seen.failures.count(now),
            latency_p99_ms: e.seen.services.p99_ms(now),
        });
        for w in &e.workers {
            // A worker that re-homed is listed by its new coordinator only, even while the old
            // one's last report still names it.
            if reg.home_of(&w.id).is_some_and(|home| home.id != e.id) {
                continue;
            }
            t.workers.push(TopologyWorker {
                id: w.id.clone(),
                worker_type: w.worker_type,
                coordinator: e.id.clone(),
                services: w.services.clone(),
                status: reg.worker_status(e, w, now),
                load: w.load,
                active_requests: w.active_requests,
                requests_last_minute: w.requests_last_minute,
                last_seen: w.last_seen.clone(),
                latency_p99_ms: w.latency_p99_ms.clone(),
                failures_last_minute: w.failures_last_minute,
                placed: w.placed.clone(),
            });
        }
    }
    t
}

/// `GET /api/topology`: with the admin token whole, without it [`Topology::redacted`].
async fn topology(State(state): State<AppState>, headers: HeaderMap) -> Json<Topology> {
    let t = topology_of(&state);
    Json(if state.is_admin(&headers) {
        t
    } else {
        t.redacted()
    })
}

/// `GET /api/admin/usage` (admin token): today's requests, registry requests and rows
/// written, projected over the UTC day, against the edge's free tier.
async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<rma_proto::api::Usage>, ApiError> {
    state.require_admin(&headers)?;
    Ok(Json(state.usage().report(SystemTime::now())))
}

async fn health(State(state): State<AppState>) -> Response {
    let (fresh, total) = {
        let reg = state.registry();
        (reg.fresh_count(Instant::now()), reg.len())
    };
    let (code, status, message) = if fresh > 0 {
        let fresh = format!("{fresh} of {total} coordinator(s) fresh");
        // Serving, but on course to pass the edge's free tier today: said, not refused.
        match state.usage().report(SystemTime::now()).warning {
            Some(w) => (
                StatusCode::OK,
                "degraded",
                format!("{fresh}; usage past 80 % of the free tier: {w}"),
            ),
            None => (StatusCode::OK, "healthy", fresh),
        }
    } else if total == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            "no coordinator is registered".to_owned(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            format!("none of {total} registered coordinator(s) has sent a heartbeat recently"),
        )
    };
    (
        code,
        Json(RouterHealth {
            status: status.into(),
            coordinators: fresh,
            message,
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use rma_proto::api::CoordinatorStatus;

    #[test]
    fn coordinator_status_names() {
        assert_eq!(
            serde_json::to_value(CoordinatorStatus::Unreachable).expect("json"),
            "unreachable"
        );
    }
}
