//! The coordinator's end of the link: the WebSocket a worker dials at `GET /api/worker/link`.
//! Thin glue between the socket and the session state machine
//! ([`rma_proto::link::session`], which decides handshake, pings, silence and drain): it
//! attaches the worker's [`LinkHandle`] to the registry on hello, hands answers and progress to
//! it, and takes the worker out of rotation the moment the session ends.

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rma_http::Shutdown;
use rma_proto::link;
use rma_proto::link::session::{Action, Event, Session};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::link::{LinkHandle, Outbound};
use crate::registry::Registry;

/// What a link session needs from the coordinator.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    /// This coordinator's id, sent in the welcome.
    pub(crate) coordinator_id: String,
    /// How often the link is pinged.
    pub(crate) ping_interval: Duration,
    /// Silent intervals before the link is given up.
    pub(crate) ping_misses: u32,
}

/// Whether the hello comes from the node the credential names and is signed with its key.
fn check_hello(
    claims: &rma_auth::Claims,
    coordinator_id: &str,
    nonce: &str,
    worker_id: &str,
    signature: &str,
) -> Result<(), String> {
    if claims.sub != worker_id {
        return Err(format!(
            "the credential is {}'s, the hello says {worker_id:?}",
            claims.sub
        ));
    }
    claims
        .cnf
        .verify(
            &rma_auth::proof::link_message(coordinator_id, nonce, worker_id),
            signature,
        )
        .map_err(|_| "the hello is not signed with the key the credential names".to_owned())
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Runs one link session until the socket closes, falls silent, or the coordinator stops.
/// `claims` are the worker's credential, checked at the upgrade; the hello must be signed
/// with the key they name.
pub(crate) async fn serve(
    registry: Registry,
    cfg: SessionConfig,
    mut shutdown: Shutdown,
    claims: rma_auth::Claims,
    socket: WebSocket,
) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Outbound>(256);
    let link = LinkHandle::new(tx);
    let writer_link = link.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let msg = match out {
                Outbound::Frame(b) => Message::Binary(b),
                Outbound::Ping => Message::Ping(Bytes::new()),
                Outbound::Close => break,
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        writer_link.close();
        let _ = sink.close().await;
    });

    let nonce = rma_auth::proof::nonce();
    let (mut session, challenge) = Session::coordinator(
        now(),
        cfg.ping_interval,
        cfg.ping_misses,
        &cfg.coordinator_id,
        &nonce,
    );
    let mut worker_id: Option<String> = None;
    let mut queue: VecDeque<Action> = VecDeque::from([challenge]);
    let mut writer_done = false;
    // One timer for the session's life: re-arming a sleep for every frame costs more than the
    // frames themselves under load.
    let mut ticker = tokio::time::interval(cfg.ping_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let why = 'session: loop {
        let actions = tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(frame))) => session.on_frame(now(), &frame),
                Some(Ok(Message::Close(_))) | None => break 'session "link closed".to_owned(),
                Some(Ok(_)) => {
                    session.on_traffic(now());
                    Vec::new()
                }
                Some(Err(e)) => break 'session format!("link error: {e}"),
            },
            _ = ticker.tick() => session.on_timeout(now()),
            _ = link.closed() => break 'session "link replaced or closed".to_owned(),
            _ = shutdown.wait() => break 'session "coordinator shutting down".to_owned(),
            _ = &mut writer, if !writer_done => {
                writer_done = true;
                break 'session "could not write to the link".to_owned()
            }
        };
        queue.extend(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(msg, body) => {
                    link.send_frame(Bytes::from(link::encode(&msg, &body)))
                        .await;
                }
                Action::Ping => link.try_ping(),
                Action::Close(end) => break 'session end.to_string(),
                Action::Deliver(Event::Hello {
                    worker_id: id,
                    signature,
                }) => {
                    if let Err(why) =
                        check_hello(&claims, &cfg.coordinator_id, &nonce, &id, &signature)
                    {
                        tracing::warn!(worker = %id, reason = %why, "link refused");
                        metrics::counter!("rma_coordinator_link_refusals_total").increment(1);
                        queue.extend(session.reject("unauthorized", why));
                        continue;
                    }
                    let attached = registry
                        .lock()
                        .attach_link(&id, link.clone(), Instant::now());
                    match attached {
                        None => queue.extend(session.reject(
                            "unknown_worker",
                            format!("worker {id:?} is not registered here; register first"),
                        )),
                        Some(old) => {
                            if let Some(old) = old {
                                old.close();
                            }
                            queue.extend(session.accept(now(), &cfg.coordinator_id));
                            tracing::info!(worker = %id, "link up");
                            metrics::gauge!("rma_coordinator_links").increment(1.0);
                            worker_id = Some(id);
                            registry.changed();
                        }
                    }
                }
                Action::Deliver(Event::Response { id, reply }) => link.complete(id, reply),
                Action::Deliver(Event::Progress { id, done, total }) => {
                    link.progress(id, done, total)
                }
                Action::Deliver(Event::Draining { reason }) => {
                    // Out of rotation at once; the link stays open for the answers to the
                    // requests the worker is finishing.
                    link.set_draining();
                    tracing::info!(worker = ?worker_id, %reason, "worker is draining; out of rotation");
                    registry.changed();
                }
                Action::Deliver(other) => {
                    tracing::debug!(worker = ?worker_id, ?other, "unexpected on the link")
                }
            }
        }
    };
    link.close();
    if let Some(id) = &worker_id {
        registry.lock().detach_link(id, &link);
        metrics::gauge!("rma_coordinator_links").decrement(1.0);
        tracing::info!(worker = %id, reason = %why, "link down; worker out of rotation");
        registry.changed();
    } else {
        tracing::debug!(reason = %why, "link closed before a worker was accepted");
    }
    // Let the last frames (a reject, say) go out before the socket closes.
    link.close_socket();
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
}
