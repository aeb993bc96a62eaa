//! The edge kit every rma role shares: JSON errors mapped in one place ([`ApiError`]), body
//! limits, request ids, the service-request target ([`ServiceTarget`]), the forwarding policy
//! of both hops ([`forwarding`]), periodic background loops ([`every`]), versioned SQLite files
//! ([`sqlite`]), the Prometheus endpoint, and serving on a bound listener with a handle that
//! stops the server when dropped.
#![deny(clippy::unwrap_used)]

pub mod auth;
pub mod balance;
pub mod batch;
mod error;
pub mod forwarding;
pub mod limit;
pub mod metrics;
pub mod otlp;
mod periodic;
mod server;
pub mod sqlite;
mod target;
pub mod testing;
pub mod tls;
pub mod trace;
mod window;

pub use error::{ApiError, JsonBody};
pub use periodic::every;
pub use server::{ServerHandle, Shutdown, serve, serve_with};
pub use target::ServiceTarget;
pub use window::{LatencyWindow, RateWindow};

/// Wall time as RFC 3339 with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The wall time of a monotonic instant in the past.
pub fn wall_of(then: tokio::time::Instant) -> std::time::SystemTime {
    std::time::SystemTime::now() - then.elapsed()
}

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use rma_proto::error_code;

/// Reads a request body, refusing with 413 as soon as it passes `limit` bytes (checked against
/// `Content-Length` first, then while streaming, so an over-long chunked body is cut short).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_code::PAYLOAD_TOO_LARGE,
            format!("request body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Refused from its length alone; what the client is still sending is read and dropped
        // (a few megabytes at most) so that it gets the 413, not a broken pipe.
        discard_body(body).await;
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            discard_stream(stream).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// How much of a refused body is read and dropped before answering, at most, and for how long.
const REFUSED_BODY_DRAIN: usize = 4 * 1024 * 1024;
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what a client is still sending of a body we refuse (at most 4 MB, for at
/// most 2 s), so it gets our answer instead of a broken pipe: hyper closes a connection whose
/// request body was not read, and a client mid-upload sees only the reset. Past either bound
/// the connection is closed as before.
pub async fn discard_body(body: Body) {
    discard_stream(body.into_data_stream()).await;
}

async fn discard_stream(mut stream: axum::body::BodyDataStream) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > REFUSED_BODY_DRAIN {
                break;
            }
        }
    })
    .await;
}

/// 429 `rate_limited` for `who` (an address, a client) that must wait `wait`, with
/// `Retry-After` in whole seconds (at least one): the router's limits and a coordinator's.
pub fn rate_limited(wait: std::time::Duration, who: &str) -> Response {
    let secs = wait.as_secs().max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        error_code::RATE_LIMITED,
        format!("too many requests from {who}; try again in {secs} s"),
    )
    .into_response();
    set_header(resp.headers_mut(), "retry-after", &secs.to_string());
    resp
}

/// The `X-Request-Id` of a request, or a new one when the client sent none (or an unusable one).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(rma_proto::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        // A v4 UUID from the thread's generator: `Uuid::new_v4` asks the kernel each time (one
        // `getrandom` system call per request).
        .unwrap_or_else(|| {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        })
}

/// Inserts a header when the value is a valid header value; ids we mint always are.
pub fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The process-wide Prometheus recorder: [`metrics::install`] at each role's start.
pub fn prometheus() -> &'static PrometheusHandle {
    metrics::install()
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics_handler() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus().render(),
    )
        .into_response()
}

/// Adds what every role's router needs: JSON 404/405 fallbacks, panics turned into JSON 500,
/// and request tracing.
pub fn finish(router: Router) -> Router {
    router
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(format!("no route for {}", uri.path()))
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    error_code::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed on {}", uri.path()),
                )
            },
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("the server hit a bug handling this request").into_response()
            },
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_body_enforces_the_limit_with_and_without_length() {
        let mut h = HeaderMap::new();
        let ok = read_body(&h, Body::from("hello"), 5).await.expect("fits");
        assert_eq!(&ok[..], b"hello");
        let err = read_body(&h, Body::from("hello!"), 5)
            .await
            .expect_err("over");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        h.insert("content-length", HeaderValue::from_static("999"));
        let err = read_body(&h, Body::empty(), 5)
            .await
            .expect_err("declared over");
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn request_id_is_kept_or_minted() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h).len(), 36);
        h.insert("x-request-id", HeaderValue::from_static("abc-1"));
        assert_eq!(request_id(&h), "abc-1");
    }
}
