//! The coordinator's HTTP API: worker registration and heartbeats, the link, service
//! requests ([`crate::dispatch`]), health, metrics and a worker listing.

use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{any, get, post};
use rma_http::{ApiError, JsonBody};
use rma_proto::api::{
    Ack, CoordinatorHealth, WorkerHeartbeat, WorkerRegister, WorkerRegistered, WorkerSummary,
};
use rma_proto::{capability, ids};
use tokio::time::Instant;

use crate::registry::WorkerEntry;
use crate::{AppState, dispatch, link};

/// The coordinator's axum app over `state`.
pub fn app(state: AppState) -> Router {
    let r = Router::new()
        .route("/api/worker/register", post(register))
        .route("/api/worker/heartbeat", post(heartbeat))
        .route("/api/worker/link", get(link_upgrade))
        .route("/api/workers", get(workers))
        .route("/api/service/{service}", any(dispatch::service))
        .route(
            "/api/service/{service}/{*rest}",
            any(dispatch::service_rest),
        )
        .route("/api/jobs/{id}", get(crate::jobs::get_job))
        .route("/api/jobs/{id}/result", get(crate::jobs::get_result))
        .route("/health", get(health))
        .route("/metrics", get(rma_http::metrics_handler))
        .with_state(state);
    rma_http::finish(r)
}

async fn register(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<WorkerRegister>,
) -> Result<Json<WorkerRegistered>, ApiError> {
    ids::validate(&req.worker_id).map_err(|e| ApiError::bad_request(format!("worker_id: {e}")))?;
    if let Some(t) = &req.tunnel_url {
        rma_http_url(t)?;
    }
    let assignment =
        capability::assign(&req.capabilities, req.worker_type, req.services.as_deref());
    let cfg = state.config();
    state.workers().register(WorkerEntry {
        id: req.worker_id.clone(),
        worker_type: assignment.worker_type,
        capabilities: req.capabilities,
        services: assignment.services.clone(),
        tunnel_url: req.tunnel_url,
        registered_at: SystemTime::now(),
        last_seen: Instant::now(),
        load: 0.0,
        reported_active: 0,
        link: None,
        requests: Default::default(),
        tunnel_down: false,
    });
    tracing::info!(worker = %req.worker_id, r#type = %assignment.worker_type, services = ?assignment.services, "worker registered");
    metrics::counter!("rma_coordinator_worker_registrations_total").increment(1);
    state.inventory_changed();
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

fn rma_http_url(raw: &str) -> Result<(), ApiError> {
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "tunnel_url {raw:?} is not an absolute http(s) URL"
        ))),
    }
}

async fn heartbeat(
    State(state): State<AppState>,
    JsonBody(hb): JsonBody<WorkerHeartbeat>,
) -> Result<Json<Ack>, ApiError> {
    if !hb.current_load.is_finite() {
        return Err(ApiError::bad_request(
            "current_load must be a finite number",
        ));
    }
    let known = state.workers().heartbeat(
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

async fn link_upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let limit = state.config().max_body_bytes + 64 * 1024;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| link::serve(state, socket))
}

async fn workers(State(state): State<AppState>) -> Json<Vec<WorkerSummary>> {
    Json(state.workers().summaries(Instant::now()))
}

async fn health(State(state): State<AppState>) -> Json<CoordinatorHealth> {
    let counts = state.workers().counts(Instant::now());
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
