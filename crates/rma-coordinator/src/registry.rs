//! The coordinator's registry of workers: in memory, rebuilt when workers re-register.
//!
//! [`Workers`] is plain data: selection and liveness are functions of it and an explicit `now`.
//! [`Registry`] shares it between handlers and tasks and tells them when who is active changed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rma_proto::api::{WorkerCounts, WorkerStatus, WorkerSummary};
use rma_proto::{WorkerType, service};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::link::LinkHandle;
use crate::liveness::{Liveness, liveness};

/// One registered worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerEntry {
    /// Id.
    pub(crate) id: String,
    /// Primary type.
    pub(crate) worker_type: WorkerType,
    /// Assigned services.
    pub(crate) services: Vec<String>,
    /// A URL it can also be called at.
    pub(crate) tunnel_url: Option<String>,
    /// First registration (wall clock).
    pub(crate) registered_at: SystemTime,
    /// Last registration or heartbeat.
    pub(crate) last_seen: Instant,
    /// Load it reported.
    pub(crate) load: f64,
    /// Requests it reported running.
    pub(crate) reported_active: u32,
    /// Its live link, when it has one.
    pub(crate) link: Option<LinkHandle>,
    /// Requests sent to it, for the topology's traffic figures.
    pub(crate) requests: rma_http::RateWindow,
    /// A call to its tunnel URL failed to connect; cleared by its next heartbeat.
    pub(crate) tunnel_down: bool,
    /// Who runs it (its credential's owner, else its own id): spot checks ask another owner.
    pub(crate) owner: String,
    /// Spot checks it lost (its answer was the odd one out).
    pub(crate) strikes: u32,
    /// No new work: it lost too many spot checks.
    pub(crate) quarantined: bool,
}

/// How work reaches a worker.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Down its link.
    Link(LinkHandle),
    /// Over HTTP to its tunnel URL.
    Http(String),
}

impl WorkerEntry {
    /// Whether the coordinator can send it work.
    pub(crate) fn reachable(&self) -> bool {
        self.link_up() || (self.tunnel_url.is_some() && !self.tunnel_down)
    }

    fn link_up(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| !l.is_closed() && !l.is_draining())
    }

    /// How to send it work now: its link when that is up, else its tunnel URL.
    pub(crate) fn route(&self) -> Option<Route> {
        if self.link_up() {
            self.link.clone().map(Route::Link)
        } else if !self.tunnel_down {
            self.tunnel_url.clone().map(Route::Http)
        } else {
            None
        }
    }

    /// Requests in flight on it, as the coordinator counts them.
    pub(crate) fn in_flight(&self) -> u32 {
        self.link.as_ref().map_or(0, LinkHandle::in_flight)
    }
}

/// The registry shared by the coordinator's handlers and tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Registry {
    workers: Arc<Mutex<Workers>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Registry {
            workers: Arc::new(Mutex::new(Workers::new(thresholds))),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The workers, locked. Never held across an await.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Says who is active (or with what) changed: the registrar heartbeats the router at once
    /// and the job runner looks at its queue again.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes on every [`Registry::changed`].
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether an active worker offers `service` now.
    pub(crate) fn offers(&self, service: &str) -> bool {
        self.lock().inventory(Instant::now()).contains_key(service)
    }

    /// Removes expired workers (closing their links) and calls [`Registry::changed`] when who
    /// is active differs from `last`. The liveness loop calls this; tests call it after
    /// advancing paused time.
    pub(crate) fn sweep_once(&self, last: &mut BTreeSet<(String, bool)>) -> Vec<String> {
        let now = Instant::now();
        let (expired, fingerprint) = {
            let mut w = self.lock();
            let expired = w.sweep(now);
            (expired, w.fingerprint(now))
        };
        for w in &expired {
            if let Some(l) = &w.link {
                l.close();
            }
            tracing::info!(worker = %w.id, "worker expired and removed");
        }
        if fingerprint != *last {
            *last = fingerprint;
            self.changed();
        }
        expired.into_iter().map(|w| w.id).collect()
    }
}

