//! Load-aware choice among candidates, the same at both hops (router → coordinator,
//! coordinator → worker).
//!
//! Everything here is a pure function of what the caller observed ([`Load`]), a turn counter and
//! a random source the caller passes in, so the policies are tested without I/O and with seeded
//! randomness. The caller keeps the observations: a [`PeakEwma`] of service time per candidate
//! (per service at the coordinator: a worker quick at `echo` may be slow at `ocr`), what it has
//! in flight there, and what the candidate itself reported (queue depth, load).
//!
//! - [`Balance::P2c`] (the default): power of two choices — two distinct candidates drawn at
//!   random, the one with the lower cost wins, where cost = peak-EWMA service time ×
//!   (1 + (in flight + reported queue) / capacity) ÷ health. Cheap, and it never herds every
//!   request onto the one candidate that looked best a moment ago.
//! - [`Balance::Weighted`]: the seed's formula, a weighted random draw with weight
//!   1/(latency ms + 1) × 1/(queue + 1) × health.
//! - [`Balance::RoundRobin`]: in turn, blind to load (what rma did before).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// How a hop chooses among its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Power of two choices over peak-EWMA cost.
    #[default]
    P2c,
    /// Weighted random: 1/(latency+1) × 1/(queue+1) × health.
    Weighted,
    /// In turn.
    RoundRobin,
}

impl Balance {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::P2c => "p2c",
            Balance::Weighted => "weighted",
            Balance::RoundRobin => "round-robin",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "p2c" => Ok(Balance::P2c),
            "weighted" => Ok(Balance::Weighted),
            "round-robin" | "rr" => Ok(Balance::RoundRobin),
            other => Err(format!(
                "unknown balancing policy {other:?}: expected p2c, weighted or round-robin"
            )),
        }
    }
}

/// What the chooser knows of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Expected service time in seconds (a [`PeakEwma`]'s estimate); `None` before the first
    /// observation, when the mean of the others that have one stands in (optimistic enough
    /// that a newcomer gets tried, not so optimistic that everything goes to it).
    pub latency_s: Option<f64>,
    /// Requests this chooser has in flight there.
    pub in_flight: u32,
    /// Work the candidate reported queued or running that is not ours (0 when unknown).
    pub queue: u32,
    /// Requests it runs at once (OCR engines, say); at least 1.
    pub capacity: u32,
    /// 1.0 healthy; lower after failures (0 < health ≤ 1).
    pub health: f64,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            latency_s: None,
            in_flight: 0,
            queue: 0,
            capacity: 1,
            health: 1.0,
        }
    }
}

/// The service time assumed when no candidate has been observed yet.
const UNKNOWN_LATENCY_S: f64 = 0.001;

/// Chooses one of `loads` by `policy`; `None` only when `loads` is empty. `turn` drives
/// round-robin; `rng` the random draws.
pub fn choose<R: Rng + ?Sized>(
    policy: Balance,
    loads: &[Load],
    turn: usize,
    rng: &mut R,
) -> Option<usize> {
    let n = loads.len();
    if n <= 1 {
        return (n == 1).then_some(0);
    }
    let fallback = fallback_latency(loads);
    match policy {
        Balance::RoundRobin => Some(turn % n),
        Balance::P2c => {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (ca, cb) = (cost(&loads[a], fallback), cost(&loads[b], fallback));
            // Ties go to the first draw, which is uniformly random.
            Some(if cb < ca { b } else { a })
        }
        Balance::Weighted => {
            let weights: Vec<f64> = loads.iter().map(|l| weight(l, fallback)).collect();
            let total: f64 = weights.iter().sum();
            if !total.is_finite() || total <= 0.0 {
                return Some(turn % n);
            }
            let mut x = rng.random_range(0.0..total);
            for (i, w) in weights.iter().enumerate() {
                if x < *w {
                    return Some(i);
                }
                x -= w;
            }
            Some(n - 1)
        }
    }
}

/// P2C's cost of sending one more request to a candidate: lower is better.
pub fn cost(l: &Load, fallback_latency_s: f64) -> f64 {
    let latency = l.latency_s.unwrap_or(fallback_latency_s).max(1e-6);
    let waiting = f64::from(l.in_flight) + f64::from(l.queue);
    let capacity = f64::from(l.capacity.max(1));
    latency * (1.0 + waiting / capacity) / health(l)
}

/// The seed's weight: 1/(latency ms + 1) × 1/(queue + 1) × health.
pub fn weight(l: &Load, fallback_latency_s: f64) -> f64 {
    let latency_ms = l.latency_s.unwrap_or(fallback_latency_s) * 1000.0;
    let queue = f64::from(l.in_flight) + f64::from(l.queue);
    health(l) / ((latency_ms + 1.0) * (queue + 1.0))
}

fn health(l: &Load) -> f64 {
    if l.health.is_finite() {
        l.health.clamp(0.01, 1.0)
    } else {
        1.0
    }
}

