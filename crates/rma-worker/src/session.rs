//! The worker's end of the link: dial the coordinator, then move frames between the WebSocket
//! and the session state machine ([`rma_proto::link::session`], which decides handshake,
//! silence and drain), running each request in its own task so a slow service never stops the
//! socket from answering pings.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::Exec as Registry;
use futures_util::{SinkExt, StreamExt};
use rma_proto::ServiceCall;
use rma_proto::link::session::{Action, End, Event, Session};
use rma_proto::link::{self, LinkMessage};
use rma_services::{Progress, ServiceRequest};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::WorkerConfig;
use crate::agent::AgentStatus;

/// How a link session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The coordinator does not know us: register again.
    Reregister(String),
    /// Connection lost or refused.
    Dropped(String),
    /// Drained on request: in-flight work finished, goodbye said.
    Drained,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// `http(s)://host/prefix` → `ws(s)://host/prefix/api/worker/link`.
pub(crate) fn link_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}/api/worker/link")
}

/// One link session: connect, hello, serve requests until the link drops or drains.
pub(crate) async fn run(
    config: &WorkerConfig,
    base: &str,
    coordinator_id: &str,
    services: Arc<Registry>,
    in_flight: Arc<AtomicU32>,
    status: &watch::Sender<AgentStatus>,
    mut drain: watch::Receiver<bool>,
) -> SessionEnd {
    rma_client::install_crypto_provider();
    let url = link_url(base);
    let limit = config.max_body_bytes + 64 * 1024;
    // Reads of at most 8 KiB: tungstenite zero-fills the whole read size before every read
    // (128 KiB by default), which cost more than the frame itself for small calls.
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(8 * 1024);
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return SessionEnd::Dropped(format!("link URL {url}: {e}")),
    };
    match format!("Bearer {}", config.identity.bearer()).parse() {
        Ok(v) => {
            request.headers_mut().insert("authorization", v);
        }
        Err(_) => return SessionEnd::Dropped("the credential is not a valid header".into()),
    }
    let connector = rma_client::tls_client_config().map(tokio_tungstenite::Connector::Rustls);
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_config), true, connector);
    let (ws, _) = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return SessionEnd::Dropped(format!("connecting to {url}: {e}")),
        Err(_) => return SessionEnd::Dropped(format!("connecting to {url}: timed out")),
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let mut writer = tokio::spawn(async move {
        // What is already queued goes out in one write: one system call for many answers.
        rma_http::batch::write_batched(&mut rx, &mut sink, link::WRITE_BATCH, Some).await;
        let _ = sink.close().await;
    });
    // Answers come back from the request tasks through here, into the session.
    let (answers_tx, mut answers) = mpsc::channel::<()>(256);

    let mut session = Session::worker(now(), &config.worker_id, Some(coordinator_id));
    let mut queue: VecDeque<Action> = VecDeque::new();
    let mut draining = *drain.borrow();
    if draining {
        queue.extend(session.drain());
    }
    // One timer for the session's life (re-armed once, when the welcome says the interval):
    // re-arming a sleep for every frame costs more than the frames themselves under load.
    let mut ticker = tokio::time::interval(session.ping_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While linked, heartbeats ride the link (the HTTP ones pause; see agent.rs).
    let beat_every = config.heartbeat_interval.max(Duration::from_millis(100));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + beat_every, beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = 'session: loop {
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(msg, body) => {
                    let frame = Message::Binary(link::encode(&msg, &body).into());
                    if tx.send(frame).await.is_err() {
                        break 'session SessionEnd::Dropped("could not write to the link".into());
                    }
                }
                Action::Ping => {}
                Action::Close(end) => break 'session end_of(end),
                Action::Deliver(Event::Challenge {
                    coordinator_id,
                    nonce,
                }) => {
                    // Prove we hold the key our credential names.
                    let signature = config.identity.sign_link(&coordinator_id, &nonce);
                    queue.extend(session.prove(signature));
                }
                Action::Deliver(Event::Welcome { coordinator_id }) => {
                    tracing::info!(coordinator = %coordinator_id, "link up");
                    ticker = tokio::time::interval(session.ping_interval());
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let ms = session.ping_interval().as_millis() as u64;
                    status.send_modify(|s| {
                        s.linked = true;
                        s.ping_interval_ms = ms;
                    });
                }
                Action::Deliver(Event::Tuned { ping_interval }) => {
                    tracing::debug!(
                        ping_interval_ms = ping_interval.as_millis() as u64,
                        "the coordinator retuned the link"
                    );
                    ticker = tokio::time::interval(ping_interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    status.send_modify(|s| s.ping_interval_ms = ping_interval.as_millis() as u64);
                }
                Action::Deliver(Event::Assigned {
                    services: now_assigned,
                }) => {
                    tracing::info!(services = ?now_assigned, "the coordinator changed this worker's services");
                    status.send_modify(|s| s.assigned_services = now_assigned);
                }
                Action::Deliver(Event::Request { id, call }) => {
                    spawn_request(
                        id,
                        call,
                        services.clone(),
                        in_flight.clone(),
                        tx.clone(),
                        answers_tx.clone(),
                    );
                }
                Action::Deliver(other) => tracing::debug!(?other, "unexpected on the link"),
            }
        }
        let actions = tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => session.on_frame(now(), &frame),
                Some(Ok(_)) => {
                    session.on_traffic(now());
                    Vec::new()
                }
                Some(Err(e)) => break 'session SessionEnd::Dropped(format!("link error: {e}")),
                None => break 'session SessionEnd::Dropped("link closed by the coordinator".into()),
            },
            Some(()) = answers.recv() => session.answer_sent(),
            _ = ticker.tick() => session.on_timeout(now()),
            _ = beat.tick(), if session.is_open() => {
                metrics::counter!("rma_worker_heartbeats_total", "result" => "ok").increment(1);
                vec![Action::Send(
                    LinkMessage::Heartbeat {
                        current_load: crate::load_per_core(),
                        active_requests: in_flight.load(Ordering::Relaxed),
                        heartbeats_failed: status.borrow().heartbeats_failed,
                    },
                    Default::default(),
                )]
            }
            _ = &mut writer => break 'session SessionEnd::Dropped("could not write to the link".into()),
            changed = drain.changed(), if !draining => {
                if changed.is_ok() && *drain.borrow() {
                    // Say goodbye first: the coordinator stops sending work, and the requests
                    // already here are finished before the link closes.
                    draining = true;
                    session.drain()
                } else {
                    Vec::new()
                }
            }
        };
        queue.extend(actions);
    };
    if matches!(end, SessionEnd::Drained) {
        // Let the last answers and the goodbye reach the coordinator before closing.
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    writer.abort();
    end
}

