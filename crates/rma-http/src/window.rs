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

/// Latencies over the last one to two minutes, for a p99 on an operator's screen: two
/// one-minute histograms (this minute and the last) of 32 log-spaced buckets from 0.1 ms to
/// about 3.5 minutes, each 1.6 × the one before. 260 bytes, O(1) to record.
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    origin: Instant,
    minute: u64,
    current: [u32; LATENCY_BUCKETS],
    previous: [u32; LATENCY_BUCKETS],
}

const LATENCY_BUCKETS: usize = 32;
const LATENCY_BASE_S: f64 = 0.0001;
const LATENCY_STEP: f64 = 1.6;

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            origin: Instant::now(),
            minute: 0,
            current: [0; LATENCY_BUCKETS],
            previous: [0; LATENCY_BUCKETS],
        }
    }
}

impl LatencyWindow {
    fn roll(&mut self, now: Instant) {
        let minute = now.saturating_duration_since(self.origin).as_secs() / 60;
        if minute == self.minute {
            return;
        }
        self.previous = if minute == self.minute + 1 {
            self.current
        } else {
            [0; LATENCY_BUCKETS]
        };
        self.current = [0; LATENCY_BUCKETS];
        self.minute = minute;
    }

    /// Records one latency at `now`.
    pub fn record(&mut self, now: Instant, took: std::time::Duration) {
        self.roll(now);
        let s = took.as_secs_f64().max(LATENCY_BASE_S);
        let i = ((s / LATENCY_BASE_S).ln() / LATENCY_STEP.ln()).floor();
        let i = (i.max(0.0) as usize).min(LATENCY_BUCKETS - 1);
        self.current[i] = self.current[i].saturating_add(1);
    }

    /// The `q` quantile (0–1) in milliseconds over this minute and the last, as the upper
    /// edge of the bucket it falls in (an overestimate by at most 1.6×); `None` without
    /// samples.
    pub fn quantile_ms(&self, now: Instant, q: f64) -> Option<f64> {
        let mut w = self.clone();
        w.roll(now);
        let counts: Vec<u64> = (0..LATENCY_BUCKETS)
            .map(|i| u64::from(w.current[i]) + u64::from(w.previous[i]))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BASE_S * LATENCY_STEP.powi(i as i32 + 1) * 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod latency_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn p99_sits_on_the_slow_tail_and_old_minutes_fall_away() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::default();
        assert_eq!(w.quantile_ms(t0, 0.99), None);
        for _ in 0..98 {
            w.record(t0, Duration::from_millis(10));
        }
        w.record(t0, Duration::from_millis(500));
        w.record(t0, Duration::from_millis(500));
        let p99 = w.quantile_ms(t0, 0.99).expect("samples");
        assert!((500.0..=800.0).contains(&p99), "{p99}");
        let p50 = w.quantile_ms(t0, 0.5).expect("samples");
        assert!((10.0..=16.0).contains(&p50), "{p50}");
        // A minute later the samples still count; two minutes later they are gone.
        assert!(w.quantile_ms(t0 + Duration::from_secs(61), 0.99).is_some());
        assert_eq!(w.quantile_ms(t0 + Duration::from_secs(150), 0.99), None);
    }
}