fn fallback_latency(loads: &[Load]) -> f64 {
    let known: Vec<f64> = loads.iter().filter_map(|l| l.latency_s).collect();
    if known.is_empty() {
        UNKNOWN_LATENCY_S
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    }
}

/// A peak-sensitive exponentially weighted moving average of service time (Finagle's and
/// linkerd's "peak EWMA"): a sample above the estimate replaces it at once, one below pulls it
/// down with a weight that grows with the time since the last sample, so a candidate that
/// slows down is avoided at once and one that recovers is trusted again within `DECAY`.
/// Without samples the estimate decays towards zero ([`PeakEwma::estimate_at`]), so a
/// candidate avoided after one bad peak is tried again instead of starved for good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    estimate_s: f64,
    stamp: Instant,
}

impl PeakEwma {
    /// The time constant: after this long without samples, old ones weigh 1/e.
    pub const DECAY: Duration = Duration::from_secs(10);

    /// Starts at a first sample.
    pub fn new(sample: Duration, now: Instant) -> Self {
        PeakEwma {
            estimate_s: sample.as_secs_f64(),
            stamp: now,
        }
    }

    /// Records a sample taken at `now`.
    pub fn observe(&mut self, sample: Duration, now: Instant) {
        let s = sample.as_secs_f64();
        let prior = self.estimate_at(now);
        if s > prior {
            self.estimate_s = s;
        } else {
            let elapsed = now.saturating_duration_since(self.stamp).as_secs_f64();
            let w = (-elapsed / Self::DECAY.as_secs_f64()).exp();
            self.estimate_s = self.estimate_s * w + s * (1.0 - w);
        }
        self.stamp = self.stamp.max(now);
    }

    /// The estimate in seconds as of the last sample.
    pub fn estimate(&self) -> f64 {
        self.estimate_s
    }

    /// The estimate at `now`: the last one decayed towards zero by the time since.
    pub fn estimate_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_secs_f64();
        self.estimate_s * (-elapsed / Self::DECAY.as_secs_f64()).exp()
    }
}

/// Records `sample` into an optional estimate, starting it when there is none.
pub fn observe(slot: &mut Option<PeakEwma>, sample: Duration, now: Instant) {
    match slot {
        Some(e) => e.observe(sample, now),
        None => *slot = Some(PeakEwma::new(sample, now)),
    }
}

/// What a chooser observed of one candidate at one service.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Peak-EWMA of the round trip.
    pub latency: Option<PeakEwma>,
    /// The same round trips over the last minute or two, for the p99 operators see.
    pub window: crate::LatencyWindow,
    /// Calls of this service in flight there.
    pub in_flight: u32,
    /// Calls of this service started there, ever.
    pub started: u64,
}

/// What a chooser observed of one candidate, per service: both hops keep one per candidate
/// (the coordinator per worker, the router per coordinator).
#[derive(Debug, Clone, Default)]
pub struct PerService(std::collections::BTreeMap<String, Observed>);

impl PerService {
    /// Runs `f` on `service`'s record, made on first use (the name is copied only then, not
    /// on every call).
    fn with<R>(&mut self, service: &str, f: impl FnOnce(&mut Observed) -> R) -> R {
        if let Some(o) = self.0.get_mut(service) {
            return f(o);
        }
        let mut o = Observed::default();
        let r = f(&mut o);
        self.0.insert(service.to_owned(), o);
        r
    }

    /// A call to `service` starts.
    pub fn started(&mut self, service: &str) {
        self.with(service, |o| {
            o.in_flight += 1;
            o.started += 1;
        });
    }

