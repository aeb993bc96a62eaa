//! The coordinator's end of the link: the WebSocket a worker dials at `GET /api/worker/link`.
//!
//! A [`LinkHandle`] sends requests down one link and matches answers by id. The session task
//! reads answers, pings the worker, and takes the worker out of rotation the moment the link
//! closes or falls silent: pending requests then fail with [`LinkError::Closed`] and dispatch
//! retries them on another worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rma_proto::link::{self, LinkMessage, PROTOCOL_VERSION};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::AppState;

/// One service call to send down a link.
#[derive(Debug, Clone)]
pub struct Call {
    /// Service type.
    pub service: String,
    /// HTTP method.
    pub method: String,
    /// Sub-path after `/api/service/{type}`.
    pub path: String,
    /// Query string without `?`.
    pub query: String,
    /// Content-Type of the body.
    pub content_type: Option<String>,
    /// End-to-end request id.
    pub request_id: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// A worker's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: Option<String>,
    /// Body.
    pub body: Bytes,
}

/// Why a call down a link failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The link closed before the answer came; the request may go to another worker.
    #[error("the worker's link closed")]
    Closed,
    /// No answer within the request timeout.
    #[error("the worker did not answer in time")]
    Timeout,
}

/// A handle on one live link. Cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    inner: Arc<LinkInner>,
}

/// Called with (done, total) as a worker reports progress on a call.
pub type ProgressFn = std::sync::Arc<dyn Fn(u32, u32) + Send + Sync>;

struct LinkInner {
    tx: mpsc::Sender<Message>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    progress: Mutex<HashMap<u64, ProgressFn>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    draining: AtomicBool,
    closed_notify: Notify,
    in_flight: AtomicU32,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle")
            .field("closed", &self.is_closed())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Decrements the in-flight count however the call ends.
struct InFlight<'a>(&'a AtomicU32);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LinkHandle {
    fn new(tx: mpsc::Sender<Message>) -> Self {
        LinkHandle {
            inner: Arc::new(LinkInner {
                tx,
                pending: Mutex::new(HashMap::new()),
                progress: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                closed_notify: Notify::new(),
                in_flight: AtomicU32::new(0),
            }),
        }
    }

    /// A link with no socket behind it, open until closed: for tests of registry logic.
    pub fn detached() -> Self {
        Self::new(mpsc::channel(1).0)
    }

    /// Whether it has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Whether the worker said goodbye: it finishes what it has but takes nothing new.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Whether two handles are the same link.
    pub fn same(&self, other: &LinkHandle) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Calls in flight on this link.
    pub fn in_flight(&self) -> u32 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the link: its session ends and every pending call fails with `Closed`.
    pub fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.closed_notify.notify_waiters();
        }
        // Dropping the senders wakes each waiting call with an error.
        self.pending().clear();
    }

    async fn closed(&self) {
        let notified = self.inner.closed_notify.notified();
        if self.is_closed() {
            return;
        }
        notified.await;
    }

    fn progress_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ProgressFn>> {
        self.inner
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a call and waits for its answer up to `timeout`; `progress` hears the worker's
    /// progress reports meanwhile.
    pub async fn call(
        &self,
        call: Call,
        timeout: Duration,
        progress: Option<ProgressFn>,
    ) -> Result<Reply, LinkError> {
        if self.is_closed() {
            return Err(LinkError::Closed);
        }
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(&self.inner.in_flight);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = progress {
            self.progress_map().insert(id, p);
        }
        let result = self.call_inner(id, call, timeout).await;
        self.progress_map().remove(&id);
        result
    }

    async fn call_inner(&self, id: u64, call: Call, timeout: Duration) -> Result<Reply, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        // The link may have closed between the check above and the insert.
        if self.is_closed() {
            self.pending().remove(&id);
            return Err(LinkError::Closed);
        }
        let header = LinkMessage::Request {
            id,
            service: call.service,
            method: call.method,
            path: call.path,
            query: call.query,
            content_type: call.content_type,
            request_id: call.request_id,
        };
        let frame = link::encode(&header, &call.body);
        let sent =
            tokio::time::timeout(timeout, self.inner.tx.send(Message::Binary(frame.into()))).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.pending().remove(&id);
                return Err(LinkError::Closed);
            }
            Err(_) => {
                self.pending().remove(&id);
                return Err(LinkError::Timeout);
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => {
                self.pending().remove(&id);
                Err(LinkError::Timeout)
            }
        }
    }

    fn complete(&self, id: u64, reply: Reply) {
        if let Some(tx) = self.pending().remove(&id) {
            // The caller may have timed out and gone; nothing to do then.
            let _ = tx.send(reply);
        }
    }
}

