//! A handle on one worker's link: sends calls down it and matches the answers that the link's
//! session ([`crate::session`]) hands back by id. Cheap to clone; the registry keeps one per
//! linked worker.
//!
//! When the link closes, every pending call fails with [`CallError::Lost`] and dispatch tries
//! another worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rma_proto::{ServiceCall, ServiceReply, link};
use tokio::sync::{Notify, mpsc, oneshot};

/// Why a call to a worker (down its link or over its tunnel) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// The worker was lost before it answered (link closed, tunnel refused); the call may go to
    /// another worker.
    #[error("the worker was lost before it answered")]
    Lost,
    /// No answer within the request timeout.
    #[error("the worker did not answer in time")]
    Timeout,
}

/// What the session's writer sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One encoded link frame.
    Frame(Bytes),
    /// A WebSocket ping.
    Ping,
    /// Flush what is queued, close the socket, stop writing.
    Close,
}

/// Called with (done, total) as a worker reports progress on a call.
pub(crate) type ProgressFn = Arc<dyn Fn(u32, u32) + Send + Sync>;

/// A handle on one live link.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    tx: mpsc::Sender<Outbound>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    draining: AtomicBool,
    closed_notify: Notify,
    in_flight: AtomicU32,
}

struct Pending {
    answer: oneshot::Sender<ServiceReply>,
    progress: Option<ProgressFn>,
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
    /// A handle whose frames go to `tx` (the session's writer).
    pub(crate) fn new(tx: mpsc::Sender<Outbound>) -> Self {
        LinkHandle {
            inner: Arc::new(LinkInner {
                tx,
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                closed_notify: Notify::new(),
                in_flight: AtomicU32::new(0),
            }),
        }
    }

    /// A link with no socket behind it, open until closed: for tests of registry logic.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Self::new(mpsc::channel(1).0)
    }

    /// Counts `n` calls in flight without sending them: for tests of registry logic.
    #[cfg(test)]
    pub(crate) fn pretend_in_flight(&self, n: u32) {
        self.inner.in_flight.store(n, Ordering::Relaxed);
    }

    /// Whether it has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Whether the worker said goodbye: it finishes what it has but takes nothing new.
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Takes the worker out of rotation; answers to its calls still arrive.
    pub(crate) fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether two handles are the same link.
    pub(crate) fn same(&self, other: &LinkHandle) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Calls in flight on this link.
    pub(crate) fn in_flight(&self) -> u32 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Pending>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the link: its session ends and every pending call fails with `Lost`.
    pub(crate) fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.closed_notify.notify_waiters();
        }
        // Dropping the senders wakes each waiting call with an error.
        self.pending().clear();
    }

    /// Resolves once the link is closed.
    pub(crate) async fn closed(&self) {
        let notified = self.inner.closed_notify.notified();
        if self.is_closed() {
            return;
        }
        notified.await;
    }

    /// Queues a frame for the writer (the session's own messages: welcome, goodbye).
    pub(crate) async fn send_frame(&self, frame: Bytes) -> bool {
        self.inner.tx.send(Outbound::Frame(frame)).await.is_ok()
    }

    /// Asks the writer to close the socket after what is already queued.
    pub(crate) fn close_socket(&self) {
        let _ = self.inner.tx.try_send(Outbound::Close);
    }

    /// Tells the worker the services it is sent from now on (unless the queue is full: the
    /// registry, not the worker, decides where calls go, so a lost notice costs nothing but
    /// the worker's own view).
    pub(crate) fn assign(&self, services: Vec<String>) {
        let msg = link::LinkMessage::Assign { services };
        let _ = self
            .inner
            .tx
            .try_send(Outbound::Frame(Bytes::from(link::encode(&msg, &[]))));
    }

    /// Queues a ping unless the queue is full (then the link is busy with frames anyway).
    pub(crate) fn try_ping(&self) {
        let _ = self.inner.tx.try_send(Outbound::Ping);
    }

    /// Sends a call and waits for its answer up to `timeout`; `progress` hears the worker's
    /// progress reports meanwhile.
    pub(crate) async fn call(
        &self,
        call: &ServiceCall,
        timeout: Duration,
        progress: Option<ProgressFn>,
    ) -> Result<ServiceReply, CallError> {
        if self.is_closed() {
            return Err(CallError::Lost);
        }
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        let _guard = InFlight(&self.inner.in_flight);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, rx) = oneshot::channel();
        self.pending().insert(id, Pending { answer, progress });
        // The link may have closed between the check above and the insert.
        if self.is_closed() {
            self.pending().remove(&id);
            return Err(CallError::Lost);
        }
        let frame = Bytes::from(link::encode_request(id, call));
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = tokio::time::timeout_at(deadline, self.inner.tx.send(Outbound::Frame(frame)));
        let outcome = match sent.await {
            Ok(Ok(())) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(_)) => Err(CallError::Lost),
                Err(_) => Err(CallError::Timeout),
            },
            Ok(Err(_)) => Err(CallError::Lost),
            Err(_) => Err(CallError::Timeout),
        };
        self.pending().remove(&id);
        outcome
    }

    /// The session received the answer to call `id`.
    pub(crate) fn complete(&self, id: u64, reply: ServiceReply) {
        if let Some(p) = self.pending().remove(&id) {
            // The caller may have timed out and gone; nothing to do then.
            let _ = p.answer.send(reply);
        }
    }

    /// The session received progress of call `id`.
    pub(crate) fn progress(&self, id: u64, done: u32, total: u32) {
        let f = self.pending().get(&id).and_then(|p| p.progress.clone());
        if let Some(f) = f {
            f(done, total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_matched_by_id_and_a_close_fails_pending_calls() {
        let (tx, mut rx) = mpsc::channel(8);
        let link = LinkHandle::new(tx);
        let l2 = link.clone();
        let call = ServiceCall::post("echo", None, Bytes::from_static(b"hi"));
        let c2 = call.clone();
        let pending = tokio::spawn(async move { l2.call(&c2, Duration::from_secs(5), None).await });
        let Some(Outbound::Frame(frame)) = rx.recv().await else {
            panic!("a frame")
        };
        let Ok(link::LinkMessage::Request { id, call: sent }) = link::decode_bytes(&frame) else {
            panic!("a request")
        };
        assert_eq!(sent, call);
        link.complete(id, ServiceReply::ok(None, Bytes::from_static(b"hi")));
        let reply = pending.await.expect("task").expect("answered");
        assert_eq!(&reply.body[..], b"hi");

        let l3 = link.clone();
        let pending =
            tokio::spawn(async move { l3.call(&call, Duration::from_secs(5), None).await });
        let _ = rx.recv().await;
        link.close();
        assert_eq!(pending.await.expect("task"), Err(CallError::Lost));
        assert_eq!(link.in_flight(), 0);
    }
}
