//! The router's end of the router link ([`rma_proto::relay`]): one WebSocket to each
//! coordinator, over which service requests are forwarded as frames — many at once on one
//! connection, written in batches — instead of one HTTP request each.
//!
//! A link is dialled in the background the first time a coordinator is sent a request, and
//! that request (and any until the link is up) goes over HTTP, as does everything when the
//! link is down, a body is larger than the coordinator takes, or the coordinator predates the
//! link (its 404 is remembered for a while). When a link closes, its calls in flight fail as a
//! lost connection would, and the forwarding policy tries the next coordinator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rma_client::RawResponse;
use rma_client::forward::ForwardError;
use rma_proto::relay::{self, RelayMessage};
use rma_proto::urls::AddressPolicy;
use rma_proto::{ServiceCall, headers};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How often the router pings a link.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Silence after which a link is given up (three pings unanswered).
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

/// The longest a dial may take (connection, TLS, upgrade).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Wait after a failed dial; it doubles with each failure in a row, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a coordinator that does not offer the link (404) is sent HTTP only.
const UNSUPPORTED_FOR: Duration = Duration::from_secs(600);

/// Largest request body sent over a link; larger ones go over HTTP. One connection carries
/// every call to a coordinator, so a large frame holds up the calls behind it for as long as it
/// takes to cross (a 256 KiB frame a fifth of a second on a 10 Mbit/s uplink); over HTTP it
/// shares the path with them instead. Scans and photos of letters are mostly larger.
pub(crate) const MAX_LINK_BODY: usize = 256 * 1024;

/// Largest answer read off a link: a service's result is bounded by the coordinator's own
/// limits; this only stops a broken peer from exhausting memory.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// The links of one router, by coordinator id.
#[derive(Default)]
pub(crate) struct Links {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    open: Arc<AtomicUsize>,
}

/// One coordinator's link, as far as it goes.
struct Slot {
    url: String,
    state: Mutex<SlotState>,
    /// Forwards to this coordinator in flight now, over either way.
    forwards: AtomicUsize,
}

/// A forward in flight to a coordinator; counted out when dropped.
pub(crate) struct Flight(Arc<Slot>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.forwards.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Forwards in flight to a coordinator (this one included) from which the link carries them.
/// A lone call is quickest on a connection of its own (no other task wakes for it); calls at
/// the same time share the link's writes.
pub(crate) const SHARE_FROM: usize = 2;

#[derive(Default)]
struct SlotState {
    conn: Option<Arc<Conn>>,
    dialing: bool,
    /// No dial before this (after a failure, or a 404).
    not_before: Option<Instant>,
    failures: u32,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Links {
    /// Counts a forward to coordinator `id` at `url` in flight, and says whether it goes over
    /// the link: when one is open, it can carry a body of `body_len` bytes, and at least
    /// [`SHARE_FROM`] forwards to that coordinator are in flight. When no link is open, one is
    /// dialled in the background with `credential` (the router's for that coordinator) unless
    /// a dial is under way or waiting out a failure.
    pub(crate) fn get(
        &self,
        id: &str,
        url: &str,
        body_len: usize,
        credential: &str,
        policy: AddressPolicy,
    ) -> (Flight, Option<Arc<Conn>>) {
        let slot = self.slot(id, url);
        let now_in_flight = slot.forwards.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = self.conn(&slot, id, credential, policy);
        let flight = Flight(slot);
        let conn = conn
            .filter(|c| now_in_flight >= SHARE_FROM && body_len <= c.max_body.min(MAX_LINK_BODY));
        (flight, conn)
    }

    fn slot(&self, id: &str, url: &str) -> Arc<Slot> {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(id) {
                Some(s) if s.url == url => s.clone(),
                old => {
                    // A coordinator that moved: its old link goes.
                    if let Some(conn) = old.and_then(|s| s.lock().conn.take()) {
                        conn.close();
                    }
                    let s = Arc::new(Slot {
                        url: url.to_owned(),
                        state: Mutex::default(),
                        forwards: AtomicUsize::new(0),
                    });
                    slots.insert(id.to_owned(), s.clone());
                    s
                }
            }
        }
    }

    /// The slot's open link, or none (dialling one when it may).
    fn conn(
        &self,
        slot: &Arc<Slot>,
        id: &str,
        credential: &str,
        policy: AddressPolicy,
    ) -> Option<Arc<Conn>> {
        let mut st = slot.lock();
        let now = Instant::now();
        if let Some(conn) = &st.conn {
            if !conn.is_closed() {
                return Some(conn.clone());
            }
            // Closed: a new one after a moment (a coordinator restarting is not dialled in a
            // loop while it comes up).
            st.conn = None;
            st.not_before = Some(now + FIRST_BACKOFF);
        }
        if st.dialing || st.not_before.is_some_and(|t| now < t) {
            return None;
        }
        st.dialing = true;
        drop(st);
        let (slot, credential, open) = (slot.clone(), credential.to_owned(), self.open.clone());
        let id = id.to_owned();
        tokio::spawn(async move {
            let dialled = tokio::time::timeout(DIAL_TIMEOUT, dial(&slot.url, &credential, policy))
                .await
                .unwrap_or_else(|_| Err(Dial::Failed("timed out".into())));
            let mut st = slot.lock();
            st.dialing = false;
            match dialled {
                Ok(conn) => {
                    tracing::debug!(coordinator = %id, "router link open");
                    st.failures = 0;
                    st.not_before = None;
                    st.conn = Some(conn.clone());
                    drop(st);
                    let n = open.fetch_add(1, Ordering::Relaxed) + 1;
                    metrics::gauge!("rma_router_coordinator_links").set(n as f64);
                    conn.closed_done(open);
                }
                Err(Dial::Unsupported) => {
                    tracing::info!(coordinator = %id, "coordinator offers no router link; forwarding over HTTP");
                    st.not_before = Some(Instant::now() + UNSUPPORTED_FOR);
                }
                Err(Dial::Failed(why)) => {
                    let wait = FIRST_BACKOFF
                        .saturating_mul(1 << st.failures.min(5))
                        .min(MAX_BACKOFF);
                    st.failures += 1;
                    tracing::debug!(coordinator = %id, error = %why, retry_in_s = wait.as_secs(), "router link not opened; forwarding over HTTP");
                    st.not_before = Some(Instant::now() + wait);
                }
            }
        });
        None
    }

    /// Forgets coordinators not in `keep` (they left the registry), closing their links.
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|id, slot| {
            let kept = keep(id);
            if !kept && let Some(conn) = slot.lock().conn.take() {
                conn.close();
            }
            kept
        });
    }
}

