//! The router's in-memory view of its coordinators: freshness, inventory, worker homes.
//!
//! Pure logic over explicit `now` values: no I/O, no clocks read here, so expiry and selection
//! are tested without sockets or sleeping. Durable membership lives in [`crate::store`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rand::Rng;
use rma_http::balance::{self, Balance, Load, PerService};
use rma_proto::api::{CoordinatorHeartbeat, CoordinatorStatus, WorkerStatus, WorkerSummary};
use tokio::time::Instant;

/// One coordinator as the router knows it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Id.
    pub(crate) id: String,
    /// Where to reach it.
    pub(crate) url: String,
    /// Free text.
    pub(crate) location: Option<String>,
    /// When it first registered (wall clock, for display).
    pub(crate) registered_at: SystemTime,
    /// Last heartbeat or registration (monotonic, for freshness).
    pub(crate) last_seen: Instant,
    /// Same moment on the wall clock, for display.
    pub(crate) last_seen_wall: SystemTime,
    /// Service → active workers, from its last heartbeat (or its registration).
    pub(crate) services: BTreeMap<String, u32>,
    /// Its workers, from its last heartbeat.
    pub(crate) workers: Vec<WorkerSummary>,
    /// Mean load of its workers.
    pub(crate) load: f64,
    /// Requests in flight there.
    pub(crate) active_requests: u32,
    /// The last request the router sent failed to connect; cleared by its next heartbeat or a
    /// successful ping.
    pub(crate) unreachable: bool,
    /// Active pings missed in a row; cleared only by a ping that is answered.
    pub(crate) ping_misses: u32,
    /// Whether `services` came from the coordinator itself (false right after the router
    /// restarted and loaded it from the file, until its first heartbeat).
    pub(crate) inventory_known: bool,
    /// Requests the router sent it, for the topology's traffic figures.
    pub(crate) requests: rma_http::RateWindow,
    /// What the router observed forwarding to it.
    pub(crate) seen: Seen,
}

/// What the router observed of one coordinator while forwarding to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// Round trips and forwards in flight, per service.
    pub(crate) services: PerService,
    /// Forwards that failed (no connection, 502, 503, timeout) in the last minute.
    pub(crate) failures: rma_http::RateWindow,
}

impl Entry {
    /// What the balancer knows of it for a request to `service`.
    fn load_for(&self, service: &str, now: Instant) -> Load {
        let (latency_s, in_flight) = self.seen.services.load(service, now);
        Load {
            latency_s,
            in_flight,
            // What it reported running beyond what we sent it (a heartbeat ago).
            queue: self
                .active_requests
                .saturating_sub(self.seen.services.in_flight()),
            capacity: 1,
            health: 1.0 / (1.0 + self.seen.failures.count(now) as f64),
        }
    }
}

/// How long a placement made by the router outlives heartbeats that do not list the worker yet.
const PLACEMENT_GRACE: Duration = Duration::from_secs(10);

/// Freshness thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Silent this long → stale, out of routing.
    pub(crate) stale_after: Duration,
    /// Silent this long → removed.
    pub(crate) expire_after: Duration,
    /// Pings missed in a row → out of rotation until one is answered.
    pub(crate) ping_misses_out: u32,
}

/// All coordinators, and which coordinator holds which worker.
#[derive(Debug)]
pub(crate) struct Registry {
    entries: BTreeMap<String, Entry>,
    /// worker id → coordinator id: learned from proxied registrations and from heartbeats.
    homes: HashMap<String, String>,
    /// When the router itself last placed each worker (proxied registration): a heartbeat
    /// built before that registration reached the coordinator must not undo it.
    placed: HashMap<String, Instant>,
    thresholds: Thresholds,
    /// service → ids of the coordinators whose last heartbeat offers it; rebuilt after a
    /// change of membership or inventory (rare next to requests), so a p2c choice among
    /// thousands of coordinators probes a few instead of listing all.
    offering: HashMap<String, Vec<String>>,
    /// Whether `offering` must be rebuilt; also whether some coordinator's inventory is unknown.
    offering_dirty: bool,
    any_inventory_unknown: bool,
}