/// Liveness thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// Stale after this much silence.
    pub(crate) timeout: std::time::Duration,
    /// Removed after this much silence.
    pub(crate) expire_after: std::time::Duration,
    /// Requests one worker may have in flight; past it the worker is skipped until one ends.
    pub(crate) max_in_flight: u32,
}

/// All workers.
#[derive(Debug)]
pub(crate) struct Workers {
    map: BTreeMap<String, WorkerEntry>,
    thresholds: Thresholds,
    turn: usize,
}

impl Workers {
    /// An empty registry.
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Workers {
            map: BTreeMap::new(),
            thresholds,
            turn: 0,
        }
    }

    /// One worker's liveness at `now`.
    pub(crate) fn liveness(&self, w: &WorkerEntry, now: Instant) -> Liveness {
        liveness(
            w.last_seen,
            now,
            w.reachable(),
            self.thresholds.timeout,
            self.thresholds.expire_after,
        )
    }

    /// Adds or refreshes a registration; a re-registering worker keeps its live link.
    pub(crate) fn register(&mut self, mut entry: WorkerEntry) {
        if let Some(old) = self.map.get(&entry.id) {
            entry.registered_at = old.registered_at;
            if entry.link.is_none() {
                entry.link = old.link.clone();
            }
            entry.requests = old.requests.clone();
            // Registering again does not clear a record.
            entry.strikes = old.strikes;
            entry.quarantined = old.quarantined;
        }
        self.map.insert(entry.id.clone(), entry);
    }

    /// Applies a heartbeat; false when the worker is unknown.
    pub(crate) fn heartbeat(&mut self, id: &str, load: f64, active: u32, now: Instant) -> bool {
        match self.map.get_mut(id) {
            Some(w) => {
                w.last_seen = now;
                w.tunnel_down = false;
                w.load = load;
                w.reported_active = active;
                true
            }
            None => false,
        }
    }

    /// One worker.
    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<&WorkerEntry> {
        self.map.get(id)
    }

    /// Attaches a link; returns the one it replaces, for the caller to close.
    pub(crate) fn attach_link(
        &mut self,
        id: &str,
        link: LinkHandle,
        now: Instant,
    ) -> Option<Option<LinkHandle>> {
        let w = self.map.get_mut(id)?;
        w.last_seen = now;
        Some(w.link.replace(link))
    }

    /// Takes a worker's tunnel out of use after a failed connection.
    pub(crate) fn mark_tunnel_down(&mut self, id: &str) {
        if let Some(w) = self.map.get_mut(id) {
            w.tunnel_down = true;
        }
    }

    /// Detaches `link` from its worker, unless a newer link replaced it already.
    pub(crate) fn detach_link(&mut self, id: &str, link: &LinkHandle) {
        if let Some(w) = self.map.get_mut(id)
            && w.link.as_ref().is_some_and(|l| l.same(link))
        {
            w.link = None;
        }
    }

    /// Who runs worker `id`.
    pub(crate) fn owner_of(&self, id: &str) -> Option<String> {
        self.map.get(id).map(|w| w.owner.clone())
    }

    /// Workers whose owner is in `owners`: excluded from a spot check.
    pub(crate) fn owned_by(&self, owners: &HashSet<String>) -> HashSet<String> {
        self.map
            .values()
            .filter(|w| owners.contains(&w.owner))
            .map(|w| w.id.clone())
            .collect()
    }

    /// Records a lost spot check; `true` when this quarantines the worker.
    pub(crate) fn strike(&mut self, id: &str, limit: u32) -> bool {
        match self.map.get_mut(id) {
            Some(w) if !w.quarantined => {
                w.strikes += 1;
                w.quarantined = w.strikes >= limit.max(1);
                w.quarantined
            }
            _ => false,
        }
    }

    /// Removes a worker (revoked); its link, if any, is closed.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        match self.map.remove(id) {
            Some(w) => {
                if let Some(l) = w.link {
                    l.close();
                }
                true
            }
            None => false,
        }
    }

    /// Removes expired workers; returns them (their links are for the caller to close).
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<WorkerEntry> {
        let expired: Vec<String> = self
            .map
            .values()
            .filter(|w| self.liveness(w, now) == Liveness::Expired)
            .map(|w| w.id.clone())
            .collect();
        expired
            .iter()
            .filter_map(|id| self.map.remove(id))
            .collect()
    }

    /// Picks an active worker offering `service`, not in `exclude`, round-robin. Returns its id
    /// and link.
    pub(crate) fn pick(
        &mut self,
        service: &str,
        exclude: &HashSet<String>,
        now: Instant,
    ) -> Option<(String, Route)> {
        let eligible: Vec<&WorkerEntry> = self
            .map
            .values()
            .filter(|w| !exclude.contains(&w.id) && !w.quarantined)
            .filter(|w| w.in_flight() < self.thresholds.max_in_flight)
            .filter(|w| w.services.iter().any(|s| s == service))
            .filter(|w| self.liveness(w, now) == Liveness::Active)
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let start = self.turn % eligible.len();
        self.turn = self.turn.wrapping_add(1);
        let id = eligible[start].id.clone();
        let w = self.map.get_mut(&id)?;
        w.requests.record(now);
        let route = w.route()?;
        Some((id, route))
    }

    /// Counts for `/health`.
    pub(crate) fn counts(&self, now: Instant) -> WorkerCounts {
        let active = self
            .map
            .values()
            .filter(|w| self.liveness(w, now) == Liveness::Active)
            .count();
        WorkerCounts {
            total: self.map.len(),
            active,
            stale: self.map.len() - active,
        }
    }

    /// Every worker as reported to the router.
    pub(crate) fn summaries(&self, now: Instant) -> Vec<WorkerSummary> {
        self.map
            .values()
            .map(|w| WorkerSummary {
                id: w.id.clone(),
                worker_type: w.worker_type,
                services: w.services.clone(),
                status: if w.quarantined {
                    WorkerStatus::Quarantined
                } else if self.liveness(w, now) == Liveness::Active {
                    WorkerStatus::Active
                } else {
                    WorkerStatus::Stale
                },
                active_requests: w.in_flight(),
                load: w.load,
                requests_last_minute: w.requests.count(now),
                last_seen: rma_http::rfc3339(rma_http::wall_of(w.last_seen)),
                tunnel_url: w.tunnel_url.clone(),
            })
            .collect()
    }

    /// Service → number of active workers offering it. `process` (run by the coordinator
    /// itself) counts as offered when OCR, PDF text and extraction all are.
    pub(crate) fn inventory(&self, now: Instant) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for w in self
            .map
            .values()
            .filter(|w| self.liveness(w, now) == Liveness::Active)
        {
            for s in &w.services {
                *out.entry(s.clone()).or_insert(0) += 1;
            }
        }
        let needed = [service::OCR, service::PDF_TEXT, service::EXTRACT];
        if let Some(n) = needed
            .iter()
            .map(|s| out.get(*s).copied().unwrap_or(0))
            .min()
            .filter(|n| *n > 0)
        {
            out.insert(service::PROCESS.to_owned(), n);
        }
        out
    }

    /// A fingerprint of what the router needs to know (who is active with what), to send a
    /// heartbeat early when it changes.
    pub(crate) fn fingerprint(&self, now: Instant) -> BTreeSet<(String, bool)> {
        self.map
            .values()
            .map(|w| (w.id.clone(), self.liveness(w, now) == Liveness::Active))
            .collect()
    }

    /// Mean reported load of active workers.
    pub(crate) fn mean_load(&self, now: Instant) -> f64 {
        let loads: Vec<f64> = self
            .map
            .values()
            .filter(|w| self.liveness(w, now) == Liveness::Active)
            .map(|w| w.load)
            .collect();
        if loads.is_empty() {
            0.0
        } else {
            loads.iter().sum::<f64>() / loads.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: Thresholds = Thresholds {
        timeout: Duration::from_secs(90),
        expire_after: Duration::from_secs(180),
        max_in_flight: 64,
    };

    fn worker(id: &str, services: &[&str], now: Instant, linked: bool) -> WorkerEntry {
        WorkerEntry {
            id: id.into(),
            worker_type: WorkerType::Cpu,
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            tunnel_url: None,
            registered_at: SystemTime::UNIX_EPOCH,
            last_seen: now,
            load: 0.0,
            reported_active: 0,
            link: linked.then(LinkHandle::detached),
            requests: Default::default(),
            tunnel_down: false,
            owner: id.into(),
            strikes: 0,
            quarantined: false,
        }
    }

    #[test]
    fn a_worker_at_its_in_flight_limit_is_passed_over_and_quarantine_takes_it_out() {
        let t0 = Instant::now();
        let mut w = Workers::new(T);
        let busy = worker("busy", &["echo"], t0, true);
        busy.link.as_ref().expect("link").pretend_in_flight(64);
        w.register(busy);
        w.register(worker("free", &["echo"], t0, true));
        let none = HashSet::new();
        for _ in 0..4 {
            assert_eq!(w.pick("echo", &none, t0).expect("a worker").0, "free");
        }
        assert!(!w.strike("free", 2));
        assert!(w.strike("free", 2), "the second strike quarantines");
        assert!(
            w.pick("echo", &none, t0).is_none(),
            "busy and quarantined: nobody"
        );
        let s = w.summaries(t0);
        let free = s.iter().find(|x| x.id == "free").expect("listed");
        assert_eq!(free.status, WorkerStatus::Quarantined);
        // Registering again keeps the record.
        w.register(worker("free", &["echo"], t0, true));
        assert!(w.pick("echo", &none, t0).is_none());
    }

    #[test]
    fn pick_rotates_over_active_workers_with_the_service() {
        let t0 = Instant::now();
        let mut w = Workers::new(T);
        w.register(worker("a", &["echo"], t0, true));
        w.register(worker("b", &["echo", "ocr"], t0, true));
        w.register(worker("c", &["ocr"], t0, true));
        w.register(worker("d", &["echo"], t0, false));
        let none = HashSet::new();
        let mut seen: Vec<String> = (0..4)
            .map(|_| w.pick("echo", &none, t0).expect("a worker").0)
            .collect();
        assert_eq!(seen, ["a", "b", "a", "b"], "d has no link, c no echo");
        seen.clear();
        let exclude: HashSet<String> = ["a".to_owned()].into();
        assert_eq!(w.pick("echo", &exclude, t0).expect("b").0, "b");
        assert!(w.pick("store", &none, t0).is_none());
    }

    #[test]
    fn silent_workers_go_stale_then_are_removed() {
        let t0 = Instant::now();
        let mut w = Workers::new(T);
        w.register(worker("a", &["echo"], t0, true));
        let none = HashSet::new();
        assert!(
            w.pick("echo", &none, t0 + Duration::from_secs(90))
                .is_none()
        );
        assert_eq!(w.counts(t0 + Duration::from_secs(90)).stale, 1);
        assert!(w.sweep(t0 + Duration::from_secs(179)).is_empty());
        assert!(w.heartbeat("a", 0.5, 0, t0 + Duration::from_secs(100)));
        assert_eq!(w.counts(t0 + Duration::from_secs(101)).active, 1);
        assert_eq!(w.sweep(t0 + Duration::from_secs(280)).len(), 1);
        assert!(!w.heartbeat("a", 0.0, 0, t0));
    }

    #[test]
    fn a_replaced_link_does_not_detach_the_new_one() {
        let t0 = Instant::now();
        let mut w = Workers::new(T);
        w.register(worker("a", &["echo"], t0, false));
        let old = LinkHandle::detached();
        let new = LinkHandle::detached();
        w.attach_link("a", old.clone(), t0);
        w.attach_link("a", new.clone(), t0);
        w.detach_link("a", &old);
        assert!(w.get("a").expect("a").reachable());
        w.detach_link("a", &new);
        assert!(!w.get("a").expect("a").reachable());
    }

    #[test]
    fn inventory_counts_active_workers_per_service() {
        let t0 = Instant::now();
        let mut w = Workers::new(T);
        w.register(worker("a", &["echo", "ocr"], t0, true));
        w.register(worker("b", &["echo"], t0, true));
        w.register(worker("c", &["echo"], t0, false));
        let inv = w.inventory(t0);
        assert_eq!(inv.get("echo"), Some(&2));
        assert_eq!(inv.get("ocr"), Some(&1));
    }
}
