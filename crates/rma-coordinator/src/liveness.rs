//! Worker liveness as pure logic: from the time of the last heartbeat and whether the worker
//! can be reached, decide active, stale or expired.

use std::time::Duration;

use tokio::time::Instant;

/// What the coordinator makes of a worker at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// In rotation.
    Active,
    /// Out of rotation: heartbeats late, or no link (and no tunnel) to reach it by.
    Stale,
    /// Silent past expiry: to be removed.
    Expired,
}

/// Decides a worker's liveness.
pub(crate) fn liveness(
    last_seen: Instant,
    now: Instant,
    reachable: bool,
    timeout: Duration,
    expire_after: Duration,
) -> Liveness {
    let silent = now.saturating_duration_since(last_seen);
    if silent >= expire_after {
        Liveness::Expired
    } else if silent >= timeout || !reachable {
        Liveness::Stale
    } else {
        Liveness::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let t0 = Instant::now();
        let to = Duration::from_secs(90);
        let ex = Duration::from_secs(180);
        let at = |s: u64, reachable| liveness(t0, t0 + Duration::from_secs(s), reachable, to, ex);
        assert_eq!(at(0, true), Liveness::Active);
        assert_eq!(at(89, true), Liveness::Active);
        assert_eq!(at(90, true), Liveness::Stale);
        assert_eq!(
            at(10, false),
            Liveness::Stale,
            "no link: out of rotation at once"
        );
        assert_eq!(at(179, true), Liveness::Stale);
        assert_eq!(at(180, true), Liveness::Expired);
        assert_eq!(at(180, false), Liveness::Expired);
    }
}
