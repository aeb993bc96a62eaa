//! The coordinator's end of the link: the WebSocket a worker dials at `GET /api/worker/link`.
//! Thin glue between the socket and the session state machine
//! ([`rma_proto::link::session`], which decides handshake, pings, silence and drain): it
//! attaches the worker's [`LinkHandle`] to the registry on hello, hands answers and progress to
//! it, and takes the worker out of rotation the moment the session ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Pings a second for all links together (0: the interval never grows).
    pub(crate) ping_budget: u32,
    /// Links open now, shared by every session.
    pub(crate) links: Arc<AtomicUsize>,
    /// Every session's ping ticks fall on multiples of its interval from here, so the
    /// coordinator wakes once for a burst of pings instead of once for each.
    pub(crate) epoch: Instant,
}

/// A ticker every `period`, its ticks on multiples of `period` since `epoch`.
fn aligned_ticker(epoch: Instant, period: Duration) -> tokio::time::Interval {
    let now = Instant::now();
    let since = now.saturating_duration_since(epoch).as_nanos();
    let p = period.as_nanos().max(1);
    let next =
        u64::try_from(since.div_ceil(p) * p).map_or(now, |n| epoch + Duration::from_nanos(n));
    let mut t = tokio::time::interval_at(next.max(now), period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Pings every `interval` from now on: the session retunes (telling the worker once the link is
/// open; the frames to send are returned), the ticker follows, aligned on `epoch`.
fn ping_every(
    session: &mut Session,
    ticker: &mut tokio::time::Interval,
    epoch: Instant,
    interval: Duration,
) -> Vec<Action> {
    let out = session.retune(now(), interval);
    metrics::gauge!("rma_coordinator_link_ping_interval_seconds").set(interval.as_secs_f64());
    *ticker = aligned_ticker(epoch, interval);
    out
}

/// The longest ping interval a large fleet gets.
const MAX_PING_INTERVAL: Duration = Duration::from_secs(64);

/// The ping interval for a coordinator holding `links` links, now pinging every `current`:
/// the configured `base`, doubled until all pings together stay within `budget` a second
/// (up to [`MAX_PING_INTERVAL`]). Kept at `current` while the fleet is within a quarter of a
/// boundary, so a fleet hovering at a threshold does not retune every link back and forth.
pub(crate) fn ping_interval_for(
    base: Duration,
    budget: u32,
    links: usize,
    current: Duration,
) -> Duration {
    let scaled = |links: usize| {
        let mut i = base;
        if budget == 0 || base.is_zero() {
            return i;
        }
        while links as f64 / i.as_secs_f64() > f64::from(budget) && i < MAX_PING_INTERVAL {
            i *= 2;
        }
        i
    };
    let (up, down) = (scaled(links), scaled(links + links / 4));
    if current < up {
        up
    } else if current > down {
        down
    } else {
        current
    }
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
        // What is already queued goes out in one write: one system call for many calls.
        rma_http::batch::write_batched(&mut rx, &mut sink, link::WRITE_BATCH, |out| match out {
            Outbound::Frame(b) => Some(Message::Binary(b)),
            Outbound::Ping => Some(Message::Ping(Bytes::new())),
            Outbound::Close => None,
        })
        .await;
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
    // The worker's heartbeat series, looked up once per link rather than once per heartbeat.
    let mut beats: Option<(metrics::Counter, metrics::Gauge)> = None;
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
            _ = ticker.tick() => {
                let mut out = session.on_timeout(now());
                // A growing fleet is pinged less often; the worker is told first.
                let current = session.ping_interval();
                let want = ping_interval_for(
                    cfg.ping_interval,
                    cfg.ping_budget,
                    cfg.links.load(Ordering::Relaxed),
                    current,
                );
                if want != current && worker_id.is_some() {
                    out.extend(ping_every(&mut session, &mut ticker, cfg.epoch, want));
                }
                out
            }
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
                            // A link joining a large fleet starts at the fleet's interval.
                            let links = cfg.links.fetch_add(1, Ordering::Relaxed) + 1;
                            let want = ping_interval_for(
                                cfg.ping_interval,
                                cfg.ping_budget,
                                links,
                                cfg.ping_interval,
                            );
                            // Before the welcome: nothing to send, the welcome carries it.
                            ping_every(&mut session, &mut ticker, cfg.epoch, want);
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
                Action::Deliver(Event::Heartbeat {
                    current_load,
                    active_requests,
                    heartbeats_failed,
                }) => {
                    let Some(id) = &worker_id else { continue };
                    let (count, failed) = beats.get_or_insert_with(|| {
                        let label = crate::registry::worker_label(id);
                        (
                            metrics::counter!("rma_coordinator_worker_heartbeats_total", "worker" => label.clone(), "via" => "link"),
                            metrics::gauge!("rma_coordinator_worker_heartbeats_failed", "worker" => label),
                        )
                    });
                    count.increment(1);
                    failed.set(f64::from(heartbeats_failed));
                    let load = if current_load.is_finite() {
                        current_load
                    } else {
                        0.0
                    };
                    let known =
                        registry
                            .lock()
                            .heartbeat(id, load, active_requests, Instant::now());
                    if !known {
                        queue.extend(session.reject(
                            "unknown_worker",
                            format!("worker {id:?} is no longer registered here; register again"),
                        ));
                    }
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
        cfg.links.fetch_sub(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_ping_interval_doubles_as_the_fleet_outgrows_the_budget_and_does_not_flap() {
        let f = |links, current| ping_interval_for(SEC, 1_000, links, current);
        assert_eq!(f(10, SEC), SEC);
        assert_eq!(f(1_000, SEC), SEC);
        assert_eq!(f(1_001, SEC), 2 * SEC);
        assert_eq!(f(10_000, SEC), 16 * SEC);
        assert_eq!(f(1_000_000, SEC), MAX_PING_INTERVAL);
        // At 16 s for 10,000 links: a few leaving changes nothing, most leaving brings it back.
        assert_eq!(f(9_000, 16 * SEC), 16 * SEC);
        assert_eq!(f(7_000, 16 * SEC), 16 * SEC);
        assert_eq!(f(6_000, 16 * SEC), 8 * SEC);
        assert_eq!(f(100, 16 * SEC), SEC);
        // Off: always the configured interval.
        assert_eq!(ping_interval_for(SEC, 0, 1_000_000, SEC), SEC);
    }
}
