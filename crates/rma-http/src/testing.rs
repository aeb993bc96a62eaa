//! Helpers for tests that drive a role's app in-process, without sockets (so paused Tokio time
//! works).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

/// Sends one JSON request to `app` and returns the status and the JSON body (`Null` when the
/// body is not JSON).
pub async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    call_as(app, None, method, path, body).await
}

/// [`call`] with `Authorization: Bearer {bearer}` when given.
pub async fn call_as(
    app: &axum::Router,
    bearer: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    match bearer {
        Some(t) => {
            let auth = format!("Bearer {t}");
            call_with(app, &[("authorization", &auth)], method, path, body).await
        }
        None => call_with(app, &[], method, path, body).await,
    }
}

/// [`call`] as a node: its credential and a fresh proof of its key, as `rma_client` sends them.
pub async fn call_as_node(
    app: &axum::Router,
    node: &rma_auth::Identity,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let proof = node.request_proof();
    call_with(
        app,
        &[
            ("authorization", &format!("Bearer {}", node.bearer())),
            (rma_auth::proof::PROOF_HEADER, &proof),
        ],
        method,
        path,
        body,
    )
    .await
}

/// [`call`] with these headers.
pub async fn call_with(
    app: &axum::Router,
    headers: &[(&str, &str)],
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let Ok(req) = req.body(Body::from(body.to_owned())) else {
        return (StatusCode::BAD_REQUEST, serde_json::Value::Null);
    };
    let Ok(resp) = app.clone().oneshot(req).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