fn end_of(end: End) -> SessionEnd {
    match end {
        End::Drained => SessionEnd::Drained,
        End::Rejected { reason, message } if reason == "unknown_worker" => {
            SessionEnd::Reregister(message)
        }
        End::Rejected { message, .. } => SessionEnd::Dropped(message),
        other => SessionEnd::Dropped(other.to_string()),
    }
}

/// Runs one request in its own task. Progress goes straight to the link (advisory: a full
/// queue drops a report), and so does the answer, queued on the link's writer before the
/// session is told (which counts it, and closes a drained link once none is left) — one
/// hand-off per call less than passing the answer through the session.
fn spawn_request(
    id: u64,
    call: ServiceCall,
    services: Arc<Registry>,
    in_flight: Arc<AtomicU32>,
    frames: mpsc::Sender<Message>,
    answers: mpsc::Sender<()>,
) {
    let progress_frames = frames.clone();
    let req = ServiceRequest {
        call,
        progress: Progress::new(move |done, total| {
            let msg = LinkMessage::Progress { id, done, total };
            let _ = progress_frames.try_send(Message::Binary(link::encode(&msg, &[]).into()));
        }),
    };
    in_flight.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let reply = services.run(req).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        let frame = Message::Binary(link::encode_response(id, &reply).into());
        // A closed writer means the link is gone; the coordinator retries the call elsewhere.
        let _ = frames.send(frame).await;
        let _ = answers.send(()).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_urls() {
        assert_eq!(
            link_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/api/worker/link"
        );
        assert_eq!(
            link_url("https://c.example.org/x/"),
            "wss://c.example.org/x/api/worker/link"
        );
    }
}
