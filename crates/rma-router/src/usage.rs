//! The usage meter: what the router did today (UTC), counted by itself, against what the
//! Cloudflare free plan allows the edge router a day. The self-hosted router costs nothing per
//! request, but the same figures say whether a federation would fit the free edge, and they
//! show what liveness and membership cost next to documents.
//!
//! Counters (each reset at midnight UTC):
//! - `requests`: every HTTP request the router answered (Workers: 100,000 a day);
//! - `registry_requests`: calls that reach the registry — coordinator register, heartbeat and
//!   deregister, worker registrations and heartbeats passed on (the edge's Durable Object:
//!   100,000 requests a day);
//! - `rows_written`: registry rows written, only on a change of membership (Durable Object
//!   SQLite: 100,000 rows written a day).
//!
//! A projection for the whole day past 80 % of a limit is logged once a day and makes
//! `/health` say `degraded` with the reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rma_proto::api::{Usage, UsageCounter};

const DAY_S: u64 = 86_400;

/// The free plan's daily limits, per counter (Cloudflare, 2026).
pub(crate) const FREE_TIER: [(Kind, &str, u64); 3] = [
    (Kind::Requests, "requests", 100_000),
    (Kind::RegistryRequests, "registry_requests", 100_000),
    (Kind::RowsWritten, "rows_written", 100_000),
];

/// The share of a limit past which the router warns.
const WARN_AT: f64 = 0.8;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Requests = 0,
    RegistryRequests = 1,
    RowsWritten = 2,
}

/// Today's counts; cheap to bump from any request.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Days since the Unix epoch of the counts.
    day: AtomicU64,
    counts: [AtomicU64; 3],
    warned: [AtomicBool; 3],
    /// When counting started (Unix seconds): the router's start.
    started_s: u64,
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The shortest time a rate is taken over: a start (registrations, the first page load) or
/// a request just after midnight must not project to a day's worth.
const MIN_RATE_WINDOW_S: u64 = 600;

/// `used` counted over `counted_s` seconds, carried at the same rate over the `left_s`
/// seconds left of the day; the rate is taken over at least [`MIN_RATE_WINDOW_S`].
pub(crate) fn project(used: u64, counted_s: u64, left_s: u64) -> u64 {
    let rate = used as f64 / counted_s.max(MIN_RATE_WINDOW_S) as f64;
    used.saturating_add((rate * left_s as f64).round() as u64)
}