/// Why a dial did not give a link.
enum Dial {
    /// The coordinator answered the upgrade with 404 (or 405): it has no router link.
    Unsupported,
    /// Anything else: unreachable, refused, timed out.
    Failed(String),
}

/// `http(s)://host/prefix` → `ws(s)://host/prefix/api/router/link`.
fn link_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}{}", relay::PATH)
}

/// Connects to the coordinator at `base` (only to addresses `policy` allows, as every
/// forward) and upgrades to a router link.
async fn dial(base: &str, credential: &str, policy: AddressPolicy) -> Result<Arc<Conn>, Dial> {
    let failed = |e: &dyn std::fmt::Display| Dial::Failed(e.to_string());
    let url = link_url(base);
    let mut request = url.as_str().into_client_request().map_err(|e| failed(&e))?;
    let value = HeaderValue::from_str(credential).map_err(|e| failed(&e))?;
    request
        .headers_mut()
        .insert(HeaderName::from_static(headers::ROUTER_CREDENTIAL), value);
    let uri = request.uri().clone();
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let addrs = rma_client::guard::resolve_allowed(policy, host)
        .await
        .map_err(|e| failed(&e))?;
    let mut last = String::from("no address");
    let mut stream = None;
    for mut a in addrs {
        a.set_port(port);
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let stream = stream.ok_or(Dial::Failed(last))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_ANSWER_BYTES))
        .max_frame_size(Some(MAX_ANSWER_BYTES))
        .read_buffer_size(8 * 1024);
    let connector = rma_client::tls_client_config().map(tokio_tungstenite::Connector::Rustls);
    let (ws, resp) =
        tokio_tungstenite::client_async_tls_with_config(request, stream, Some(config), connector)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r)
                    if matches!(r.status().as_u16(), 404 | 405) =>
                {
                    Dial::Unsupported
                }
                tokio_tungstenite::tungstenite::Error::Http(r) => {
                    Dial::Failed(format!("the upgrade was answered {}", r.status()))
                }
                e => failed(&e),
            })?;
    // Without a stated limit, only bodies the coordinator's default would take go this way.
    let max_body = resp
        .headers()
        .get(relay::MAX_BODY_HEADER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(2 * 1024 * 1024);
    Ok(Conn::start(ws, max_body))
}

/// The writing half of a link, shared by the calls (no writer task: see
/// [`rma_http::batch::SharedSink`]).
type Out = rma_http::batch::SharedSink<
    futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    Message,
>;

/// One open link: sends calls, matches answers by id.
pub(crate) struct Conn {
    out: Arc<Out>,
    pending: Mutex<HashMap<u64, oneshot::Sender<RawResponse>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    close: tokio::sync::Notify,
    done: tokio::sync::Notify,
    max_body: usize,
}