/// Above this many coordinators offering a service, p2c probes at random for its two
/// candidates and a few fallbacks instead of ordering every coordinator.
const PROBE_ABOVE: usize = 32;

/// Candidates a probed choice returns: the two drawn and fallbacks after them.
const PROBED_CANDIDATES: usize = 8;

impl Registry {
    /// An empty registry.
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Registry {
            entries: BTreeMap::new(),
            homes: HashMap::new(),
            placed: HashMap::new(),
            thresholds,
            offering: HashMap::new(),
            offering_dirty: true,
            any_inventory_unknown: false,
        }
    }

    /// Adds or replaces an entry (registration, or loading from the store).
    pub(crate) fn upsert(&mut self, entry: Entry) {
        self.offering_dirty = true;
        self.entries.insert(entry.id.clone(), entry);
    }

    /// Removes a coordinator and forgets its workers' homes.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Entry> {
        self.homes.retain(|_, c| c != id);
        self.offering_dirty = true;
        self.entries.remove(id)
    }

    /// One entry.
    pub(crate) fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// All entries, by id.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of coordinators registered.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A coordinator's status at `now`.
    pub(crate) fn status(&self, e: &Entry, now: Instant) -> CoordinatorStatus {
        if now.saturating_duration_since(e.last_seen) >= self.thresholds.stale_after {
            CoordinatorStatus::Stale
        } else if self.is_unreachable(e) {
            CoordinatorStatus::Unreachable
        } else {
            CoordinatorStatus::Healthy
        }
    }

    /// Sets the `rma_router_coordinators{status}` gauges.
    pub(crate) fn publish_gauges(&self, now: Instant) {
        let (mut healthy, mut unreachable, mut stale) = (0u32, 0u32, 0u32);
        for e in self.entries.values() {
            match self.status(e, now) {
                CoordinatorStatus::Healthy => healthy += 1,
                CoordinatorStatus::Unreachable => unreachable += 1,
                CoordinatorStatus::Stale => stale += 1,
            }
        }
        metrics::gauge!("rma_router_coordinators", "status" => "healthy").set(f64::from(healthy));
        metrics::gauge!("rma_router_coordinators", "status" => "unreachable")
            .set(f64::from(unreachable));
        metrics::gauge!("rma_router_coordinators", "status" => "stale").set(f64::from(stale));
    }

    /// Coordinators not stale at `now`.
    pub(crate) fn fresh_count(&self, now: Instant) -> usize {
        self.entries
            .values()
            .filter(|e| self.status(e, now) != CoordinatorStatus::Stale)
            .count()
    }

    /// Applies a heartbeat; false when the coordinator is unknown (it must register again).
    pub(crate) fn heartbeat(
        &mut self,
        hb: CoordinatorHeartbeat,
        now: Instant,
        wall: SystemTime,
    ) -> bool {
        let Some(e) = self.entries.get_mut(&hb.coordinator_id) else {
            return false;
        };
        e.last_seen = now;
        e.last_seen_wall = wall;
        e.unreachable = false;
        if !e.inventory_known || e.services != hb.services {
            self.offering_dirty = true;
        }
        e.inventory_known = true;
        e.services = hb.services;
        e.load = hb.load;
        e.active_requests = hb.active_requests;
        let id = e.id.clone();
        // The heartbeat is the truth about which workers this coordinator holds, except for
        // workers placed here in the last few seconds, which it may not know of yet.
        let placed = &self.placed;
        self.homes.retain(|w, c| {
            *c != id
                || placed
                    .get(w)
                    .is_some_and(|t| now.saturating_duration_since(*t) < PLACEMENT_GRACE)
        });
        self.placed
            .retain(|_, t| now.saturating_duration_since(*t) < PLACEMENT_GRACE);
        for w in &hb.workers {
            self.homes.insert(w.id.clone(), id.clone());
        }
        if let Some(e) = self.entries.get_mut(&id) {
            e.workers = hb.workers;
        }
        true
    }

    /// Counts a request sent to a coordinator.
    pub(crate) fn record_request(&mut self, id: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(id) {
            e.requests.record(now);
        }
    }

    /// A forward to coordinator `id` starts.
    pub(crate) fn forward_started(&mut self, id: &str, service: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.seen.services.started(service);
        }
    }

    /// A forward to coordinator `id` for `service` ended after `took`: answered (its time
    /// feeds the estimate), failed (it counts against the coordinator's health), or neither.
    pub(crate) fn forward_ended(
        &mut self,
        id: &str,
        service: &str,
        took: Duration,
        answered: bool,
        failed: bool,
        now: Instant,
    ) {
        if let Some(e) = self.entries.get_mut(id) {
            e.seen.services.ended(service, took, answered, now);
            if failed {
                e.seen.failures.record(now);
                metrics::counter!("rma_router_coordinator_failures_total").increment(1);
            }
        }
    }

    /// Whether a coordinator is out of rotation for failing to answer.
    pub(crate) fn is_unreachable(&self, e: &Entry) -> bool {
        e.unreachable || e.ping_misses >= self.thresholds.ping_misses_out
    }

    /// Records the outcome of an active ping; returns whether the coordinator's status changed.
    pub(crate) fn record_ping(&mut self, id: &str, answered: bool) -> bool {
        let out = self.thresholds.ping_misses_out;
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        let before = e.unreachable || e.ping_misses >= out;
        if answered {
            e.ping_misses = 0;
            e.unreachable = false;
        } else {
            e.ping_misses = e.ping_misses.saturating_add(1);
        }
        before != (e.unreachable || e.ping_misses >= out)
    }

    /// Marks a coordinator unreachable after a failed connection.
    pub(crate) fn mark_unreachable(&mut self, id: &str) {
        if let Some(e) = self.entries.get_mut(id) {
            e.unreachable = true;
        }
    }

    /// Records that `worker` registered at `coordinator`.
    pub(crate) fn set_home(&mut self, worker: &str, coordinator: &str, now: Instant) {
        self.homes.insert(worker.to_owned(), coordinator.to_owned());
        self.placed.insert(worker.to_owned(), now);
    }

    /// The coordinator holding `worker`, with its URL, when that coordinator is still registered.
    pub(crate) fn home_of(&self, worker: &str) -> Option<&Entry> {
        self.homes.get(worker).and_then(|c| self.entries.get(c))
    }

    /// Removes every coordinator silent for `expire_after`; returns their ids.
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .entries
            .values()
            .filter(|e| now.saturating_duration_since(e.last_seen) >= self.thresholds.expire_after)
            .map(|e| e.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    /// Where a service request for `service` may go, in the order to try: fresh coordinators
    /// whose inventory has an active worker for it, rotated by `turn` (round-robin); then those
    /// whose inventory is not known yet (loaded from the file after a router restart); then, as
    /// a last resort, those marked unreachable.
    pub(crate) fn candidates_for_service<R: Rng + ?Sized>(
        &mut self,
        service: &str,
        now: Instant,
        turn: usize,
        policy: Balance,
        rng: &mut R,
    ) -> Vec<&Entry> {
        if self.offering_dirty {
            self.reindex();
        }
        let probed = policy == Balance::P2c && !self.any_inventory_unknown;
        if probed && let Some(out) = self.probe(service, now, turn, rng) {
            return out;
        }
        let offering = |e: &&Entry| e.services.get(service).copied().unwrap_or(0) > 0;
        let mut out = self.rotated(now, turn, offering);
        // The healthy ones lead `out`; the policy picks which of them goes first, the others
        // follow in turn as fallbacks.
        let healthy = out
            .iter()
            .take_while(|e| self.status(e, now) == CoordinatorStatus::Healthy)
            .count();
        if policy == Balance::P2c && healthy > 2 {
            // Only the two drawn are costed: a choice among 1,000 coordinators costs what a
            // choice between two does.
            let a = rng.random_range(0..healthy);
            let mut b = rng.random_range(0..healthy - 1);
            if b >= a {
                b += 1;
            }
            let pair = [out[a].load_for(service, now), out[b].load_for(service, now)];
            if let Some(i) = balance::choose(policy, &pair, turn, rng) {
                out[..healthy].rotate_left(if i == 0 { a } else { b });
            }
        } else if policy != Balance::RoundRobin && healthy > 1 {
            let loads: Vec<Load> = out[..healthy]
                .iter()
                .map(|e| e.load_for(service, now))
                .collect();
            if let Some(i) = balance::choose(policy, &loads, turn, rng) {
                out[..healthy].rotate_left(i);
            }
        }
        let unknown = self.rotated(now, turn, |e| !e.inventory_known);
        let at = out
            .iter()
            .position(|e| self.is_unreachable(e))
            .unwrap_or(out.len());
        for (i, e) in unknown
            .into_iter()
            .filter(|e| !self.is_unreachable(e))
            .enumerate()
        {
            out.insert(at + i, e);
        }
        out
    }

    fn reindex(&mut self) {
        self.offering.clear();
        self.any_inventory_unknown = false;
        for e in self.entries.values() {
            self.any_inventory_unknown |= !e.inventory_known;
            for (service, n) in &e.services {
                if *n > 0 {
                    self.offering
                        .entry(service.clone())
                        .or_default()
                        .push(e.id.clone());
                }
            }
        }
        self.offering_dirty = false;
    }

    /// P2C among many: two healthy coordinators offering `service` drawn by probing at random,
    /// the cheaper first, then healthy fallbacks in rotation from `turn`; at most
    /// [`PROBED_CANDIDATES`]. `None` when few offer it or too few healthy ones turn up (the
    /// exact ordering then decides, unreachable ones included).
    fn probe<R: Rng + ?Sized>(
        &self,
        service: &str,
        now: Instant,
        turn: usize,
        rng: &mut R,
    ) -> Option<Vec<&Entry>> {
        let ids = self.offering.get(service)?;
        let n = ids.len();
        if n <= PROBE_ABOVE {
            return None;
        }
        let healthy = |id: &String| {
            self.entries
                .get(id)
                .filter(|e| self.status(e, now) == CoordinatorStatus::Healthy)
        };
        let mut out: Vec<&Entry> = Vec::with_capacity(PROBED_CANDIDATES);
        for _ in 0..8 {
            if out.len() == 2 {
                break;
            }
            if let Some(e) = healthy(&ids[rng.random_range(0..n)])
                && !out.iter().any(|o| o.id == e.id)
            {
                out.push(e);
            }
        }
        if out.len() < 2 {
            return None;
        }
        let pair = [out[0].load_for(service, now), out[1].load_for(service, now)];
        if balance::choose(Balance::P2c, &pair, turn, rng) == Some(1) {
            out.swap(0, 1);
        }
        for i in 0..n {
            if out.len() == PROBED_CANDIDATES {
                break;
            }
            if let Some(e) = healthy(&ids[(turn + i) % n])
                && !out.iter().any(|o| o.id == e.id)
            {
                out.push(e);
            }
        }
        Some(out)
    }

    /// Where a worker registration may go, in the order to try: fresh coordinators with the
    /// fewest workers first (ties broken round-robin by `turn`), unreachable ones last.
    pub(crate) fn candidates_for_worker(&self, now: Instant, turn: usize) -> Vec<&Entry> {
        let mut all = self.rotated(now, turn, |_| true);
        // Workers placed here since its last heartbeat count too, so registrations arriving
        // together spread out instead of all seeing the same emptiest coordinator.
        let homed = |id: &str| self.homes.values().filter(|c| c.as_str() == id).count();
        // Only active workers count: a coordinator still listing dead ones is not "full".
        let active = |e: &Entry| {
            e.workers
                .iter()
                .filter(|w| w.status == WorkerStatus::Active)
                .count()
        };
        // Stable sort keeps the rotation among equals.
        all.sort_by_key(|e| (self.is_unreachable(e), active(e).max(homed(&e.id))));
        all
    }

    fn rotated(&self, now: Instant, turn: usize, keep: impl Fn(&&Entry) -> bool) -> Vec<&Entry> {
        let mut healthy: Vec<&Entry> = Vec::new();
        let mut unreachable: Vec<&Entry> = Vec::new();
        for e in self.entries.values().filter(&keep) {
            match self.status(e, now) {
                CoordinatorStatus::Healthy => healthy.push(e),
                CoordinatorStatus::Unreachable => unreachable.push(e),
                CoordinatorStatus::Stale => {}
            }
        }
        if !healthy.is_empty() {
            let n = healthy.len();
            healthy.rotate_left(turn % n);
        }
        healthy.extend(unreachable);
        healthy
    }

    /// Worker status as shown in the topology: the workers of a coordinator that is stale or
    /// cannot be reached cannot be reached either.
    pub(crate) fn worker_status(&self, e: &Entry, w: &WorkerSummary, now: Instant) -> WorkerStatus {
        if self.status(e, now) != CoordinatorStatus::Healthy && w.status == WorkerStatus::Active {
            WorkerStatus::Stale
        } else {
            w.status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rma_proto::WorkerType;

    const T: Thresholds = Thresholds {
        stale_after: Duration::from_secs(300),
        expire_after: Duration::from_secs(600),
        ping_misses_out: 2,
    };

    fn entry(id: &str, now: Instant, services: &[&str]) -> Entry {
        Entry {
            id: id.into(),
            url: format!("http://{id}"),
            location: None,
            registered_at: SystemTime::UNIX_EPOCH,
            last_seen: now,
            last_seen_wall: SystemTime::UNIX_EPOCH,
            services: services.iter().map(|s| ((*s).to_owned(), 1)).collect(),
            workers: vec![],
            load: 0.0,
            active_requests: 0,
            unreachable: false,
            ping_misses: 0,
            inventory_known: true,
            requests: Default::default(),
            seen: Default::default(),
        }
    }

    fn ids(v: Vec<&Entry>) -> Vec<&str> {
        v.into_iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn stale_then_expired() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &["echo"]));
        let e = r.get("a").expect("a").clone();
        assert_eq!(
            r.status(&e, t0 + Duration::from_secs(299)),
            CoordinatorStatus::Healthy
        );
        assert_eq!(
            r.status(&e, t0 + Duration::from_secs(300)),
            CoordinatorStatus::Stale
        );
        assert!(
            r.candidates_for_service(
                "echo",
                t0 + Duration::from_secs(300),
                0,
                Balance::RoundRobin,
                &mut rand::rng()
            )
            .is_empty()
        );
        assert!(r.sweep(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(r.sweep(t0 + Duration::from_secs(600)), ["a"]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn heartbeat_refreshes_and_unknown_is_refused() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &[]));
        let later = t0 + Duration::from_secs(299);
        let hb = CoordinatorHeartbeat {
            coordinator_id: "a".into(),
            ..Default::default()
        };
        assert!(r.heartbeat(hb.clone(), later, SystemTime::now()));
        let e = r.get("a").expect("a").clone();
        assert_eq!(
            r.status(&e, t0 + Duration::from_secs(400)),
            CoordinatorStatus::Healthy
        );
        let unknown = CoordinatorHeartbeat {
            coordinator_id: "b".into(),
            ..hb
        };
        assert!(!r.heartbeat(unknown, later, SystemTime::now()));
    }

    #[test]
    fn service_candidates_rotate_and_skip_those_without_the_service() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &["echo"]));
        r.upsert(entry("b", t0, &["ocr"]));
        r.upsert(entry("c", t0, &["echo", "ocr"]));
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["a", "c"]
        );
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 1, Balance::RoundRobin, &mut rand::rng())),
            ["c", "a"]
        );
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 2, Balance::RoundRobin, &mut rand::rng())),
            ["a", "c"]
        );
        assert!(
            r.candidates_for_service("store", t0, 0, Balance::RoundRobin, &mut rand::rng())
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_built_before_a_placement_does_not_undo_it() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &[]));
        r.set_home("w-new", "a", t0);
        let hb = CoordinatorHeartbeat {
            coordinator_id: "a".into(),
            ..Default::default()
        };
        r.heartbeat(hb.clone(), Instant::now(), SystemTime::now());
        assert_eq!(
            r.home_of("w-new").map(|e| e.id.as_str()),
            Some("a"),
            "kept within the grace"
        );
        tokio::time::advance(PLACEMENT_GRACE).await;
        r.heartbeat(hb, Instant::now(), SystemTime::now());
        assert!(
            r.home_of("w-new").is_none(),
            "a coordinator that never heard of it wins later"
        );
    }

    #[test]
    fn coordinators_loaded_from_the_file_are_tried_before_their_first_heartbeat() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &["echo"]));
        let mut loaded = entry("b", t0, &[]);
        loaded.inventory_known = false;
        r.upsert(loaded);
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["a", "b"]
        );
        assert_eq!(
            ids(r.candidates_for_service("ocr", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["b"]
        );
    }

    #[test]
    fn missed_pings_take_a_coordinator_out_until_one_is_answered() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &["echo"]));
        r.upsert(entry("b", t0, &["echo"]));
        assert!(!r.record_ping("a", false), "one miss is not enough");
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["a", "b"]
        );
        assert!(r.record_ping("a", false), "the second miss takes it out");
        assert_eq!(
            r.status(r.get("a").expect("a"), t0),
            CoordinatorStatus::Unreachable
        );
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["b", "a"]
        );
        // A heartbeat (it can reach us) does not bring it back: we cannot reach it.
        r.heartbeat(
            CoordinatorHeartbeat {
                coordinator_id: "a".into(),
                services: [("echo".to_owned(), 1)].into(),
                ..Default::default()
            },
            t0,
            SystemTime::now(),
        );
        assert_eq!(
            r.status(r.get("a").expect("a"), t0),
            CoordinatorStatus::Unreachable
        );
        assert!(r.record_ping("a", true), "an answer brings it back");
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["a", "b"]
        );
    }

    #[test]
    fn unreachable_ones_go_last_until_they_beat_again() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &["echo"]));
        r.upsert(entry("b", t0, &["echo"]));
        r.mark_unreachable("a");
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["b", "a"]
        );
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 1, Balance::RoundRobin, &mut rand::rng())),
            ["b", "a"]
        );
        let hb = CoordinatorHeartbeat {
            coordinator_id: "a".into(),
            services: [("echo".to_owned(), 1)].into(),
            ..Default::default()
        };
        r.heartbeat(hb, t0, SystemTime::now());
        assert_eq!(
            ids(r.candidates_for_service("echo", t0, 0, Balance::RoundRobin, &mut rand::rng())),
            ["a", "b"]
        );
    }

    #[test]
    fn workers_go_to_the_emptiest_coordinator_and_homes_follow_heartbeats() {
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        r.upsert(entry("a", t0, &[]));
        r.upsert(entry("b", t0, &[]));
        let w = |id: &str| WorkerSummary {
            id: id.into(),
            worker_type: WorkerType::Cpu,
            services: vec![],
            status: WorkerStatus::Active,
            active_requests: 0,
            load: 0.0,
            requests_last_minute: 0,
            last_seen: String::new(),
            tunnel_url: None,
            latency_p99_ms: Default::default(),
            failures_last_minute: 0,
            placed: vec![],
        };
        let hb = CoordinatorHeartbeat {
            coordinator_id: "a".into(),
            workers: vec![w("w1"), w("w2")],
            ..Default::default()
        };
        r.heartbeat(hb, t0, SystemTime::now());
        assert_eq!(ids(r.candidates_for_worker(t0, 0)), ["b", "a"]);
        assert_eq!(r.home_of("w1").map(|e| e.id.as_str()), Some("a"));
        r.set_home("w3", "b", t0);
        assert_eq!(r.home_of("w3").map(|e| e.id.as_str()), Some("b"));
        r.remove("b");
        assert!(r.home_of("w3").is_none());
        // A later heartbeat that no longer lists w2 forgets where it was.
        let hb = CoordinatorHeartbeat {
            coordinator_id: "a".into(),
            workers: vec![w("w1")],
            ..Default::default()
        };
        r.heartbeat(hb, t0, SystemTime::now());
        assert!(r.home_of("w2").is_none());
    }

    #[test]
    fn p2c_sends_fewer_requests_to_a_slow_or_failing_coordinator() {
        use rand::SeedableRng;
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        for id in ["fast", "slow", "failing"] {
            r.upsert(entry(id, t0, &["echo"]));
        }
        for _ in 0..5 {
            r.forward_ended("fast", "echo", Duration::from_millis(10), true, false, t0);
            r.forward_ended("slow", "echo", Duration::from_millis(100), true, false, t0);
            r.forward_ended(
                "failing",
                "echo",
                Duration::from_millis(10),
                true,
                false,
                t0,
            );
        }
        for _ in 0..3 {
            r.forward_started("failing", "echo");
            r.forward_ended("failing", "echo", Duration::ZERO, false, true, t0);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut first: BTreeMap<String, u32> = BTreeMap::new();
        for turn in 0..3_000 {
            let c = r.candidates_for_service("echo", t0, turn, Balance::P2c, &mut rng);
            assert_eq!(c.len(), 3, "the others stay as fallbacks");
            *first.entry(c[0].id.clone()).or_default() += 1;
        }
        // Fast wins both pairs it is in; slow (10×) loses to fast and to failing (health ¼ → 40 ms).
        assert!(first["fast"] > 1_900, "{first:?}");
        assert!(first.get("slow").copied().unwrap_or(0) < 100, "{first:?}");
        assert!(first["failing"] > 900, "{first:?}");
    }

    #[test]
    fn p2c_among_many_probes_a_few_and_avoids_a_slow_one() {
        use rand::SeedableRng;
        let t0 = Instant::now();
        let mut r = Registry::new(T);
        for i in 0..200 {
            r.upsert(entry(&format!("c{i:03}"), t0, &["echo"]));
        }
        for i in 0..200 {
            let id = format!("c{i:03}");
            let took = Duration::from_millis(if i == 7 { 500 } else { 5 });
            r.forward_ended(&id, "echo", took, true, false, t0);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut first: BTreeMap<String, u32> = BTreeMap::new();
        for turn in 0..4_000 {
            let c = r.candidates_for_service("echo", t0, turn, Balance::P2c, &mut rng);
            assert_eq!(c.len(), PROBED_CANDIDATES, "two drawn and fallbacks");
            let distinct: std::collections::BTreeSet<&str> =
                c.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(distinct.len(), c.len());
            *first.entry(c[0].id.clone()).or_default() += 1;
        }
        // Spread over many (about 20 each), the slow one never first: it loses every pair.
        assert!(first.len() > 150, "{}", first.len());
        assert_eq!(first.get("c007"), None);
        // All but one unreachable: the exact ordering takes over and puts the healthy one first.
        for i in 1..200 {
            r.mark_unreachable(&format!("c{i:03}"));
        }
        let c = r.candidates_for_service("echo", t0, 0, Balance::P2c, &mut rng);
        assert_eq!(c[0].id, "c000");
        assert_eq!(c.len(), 200, "unreachable ones stay as the last fallbacks");
    }
}