/// The `YYYY-MM-DD` of a day counted from the Unix epoch.
fn date_of(day: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Meter {
    /// A meter counting from `now`.
    pub(crate) fn new(now: SystemTime) -> Self {
        let s = unix_s(now);
        Meter {
            day: AtomicU64::new(s / DAY_S),
            counts: Default::default(),
            warned: Default::default(),
            started_s: s,
        }
    }

    /// Starts a new day's counts when `now` is past the day counted.
    fn roll(&self, now_s: u64) {
        let today = now_s / DAY_S;
        let day = self.day.load(Ordering::Relaxed);
        if day != today
            && self
                .day
                .compare_exchange(day, today, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for c in &self.counts {
                c.store(0, Ordering::Relaxed);
            }
            for w in &self.warned {
                w.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Counts `n` of `kind` at `now`.
    pub(crate) fn count(&self, kind: Kind, n: u64, now: SystemTime) {
        self.roll(unix_s(now));
        self.counts[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Today's figures at `now`; logs a warning the first time a projection passes 80 %.
    pub(crate) fn report(&self, now: SystemTime) -> Usage {
        let now_s = unix_s(now);
        self.roll(now_s);
        let day = now_s / DAY_S;
        let day_start = day * DAY_S;
        let counted_s = now_s - self.started_s.max(day_start);
        let left_s = day_start + DAY_S - now_s;
        let mut warnings = Vec::new();
        let counters = FREE_TIER
            .iter()
            .map(|&(kind, name, limit)| {
                let used = self.counts[kind as usize].load(Ordering::Relaxed);
                let projected = project(used, counted_s, left_s);
                let share = projected as f64 / limit as f64;
                if share >= WARN_AT {
                    let words = format!(
                        "{name}: {projected} projected today, {:.0} % of the free tier's {limit}",
                        share * 100.0
                    );
                    if !self.warned[kind as usize].swap(true, Ordering::Relaxed) {
                        tracing::warn!(usage = %words, "usage is past 80 % of the edge's free tier");
                    }
                    warnings.push(words);
                }
                UsageCounter {
                    name: name.to_owned(),
                    used,
                    projected,
                    free_tier_limit: limit,
                    headroom_percent: ((1.0 - share) * 1000.0).round() / 10.0,
                }
            })
            .collect();
        Usage {
            day: date_of(day),
            counted_s,
            counters,
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        }
    }
}

/// Whether a request to `path` reaches the registry (on the edge: the Durable Object).
fn reaches_registry(path: &str) -> bool {
    path.starts_with("/api/edge/")
        || path.starts_with("/api/worker/")
        || path.starts_with("/api/admin/nodes")
        || matches!(
            path,
            "/api/enroll" | "/api/credentials/renew" | "/api/admin/invites"
        )
}

/// Counts every request, and those that reach the registry.
pub(crate) async fn middleware(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let now = SystemTime::now();
    let meter = state.usage();
    meter.count(Kind::Requests, 1, now);
    if reaches_registry(req.uri().path()) {
        meter.count(Kind::RegistryRequests, 1, now);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn projections_carry_today_s_rate_over_the_rest_of_the_day() {
        assert_eq!(project(0, 3_600, 82_800), 0);
        // 1,000 in the first hour: 24,000 by midnight.
        assert_eq!(project(1_000, 3_600, 82_800), 24_000);
        // Ten seconds in (a start's registrations), the rate is taken over ten minutes.
        assert_eq!(project(6, 10, DAY_S - 10), 6 + 864);
        assert_eq!(project(5, 0, 0), 5);
    }

    #[test]
    fn membership_calls_reach_the_registry_and_documents_do_not() {
        for p in [
            "/api/edge/register",
            "/api/edge/heartbeat",
            "/api/edge/coord-1",
            "/api/worker/register",
            "/api/worker/heartbeat",
            "/api/enroll",
            "/api/admin/nodes/w1/revoke",
        ] {
            assert!(reaches_registry(p), "{p}");
        }
        for p in [
            "/api/service/ocr",
            "/api/jobs/c-j1",
            "/api/topology",
            "/health",
            "/",
        ] {
            assert!(!reaches_registry(p), "{p}");
        }
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(20_786), "2026-11-29");
        assert_eq!(date_of(11_016), "2000-02-29");
    }

    #[test]
    fn counts_reset_at_midnight_and_a_busy_day_warns() {
        let noon = 20_786 * DAY_S + 43_200;
        let m = Meter::new(at(noon - 3_600));
        m.count(Kind::Requests, 10, at(noon));
        m.count(Kind::RowsWritten, 2, at(noon));
        let u = m.report(at(noon));
        assert_eq!(u.day, "2026-11-29");
        assert_eq!(u.counted_s, 3_600);
        let requests = &u.counters[0];
        assert_eq!((requests.used, requests.projected), (10, 130));
        assert_eq!(requests.headroom_percent, 99.9);
        assert_eq!(u.warning, None);
        // 50,000 registry requests in the hour since the start: 650,000 projected.
        m.count(Kind::RegistryRequests, 50_000, at(noon));
        let u = m.report(at(noon));
        assert!(u.counters[1].headroom_percent < 0.0, "{u:?}");
        let warning = u.warning.expect("a warning");
        assert!(
            warning.starts_with("registry_requests: 650000 projected"),
            "{warning}"
        );
        // The next day starts from nothing, counted from midnight.
        let u = m.report(at(noon + 86_400));
        assert_eq!(u.day, "2026-11-30");
        assert_eq!(u.counted_s, 43_200);
        assert!(u.counters.iter().all(|c| c.used == 0) && u.warning.is_none());
    }
}
