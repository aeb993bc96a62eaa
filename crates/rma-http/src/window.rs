//! A count of events over the last minute, in one-second buckets: cheap to record, exact to
//! the second, used for "traffic over the last minute" in the topology.

use tokio::time::Instant;

/// Events over a sliding 60-second window.
#[derive(Debug, Clone)]
pub struct RateWindow {
    origin: Instant,
    /// (second since origin, count) per slot.
    slots: [(u64, u32); 60],
}

impl RateWindow {
    /// An empty window.
    pub fn new() -> Self {
        RateWindow {
            origin: Instant::now(),
            slots: [(u64::MAX, 0); 60],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// Records one event at `now`.
    pub fn record(&mut self, now: Instant) {
        let s = self.second(now);
        let slot = &mut self.slots[(s % 60) as usize];
        if slot.0 != s {
            *slot = (s, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    /// Events in the 60 seconds up to `now`.
    pub fn count(&self, now: Instant) -> u64 {
        let s = self.second(now);
        self.slots
            .iter()
            .filter(|(sec, _)| *sec != u64::MAX && *sec + 60 > s && *sec <= s)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

impl Default for RateWindow {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn counts_the_last_minute_only() {
        let mut w = RateWindow::new();
        let t0 = Instant::now();
        w.record(t0);
        w.record(t0);
        w.record(t0 + Duration::from_secs(30));
        assert_eq!(w.count(t0 + Duration::from_secs(30)), 3);
        assert_eq!(w.count(t0 + Duration::from_secs(59)), 3);
        assert_eq!(
            w.count(t0 + Duration::from_secs(60)),
            1,
            "the first two fell out"
        );
        w.record(t0 + Duration::from_secs(120));
        assert_eq!(
            w.count(t0 + Duration::from_secs(120)),
            1,
            "a reused slot starts afresh"
        );
    }
}
