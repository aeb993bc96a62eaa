//! The registrar: registers the coordinator at the router, heartbeats it with load and
//! inventory, registers again when the router answers 404 (it forgot us, or restarted empty).
//! A heartbeat goes out at once when the inventory changes, so the router routes to new
//! workers without waiting for the interval.

use rma_client::{Backoff, Client};
use rma_proto::api::{CoordinatorHeartbeat, CoordinatorRegister};
use tokio::time::Instant;

use crate::AppState;

/// Runs until shutdown.
pub(crate) async fn run(state: AppState, router: Client) {
    let mut shutdown = state.shutdown();
    let mut changes = state.registry().subscribe();
    let cfg = state.config().clone();
    let mut backoff = Backoff::new();
    loop {
        let req = CoordinatorRegister {
            coordinator_id: Some(cfg.id.clone()),
            url: Some(state.public_url().to_owned()),
            tunnel_url: None,
            location: cfg.location.clone(),
            services: Some(
                state
                    .registry()
                    .lock()
                    .inventory(Instant::now())
                    .into_keys()
                    .collect(),
            ),
        };
        let registered = tokio::select! {
            r = router.register_coordinator(&req) => r,
            _ = shutdown.wait() => return,
        };
        let mut interval = match registered {
            Ok(reply) => {
                tracing::info!(router = %router.base(), total = reply.total_coordinators, heartbeat_interval_ms = ?reply.heartbeat_interval_ms, "registered at the router");
                backoff.reset();
                heartbeat_interval(cfg.router_heartbeat_interval, reply.heartbeat_interval_ms)
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(router = %router.base(), error = %e, retry_in_ms = wait.as_millis() as u64, "could not register at the router");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = shutdown.wait() => return,
                }
            }
        };
        // Heartbeat until the router forgets us.
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A change of inventory goes out at once, but at most one such heartbeat a `gap`: a wave
        // of workers joining costs the router one heartbeat a gap, not one per worker.
        let mut gap = change_gap(interval);
        // The first change after registering goes at once.
        let mut last = Instant::now().checked_sub(gap).unwrap_or_else(Instant::now);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = changes.changed() => {
                    let due = last + gap;
                    if Instant::now() < due {
                        tokio::select! {
                            _ = tokio::time::sleep_until(due) => {}
                            _ = shutdown.wait() => return,
                        }
                    }
                }
                _ = shutdown.wait() => return,
            }
            last = Instant::now();
            match router.coordinator_heartbeat(&state.heartbeat()).await {
                Ok(reply) => {
                    // The router may ask for another interval as the federation grows.
                    let told = reply
                        .heartbeat_interval_ms
                        .map(|ms| heartbeat_interval(interval, Some(ms)));
                    if let Some(t) = told.filter(|t| *t != interval) {
                        tracing::info!(
                            from_ms = interval.as_millis() as u64,
                            to_ms = t.as_millis() as u64,
                            "the router asks for another heartbeat interval"
                        );
                        interval = t;
                        gap = change_gap(interval);
                        tick = tokio::time::interval_at(Instant::now() + interval, interval);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                    state.revoke(reply.revoked);
                }
                Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                    tracing::warn!(
                        "the router no longer knows this coordinator; registering again"
                    );
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat to the router failed"),
            }
        }
    }
}

/// The least time between two heartbeats sent for changes: a tenth of the interval, within
/// 50 ms – 15 s, and never more than the interval.
fn change_gap(interval: std::time::Duration) -> std::time::Duration {
    (interval / 10)
        .clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(15),
        )
        .min(interval)
}

/// The router's word on the heartbeat interval when it gives one (bounded to 100 ms – 10 min),
/// else the coordinator's own.
fn heartbeat_interval(own: std::time::Duration, told_ms: Option<u64>) -> std::time::Duration {
    told_ms.map_or(own, |ms| {
        std::time::Duration::from_millis(ms).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(600),
        )
    })
}

impl AppState {
    /// The heartbeat the router gets now.
    fn heartbeat(&self) -> CoordinatorHeartbeat {
        let now = Instant::now();
        let w = self.registry().lock();
        CoordinatorHeartbeat {
            coordinator_id: self.config().id.clone(),
            active_requests: self.active_requests(),
            load: w.mean_load(now),
            services: w.inventory(now),
            workers: w.summaries(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn changes_are_sent_at_most_once_a_tenth_of_the_interval() {
        assert_eq!(
            super::change_gap(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            super::change_gap(Duration::from_secs(120)),
            Duration::from_secs(12)
        );
        assert_eq!(
            super::change_gap(Duration::from_secs(600)),
            Duration::from_secs(15)
        );
        assert_eq!(
            super::change_gap(Duration::from_millis(200)),
            Duration::from_millis(50)
        );
        assert_eq!(
            super::change_gap(Duration::from_millis(20)),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn the_router_s_interval_wins_within_bounds() {
        let own = Duration::from_secs(10);
        assert_eq!(super::heartbeat_interval(own, None), own);
        assert_eq!(
            super::heartbeat_interval(own, Some(120_000)),
            Duration::from_secs(120)
        );
        assert_eq!(
            super::heartbeat_interval(own, Some(0)),
            Duration::from_millis(100)
        );
        assert_eq!(
            super::heartbeat_interval(own, Some(u64::MAX)),
            Duration::from_secs(600)
        );
    }
}