    /// Calls started there so far, per service.
    pub fn started_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.iter().map(|(s, o)| (s.clone(), o.started)).collect()
    }

    /// A call to `service` ended after `took`; when `answered`, its round trip feeds the
    /// estimate and the window.
    pub fn ended(&mut self, service: &str, took: Duration, answered: bool, now: Instant) {
        self.with(service, |o| {
            o.in_flight = o.in_flight.saturating_sub(1);
            if answered {
                observe(&mut o.latency, took, now);
                o.window.record(now, took);
            }
        });
    }

    /// The estimate for `service` at `now` (see [`PeakEwma::estimate_at`]) and the calls of it
    /// in flight.
    pub fn load(&self, service: &str, now: Instant) -> (Option<f64>, u32) {
        self.0.get(service).map_or((None, 0), |o| {
            (o.latency.map(|e| e.estimate_at(now)), o.in_flight)
        })
    }

    /// Calls in flight, all services.
    pub fn in_flight(&self) -> u32 {
        self.0.values().map(|o| o.in_flight).sum()
    }

    /// p99 of the round trips per service over the last minute or two, in ms.
    pub fn p99_ms(&self, now: Instant) -> std::collections::BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|(s, o)| Some((s.clone(), o.window.quantile_ms(now, 0.99)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn load(latency_ms: f64, in_flight: u32) -> Load {
        Load {
            latency_s: Some(latency_ms / 1000.0),
            in_flight,
            ..Load::default()
        }
    }

    fn shares(policy: Balance, loads: &[Load], draws: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; loads.len()];
        for turn in 0..draws {
            let i = choose(policy, loads, turn, &mut rng).expect("candidates");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn nothing_to_choose_from_and_one_candidate() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(choose(Balance::P2c, &[], 0, &mut rng), None);
        assert_eq!(choose(Balance::P2c, &[load(5.0, 3)], 0, &mut rng), Some(0));
    }

    #[test]
    fn round_robin_ignores_load() {
        let loads = [load(1.0, 0), load(50.0, 9), load(1.0, 0)];
        assert_eq!(
            shares(Balance::RoundRobin, &loads, 300),
            vec![100, 100, 100]
        );
    }

    #[test]
    fn p2c_sends_a_five_times_slower_candidate_far_less_but_not_nothing() {
        // Four fast, one slow; the slow one's EWMA is 5× higher.
        let loads = [
            load(10.0, 0),
            load(10.0, 0),
            load(10.0, 0),
            load(10.0, 0),
            load(50.0, 0),
        ];
        let counts = shares(Balance::P2c, &loads, 10_000);
        // With equal queues p2c only picks the slow one when both draws are it: never. It is
        // the queue growing on the fast ones (below) that sends it work.
        assert_eq!(counts[4], 0);
        // With queues: the fast ones carry 4 in flight each, the slow one none: 10×5=50 vs 50×1.
        let loaded = [
            load(10.0, 6),
            load(10.0, 6),
            load(10.0, 6),
            load(10.0, 6),
            load(50.0, 0),
        ];
        let counts = shares(Balance::P2c, &loaded, 10_000);
        assert!(
            counts[4] > 3_000,
            "the idle slow one wins its draws: {counts:?}"
        );
    }

    #[test]
    fn p2c_prefers_fewer_in_flight_at_equal_speed_and_never_picks_the_costlier_of_two() {
        let loads = [load(10.0, 0), load(10.0, 8)];
        assert_eq!(shares(Balance::P2c, &loads, 1_000), vec![1_000, 0]);
    }

    #[test]
    fn capacity_divides_the_queue() {
        let four_engines = Load {
            capacity: 4,
            ..load(10.0, 3)
        };
        let one_engine = load(10.0, 1);
        assert!(cost(&four_engines, 0.0) < cost(&one_engine, 0.0));
    }

    #[test]
    fn unknown_latency_takes_the_mean_of_the_known() {
        let loads = [load(10.0, 0), load(30.0, 0), Load::default()];
        assert!((fallback_latency(&loads) - 0.020).abs() < 1e-9);
        // A newcomer is tried: it beats the slower known one.
        let counts = shares(Balance::P2c, &loads, 3_000);
        assert!(counts[2] > 500, "{counts:?}");
    }

    #[test]
    fn weighted_follows_the_seed_formula() {
        let loads = [load(9.0, 0), load(19.0, 0)];
        // Weights 1/10 and 1/20: two thirds and one third.
        let counts = shares(Balance::Weighted, &loads, 30_000);
        let share = counts[0] as f64 / 30_000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn failures_lower_health_and_the_share() {
        let sick = Load {
            health: 0.2,
            ..load(10.0, 0)
        };
        let counts = shares(Balance::P2c, &[load(10.0, 0), sick], 1_000);
        assert_eq!(counts, vec![1_000, 0]);
    }

    #[test]
    fn seeded_choices_repeat() {
        let loads = [load(10.0, 1), load(12.0, 0), load(11.0, 2)];
        assert_eq!(
            shares(Balance::P2c, &loads, 500),
            shares(Balance::P2c, &loads, 500)
        );
    }

    #[test]
    fn policy_names_round_trip() {
        for p in [Balance::P2c, Balance::Weighted, Balance::RoundRobin] {
            assert_eq!(p.as_str().parse::<Balance>(), Ok(p));
        }
        assert!("fastest".parse::<Balance>().is_err());
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_millis(10), t0);
        e.observe(Duration::from_millis(100), t0);
        assert!((e.estimate() - 0.1).abs() < 1e-9, "a peak is taken at once");
        // Fast samples a decay apart pull it most of the way back.
        e.observe(Duration::from_millis(10), t0 + PeakEwma::DECAY * 3);
        assert!(e.estimate() < 0.015, "{}", e.estimate());
        // A fast sample right after a peak barely moves it.
        e.observe(Duration::from_millis(100), t0 + PeakEwma::DECAY * 3);
        e.observe(Duration::from_millis(1), t0 + PeakEwma::DECAY * 3);
        assert!(e.estimate() > 0.099);
        // Left alone, a bad peak fades, so the candidate is tried again.
        let later = t0 + PeakEwma::DECAY * 5;
        assert!(e.estimate_at(later) < 0.02, "{}", e.estimate_at(later));
    }
}
