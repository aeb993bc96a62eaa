//! The worker's agent: register (through the router or straight at a coordinator), heartbeat,
//! and keep the link — the one outbound WebSocket over which the coordinator sends work. No
//! listening port, no tunnel. When the link drops, the agent registers again and reconnects,
//! with backoff and jitter; it keeps its worker id throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rma_client::{Backoff, Client};
use rma_proto::Capabilities;
use rma_proto::api::{WorkerHeartbeat, WorkerRegister};
use rma_proto::link::{self, LinkMessage, PROTOCOL_VERSION};
use rma_services::{Progress, Registry, ServiceRequest};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::WorkerConfig;

/// What the agent is doing, for `rma worker`'s log and for tests to wait on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// The coordinator holding the registration.
    pub coordinator_id: Option<String>,
    /// Whether the link is up.
    pub linked: bool,
    /// Services assigned at the last registration.
    pub assigned_services: Vec<String>,
    /// Successful registrations so far.
    pub registrations: u32,
}

/// How a link session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The coordinator does not know us: register again.
    Reregister(String),
    /// Connection lost or refused.
    Dropped(String),
    /// Drained on request: in-flight work finished, goodbye said.
    Drained,
}

/// Runs the agent until aborted.
pub async fn run(
    config: WorkerConfig,
    caps: Capabilities,
    services: Arc<Registry>,
    status: watch::Sender<AgentStatus>,
    drain: watch::Receiver<bool>,
) {
    let client = match Client::new(&config.coordinator_url) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "bad coordinator URL; the worker cannot start");
            return;
        }
    };
    let in_flight = Arc::new(AtomicU32::new(0));
    let mut backoff = Backoff::new();
    loop {
        if *drain.borrow() {
            return;
        }
        let req = WorkerRegister {
            worker_id: config.worker_id.clone(),
            capabilities: caps.clone(),
            worker_type: config.worker_type,
            tunnel_url: config.tunnel_url.clone(),
            services: Some(services.names()),
        };
        let reg = match client.register_worker(&req).await {
            Ok(r) => r,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "registration failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        tracing::info!(coordinator = %reg.coordinator_id, r#type = %reg.worker_type, services = ?reg.assigned_services, "registered");
        status.send_modify(|s| {
            s.coordinator_id = Some(reg.coordinator_id.clone());
            s.assigned_services = reg.assigned_services.clone();
            s.registrations += 1;
            s.linked = false;
        });
        let link_base = reg
            .coordinator_url
            .clone()
            .unwrap_or_else(|| config.coordinator_url.clone());
        let started = Instant::now();
        let end = tokio::select! {
            end = session(&config, &link_base, services.clone(), in_flight.clone(), &status, drain.clone()), if config.use_link => end,
            _ = wait_drain(drain.clone()), if !config.use_link => SessionEnd::Drained,
            end = heartbeats(&client, &config, in_flight.clone()) => end,
        };
        status.send_modify(|s| s.linked = false);
        // A link that stayed up a while earns a fresh backoff.
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        let wait = backoff.next_delay();
        match end {
            SessionEnd::Reregister(why) => {
                tracing::info!(reason = %why, retry_in_ms = wait.as_millis() as u64, "registering again")
            }
            SessionEnd::Dropped(why) => {
                tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "link lost; reconnecting")
            }
            SessionEnd::Drained => {
                tracing::info!("drained: in-flight work finished; goodbye");
                return;
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// Resolves when a drain is asked for.
async fn wait_drain(mut drain: watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Heartbeats every interval; ends when the coordinator (or router) no longer knows the worker.
async fn heartbeats(
    client: &Client,
    config: &WorkerConfig,
    in_flight: Arc<AtomicU32>,
) -> SessionEnd {
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the registration was the first sign of life
    loop {
        tick.tick().await;
        let hb = WorkerHeartbeat {
            worker_id: config.worker_id.clone(),
            status: "ok".into(),
            current_load: crate::load_per_core(),
            active_requests: in_flight.load(Ordering::Relaxed),
        };
        match client.worker_heartbeat(&hb).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(rma_client::HttpStatus::NOT_FOUND) => {
                return SessionEnd::Reregister("heartbeat answered 404".into());
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// `http(s)://host/prefix` → `ws(s)://host/prefix/api/worker/link`.
pub fn link_url(base: &str) -> String {
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

/// One link session: connect, hello, serve requests until the link drops.
async fn session(
    config: &WorkerConfig,
    base: &str,
    services: Arc<Registry>,
    in_flight: Arc<AtomicU32>,
    status: &watch::Sender<AgentStatus>,
    mut drain: watch::Receiver<bool>,
) -> SessionEnd {
    rma_client::install_crypto_provider();
    let url = link_url(base);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_body_bytes + 64 * 1024))
        .max_frame_size(Some(config.max_body_bytes + 64 * 1024));
    let connect = tokio_tungstenite::connect_async_with_config(&url, Some(ws_config), true);
    let (ws, _) = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return SessionEnd::Dropped(format!("connecting to {url}: {e}")),
        Err(_) => return SessionEnd::Dropped(format!("connecting to {url}: timed out")),
    };
    let (mut sink, mut stream) = ws.split();
    let hello = LinkMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        worker_id: config.worker_id.clone(),
    };
    if let Err(e) = sink
        .send(Message::Binary(link::encode(&hello, &[]).into()))
        .await
    {
        return SessionEnd::Dropped(format!("sending hello: {e}"));
    }
    let ping_interval = loop {
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        match first {
            Ok(Some(Ok(Message::Binary(frame)))) => match link::decode(&frame) {
                Ok((
                    LinkMessage::Welcome {
                        coordinator_id,
                        ping_interval_ms,
                        ..
                    },
                    _,
                )) => {
                    tracing::info!(coordinator = %coordinator_id, "link up");
                    break Duration::from_millis(ping_interval_ms.max(100));
                }
                Ok((LinkMessage::Reject { reason, message }, _)) if reason == "unknown_worker" => {
                    return SessionEnd::Reregister(message);
                }
                Ok((LinkMessage::Reject { message, .. }, _)) => {
                    return SessionEnd::Dropped(message);
                }
                Ok((other, _)) => {
                    return SessionEnd::Dropped(format!("unexpected first message {other:?}"));
                }
                Err(e) => return SessionEnd::Dropped(format!("undecodable first message: {e}")),
            },
            Ok(Some(Ok(_))) => continue, // pings before the welcome
            Ok(Some(Err(e))) => return SessionEnd::Dropped(format!("link error: {e}")),
            Ok(None) => return SessionEnd::Dropped("link closed before the welcome".into()),
            Err(_) => return SessionEnd::Dropped("no welcome within 10 s".into()),
        }
    };
    status.send_modify(|s| s.linked = true);

    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    // The coordinator pings every interval; several silent intervals mean it is gone.
    let silence_limit = ping_interval * 10;
    let mut watchdog = tokio::time::interval(ping_interval);
    let mut last_heard = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut draining = false;
    let mut acknowledged = false;
    let end = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    last_heard = Instant::now();
                    match link::decode(&frame) {
                        Ok((LinkMessage::Request { id, service, method, path, query, content_type, request_id }, range)) => {
                            let progress_tx = tx.clone();
                            let req = ServiceRequest {
                                method,
                                path,
                                query,
                                content_type,
                                body: frame.slice(range),
                                request_id,
                                progress: Progress::new(move |done, total| {
                                    // Progress is advisory: a full queue drops a report.
                                    let msg = LinkMessage::Progress { id, done, total };
                                    let _ = progress_tx.try_send(Message::Binary(link::encode(&msg, &[]).into()));
                                }),
                            };
                            let services = services.clone();
                            let tx = tx.clone();
                            let in_flight = in_flight.clone();
                            in_flight.fetch_add(1, Ordering::Relaxed);
                            tasks.spawn(async move {
                                let resp = services.dispatch(&service, req).await;
                                in_flight.fetch_sub(1, Ordering::Relaxed);
                                let header = LinkMessage::Response { id, status: resp.status, content_type: resp.content_type };
                                let _ = tx.send(Message::Binary(link::encode(&header, &resp.body).into())).await;
                            });
                        }
                        Ok((LinkMessage::Goodbye { .. }, _)) if draining => {
                            // The coordinator acknowledged: nothing new will come.
                            acknowledged = true;
                            if tasks.is_empty() {
                                break SessionEnd::Drained;
                            }
                        }
                        Ok((LinkMessage::Goodbye { reason }, _)) => break SessionEnd::Dropped(format!("coordinator said goodbye: {reason}")),
                        Ok((other, _)) => tracing::debug!(?other, "unexpected link message"),
                        Err(e) => tracing::warn!(error = %e, "undecodable link frame"),
                    }
                }
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(e)) => break SessionEnd::Dropped(format!("link error: {e}")),
                None => break SessionEnd::Dropped("link closed by the coordinator".into()),
            },
            _ = watchdog.tick() => {
                if last_heard.elapsed() >= silence_limit {
                    break SessionEnd::Dropped(format!("coordinator silent for {} ms", silence_limit.as_millis()));
                }
            }
            _ = &mut writer => break SessionEnd::Dropped("could not write to the link".into()),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                if acknowledged && tasks.is_empty() {
                    break SessionEnd::Drained;
                }
            }
            changed = drain.changed(), if !draining => {
                if changed.is_ok() && *drain.borrow() {
                    // Say goodbye first: the coordinator stops sending work, and the requests
                    // already here are finished before the link closes.
                    draining = true;
                    let bye = LinkMessage::Goodbye { reason: "draining".into() };
                    let _ = tx.send(Message::Binary(link::encode(&bye, &[]).into())).await;
                }
            }
        }
    };
    if matches!(end, SessionEnd::Drained) {
        // Let the last answers and the goodbye reach the coordinator before closing.
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    writer.abort();
    end
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
