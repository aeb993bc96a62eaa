//! The coordinator's end of the router link ([`rma_proto::relay`]): the WebSocket a router
//! dials at `GET /api/router/link` to forward service requests without an HTTP request each.
//! Every call is run through the coordinator's own app — the same routes, layers and checks
//! (the caller's credential, a client's rate, body limits) as the HTTP request it stands for —
//! and its answer goes back as one frame, batched with whatever else is ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use rma_auth::Role;
use rma_http::{ApiError, set_header};
use rma_proto::relay::{self, RelayMessage};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::AppState;

/// How often the coordinator pings a router link.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Silence after which a router link is given up (three pings unanswered).
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// How long calls in flight may take to answer once the coordinator is stopping.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Counts an open router link for as long as it lives.
struct Open(Arc<crate::Inner>);

impl Drop for Open {
    fn drop(&mut self) {
        let n = self.0.router_links.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("rma_coordinator_router_links").set(n as f64);
    }
}

/// `GET /api/router/link`: 401/403 before the upgrade unless the request carries this
/// federation's router credential made out to this coordinator.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    match state.service_caller(&headers) {
        Err(e) => return e.into_response(),
        Ok(c) if c.role != Role::Router => {
            return ApiError::forbidden(format!(
                "the router link is for this federation's router, not a {} credential ({}); send service requests over HTTP",
                c.role, c.sub
            ))
            .into_response();
        }
        Ok(_) => {}
    }
    let limit = state.config().max_body_bytes;
    // A call is its body and a header (64 KB at most); an answer the same, the other way.
    let frame_limit = limit + rma_proto::link::MAX_HEADER_LEN + 4;
    let app = crate::api::app(state.clone());
    let peer = peer.map(|axum::Extension(p)| p);
    let mut resp = ws
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .read_buffer_size(8 * 1024)
        .on_upgrade(move |socket| serve(state, app, peer, socket));
    set_header(
        resp.headers_mut(),
        relay::MAX_BODY_HEADER,
        &limit.to_string(),
    );
    resp
}

/// Serves one router link until it closes, falls silent, or the coordinator stops; then
/// answers what is in flight and closes.
async fn serve(
    state: AppState,
    app: Router,
    peer: Option<ConnectInfo<SocketAddr>>,
    socket: WebSocket,
) {
    let inner = state.inner.clone();
    let n = inner.router_links.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::gauge!("rma_coordinator_router_links").set(n as f64);
    let _open = Open(inner.clone());
    let (sink, mut stream) = socket.split();
    let out = rma_http::batch::SharedSink::new(sink, rma_proto::link::WRITE_BATCH);
    let calls = Arc::new(Calls::default());
    let mut shutdown = state.shutdown();
    let mut ticker = tokio::time::interval(PING_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    let why = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    heard = Instant::now();
                    match relay::decode(&frame) {
                        Ok((RelayMessage::Call { id, method, path, headers }, body)) => {
                            inner.router_link_calls.fetch_add(1, Ordering::Relaxed);
                            let call = Call { id, method, path, headers, body };
                            let running = calls.start();
                            let (app, out) = (app.clone(), out.clone());
                            // Each call in its own task, which writes its answer itself.
                            tokio::spawn(async move {
                                answer(app, peer, &out, call).await;
                                drop(running);
                            });
                        }
                        Ok((other, _)) => break format!("unexpected frame on a router link: {other:?}"),
                        Err(e) => break format!("bad frame on a router link: {e}"),
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "closed by the router".to_owned(),
                Some(Ok(_)) => heard = Instant::now(),
                Some(Err(e)) => break format!("router link error: {e}"),
            },
            _ = ticker.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    break format!("the router was silent for {} s", SILENCE_LIMIT.as_secs());
                }
                // Not awaited here: a write that waits must not stop the reading.
                let out = out.clone();
                tokio::spawn(async move { out.send(Message::Ping(Bytes::new())).await });
            }
            _ = shutdown.wait() => break "coordinator shutting down".to_owned(),
            _ = out.closed() => break "could not write to the router link".to_owned(),
        }
    };
    tracing::debug!(reason = %why, "router link ending");
    // What is running still answers (its router is waiting on it); nothing new is read.
    let _ = tokio::time::timeout(DRAIN_LIMIT, calls.idle()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), out.close()).await;
}

/// Calls of one link still running.
#[derive(Default)]
struct Calls {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One running call; counted out when dropped.
struct Running(Arc<Calls>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Calls {
    fn start(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    /// Resolves once no call is running.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

type Out =
    rma_http::batch::SharedSink<futures_util::stream::SplitSink<WebSocket, Message>, Message>;

/// One call as it came off the link.
struct Call {
    id: u64,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Runs one call through the app and sends its answer.
async fn answer(app: Router, peer: Option<ConnectInfo<SocketAddr>>, out: &Arc<Out>, call: Call) {
    let id = call.id;
    let resp = match request_of(call, peer) {
        Ok(req) => match app.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        Err(e) => e.into_response(),
    };
    let (parts, body) = resp.into_parts();
    // Answers are our own handlers' (a service's result, an error): bounded by what they make.
    let (status, body) = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => (parts.status, b),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Bytes::from(
                serde_json::json!({
                    "error": rma_proto::error_code::UPSTREAM_FAILED,
                    "message": format!("the answer could not be read: {e}"),
                })
                .to_string(),
            ),
        ),
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let msg = RelayMessage::Answer {
        id,
        status: status.as_u16(),
        headers,
    };
    let _ = out
        .send(Message::Binary(relay::encode(&msg, &body).into()))
        .await;
}

/// The HTTP request a call stands for; only service requests travel the link.
fn request_of(
    call: Call,
    peer: Option<ConnectInfo<SocketAddr>>,
) -> Result<Request<Body>, ApiError> {
    if !call.path.starts_with(relay::SERVICE_PREFIX) {
        return Err(ApiError::not_found(format!(
            "only service requests ({}…) travel the router link, not {:?}",
            relay::SERVICE_PREFIX,
            call.path
        )));
    }
    let bad = |what: &str, e: &dyn std::fmt::Display| ApiError::bad_request(format!("{what}: {e}"));
    let mut req = Request::builder()
        .method(call.method.as_str())
        .uri(call.path.as_str())
        .body(Body::from(call.body))
        .map_err(|e| bad("request", &e))?;
    let headers = req.headers_mut();
    for (name, value) in &call.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad("header name", &e))?;
        let value = HeaderValue::from_str(value).map_err(|e| bad("header value", &e))?;
        headers.append(name, value);
    }
    if let Some(p) = peer {
        req.extensions_mut().insert(p);
    }
    Ok(req)
}