impl Conn {
    fn start(
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        max_body: usize,
    ) -> Arc<Conn> {
        let (sink, mut stream) = ws.split();
        let out = Out::new(sink, rma_proto::link::WRITE_BATCH);
        let conn = Arc::new(Conn {
            out,
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
            done: tokio::sync::Notify::new(),
            max_body,
        });
        let reader = conn.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PING_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut heard = Instant::now();
            let why = loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Binary(frame))) => {
                            heard = Instant::now();
                            match relay::decode(&frame) {
                                Ok((RelayMessage::Answer { id, status, headers }, body)) => {
                                    reader.answered(id, status, &headers, body);
                                }
                                Ok((other, _)) => break format!("unexpected frame: {other:?}"),
                                Err(e) => break format!("bad frame: {e}"),
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => break "closed by the coordinator".to_owned(),
                        Some(Ok(_)) => heard = Instant::now(),
                        Some(Err(e)) => break format!("link error: {e}"),
                    },
                    _ = ticker.tick() => {
                        if heard.elapsed() > SILENCE_LIMIT {
                            break format!("the coordinator was silent for {} s", SILENCE_LIMIT.as_secs());
                        }
                        // Not awaited here: a write that waits must not stop the reading.
                        let out = reader.out.clone();
                        tokio::spawn(async move { out.send(Message::Ping(Bytes::new())).await });
                    }
                    _ = reader.close.notified() => break "closed by the router".to_owned(),
                    _ = reader.out.closed() => break "could not write to the link".to_owned(),
                }
            };
            tracing::debug!(reason = %why, "router link closed");
            reader.closed.store(true, Ordering::Release);
            // Calls waiting on an answer fail now (their senders drop) and are tried elsewhere.
            reader.lock_pending().clear();
            // A close frame goes if it can.
            let _ = tokio::time::timeout(Duration::from_secs(1), reader.out.close()).await;
            reader.done.notify_one();
        });
        conn
    }

    /// Counts the link out of `open` once it has closed.
    fn closed_done(self: Arc<Self>, open: Arc<AtomicUsize>) {
        tokio::spawn(async move {
            if !self.is_closed() {
                self.done.notified().await;
            }
            let n = open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            metrics::gauge!("rma_router_coordinator_links").set(n as f64);
        });
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<RawResponse>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.close.notify_one();
    }

    fn answered(&self, id: u64, status: u16, pairs: &[(String, String)], body: Bytes) {
        let Some(waiting) = self.lock_pending().remove(&id) else {
            return; // Its caller gave up (timed out, went away).
        };
        let mut headers = HeaderMap::with_capacity(pairs.len());
        for (n, v) in pairs {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.append(n, v);
            }
        }
        let status =
            reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
        let _ = waiting.send(RawResponse {
            status,
            headers,
            body,
        });
    }

    /// Forwards `call` with `extra` headers (and its content type and request id), as
    /// [`rma_client::forward::Forwarder::send`] does over HTTP.
    pub(crate) async fn send(
        &self,
        call: &ServiceCall,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse, ForwardError> {
        let lost = |why: &str| ForwardError::Transport {
            url: "router link".to_owned(),
            message: why.to_owned(),
        };
        let mut headers = Vec::with_capacity(extra.len() + 2);
        if let Some(ct) = &call.content_type {
            headers.push(("content-type".to_owned(), ct.clone()));
        }
        if let Some(id) = &call.request_id {
            headers.push((headers::REQUEST_ID.to_owned(), id.clone()));
        }
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = RelayMessage::Call {
            id,
            method: call.method.clone(),
            path: format!("/{}", call.url_path()),
            headers,
        };
        let frame = relay::encode(&msg, &call.body);
        let (answer, answered) = oneshot::channel();
        self.lock_pending().insert(id, answer);
        // However this ends (an answer, a timeout, the caller gone), the call is not waited on.
        let _forget = Forget { conn: self, id };
        if self.is_closed() {
            return Err(lost("the link closed"));
        }
        self.out
            .send(Message::Binary(frame.into()))
            .await
            .map_err(|_| lost("the link closed"))?;
        answered
            .await
            .map_err(|_| lost("the link closed before the coordinator answered"))
    }
}

/// Removes a call from the pending map when its caller stops waiting.
struct Forget<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.conn.lock_pending().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_urls_keep_scheme_host_and_prefix() {
        assert_eq!(
            link_url("http://127.0.0.1:9/"),
            "ws://127.0.0.1:9/api/router/link"
        );
        assert_eq!(
            link_url("https://c.example.org/rma"),
            "wss://c.example.org/rma/api/router/link"
        );
    }
}