fn reject(reason: &str, message: String) -> Message {
    Message::Binary(
        link::encode(
            &LinkMessage::Reject {
                reason: reason.into(),
                message,
            },
            &[],
        )
        .into(),
    )
}

/// Runs one link session until the socket closes, falls silent, or the coordinator stops.
pub async fn serve(state: AppState, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let cfg = state.config().clone();

    // The worker speaks first.
    let hello = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    let worker_id = match hello {
        Ok(Some(Ok(Message::Binary(frame)))) => match link::decode(&frame) {
            Ok((
                LinkMessage::Hello {
                    protocol_version,
                    worker_id,
                },
                _,
            )) => {
                if protocol_version != PROTOCOL_VERSION {
                    let _ = sink
                        .send(reject(
                            "protocol_version",
                            format!("this coordinator speaks link protocol {PROTOCOL_VERSION}, the worker {protocol_version}; upgrade the older side"),
                        ))
                        .await;
                    return;
                }
                worker_id
            }
            Ok((other, _)) => {
                tracing::debug!(?other, "link opened without a hello");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "undecodable link hello");
                return;
            }
        },
        _ => return,
    };

    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let link = LinkHandle::new(tx);
    let attached = state
        .workers()
        .attach_link(&worker_id, link.clone(), Instant::now());
    match attached {
        None => {
            let _ = sink
                .send(reject(
                    "unknown_worker",
                    format!("worker {worker_id:?} is not registered here; register first"),
                ))
                .await;
            return;
        }
        Some(Some(old)) => old.close(),
        Some(None) => {}
    }
    let welcome = LinkMessage::Welcome {
        protocol_version: PROTOCOL_VERSION,
        coordinator_id: cfg.id.clone(),
        ping_interval_ms: cfg.link_ping_interval.as_millis() as u64,
    };
    if sink
        .send(Message::Binary(link::encode(&welcome, &[]).into()))
        .await
        .is_err()
    {
        state.workers().detach_link(&worker_id, &link);
        link.close();
        return;
    }
    tracing::info!(worker = %worker_id, "link up");
    metrics::gauge!("rma_coordinator_links").increment(1.0);
    state.inventory_changed();

    let writer_link = link.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        writer_link.close();
        let _ = sink.close().await;
    });

    let mut shutdown = state.shutdown();
    let mut ping = tokio::time::interval(cfg.link_ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence_limit = cfg.link_ping_interval * cfg.link_ping_misses;
    let mut last_heard = Instant::now();
    let why = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    last_heard = Instant::now();
                    match link::decode(&frame) {
                        Ok((LinkMessage::Response { id, status, content_type }, range)) => {
                            link.complete(id, Reply { status, content_type, body: frame.slice(range) });
                        }
                        Ok((LinkMessage::Progress { id, done, total }, _)) => {
                            let f = link.progress_map().get(&id).cloned();
                            if let Some(f) = f {
                                f(done, total);
                            }
                        }
                        Ok((LinkMessage::Goodbye { reason }, _)) => {
                            // Out of rotation at once; the link stays open for the answers to
                            // the requests the worker is finishing.
                            link.inner.draining.store(true, Ordering::Release);
                            tracing::info!(worker = %worker_id, %reason, "worker is draining; out of rotation");
                            state.inventory_changed();
                            // The acknowledgement follows every request already queued for it, so
                            // once the worker has it, nothing new is coming.
                            let ack = LinkMessage::Goodbye { reason: "acknowledged".into() };
                            let _ = link.inner.tx.send(Message::Binary(link::encode(&ack, &[]).into())).await;
                        }
                        Ok((other, _)) => tracing::debug!(worker = %worker_id, ?other, "unexpected link message"),
                        Err(e) => tracing::warn!(worker = %worker_id, error = %e, "undecodable link frame"),
                    }
                }
                Some(Ok(Message::Pong(_) | Message::Ping(_) | Message::Text(_))) => last_heard = Instant::now(),
                Some(Ok(Message::Close(_))) | None => break "link closed".to_owned(),
                Some(Err(e)) => break format!("link error: {e}"),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() >= silence_limit {
                    break format!("link silent for {} ms", silence_limit.as_millis());
                }
                // A full queue means the link is busy with frames anyway; skip this ping.
                let _ = link.inner.tx.try_send(Message::Ping(Bytes::new()));
            }
            _ = link.closed() => break "link replaced or closed".to_owned(),
            _ = shutdown.wait() => break "coordinator shutting down".to_owned(),
        }
    };
    link.close();
    state.workers().detach_link(&worker_id, &link);
    writer.abort();
    metrics::gauge!("rma_coordinator_links").decrement(1.0);
    tracing::info!(worker = %worker_id, reason = %why, "link down; worker out of rotation");
    state.inventory_changed();
}
