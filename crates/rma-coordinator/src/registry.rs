//! The coordinator's registry of workers: in memory, rebuilt when workers re-register.
//!
//! [`Workers`] is plain data: selection and liveness are functions of it and an explicit `now`.
//! [`Registry`] shares it between handlers and tasks and tells them when who is active changed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rma_http::balance::{self, Balance, Load, PerService};
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
    /// Assigned services: what it is sent now.
    pub(crate) services: Vec<String>,
    /// Services it could run (placement may lend it any of them).
    pub(crate) eligible: Vec<String>,
    /// Services it started with: placement never takes them away.
    pub(crate) base: Vec<String>,
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
    /// CPU cores it reported: how many OCR (and other CPU-bound) calls it runs at once.
    pub(crate) cores: u32,
    /// What this coordinator observed of it, per service (calls in flight included).
    pub(crate) observed: PerService,
    /// Calls to it that failed (lost, 5xx) over the last minute.
    pub(crate) failures: rma_http::RateWindow,
}

/// Services whose calls a worker runs one per core; others (echo, store, cache) are I/O and
/// counted one by one.
const CPU_BOUND: [&str; 5] = [
    service::OCR,
    service::ENHANCE,
    service::PDF_TEXT,
    service::EXTRACT,
    service::AI,
];

/// Whether calls of `service` run one per core at a worker.
pub(crate) fn cpu_bound(service: &str) -> bool {
    CPU_BOUND.contains(&service)
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
        self.link
            .as_ref()
            .map_or(0, LinkHandle::in_flight)
            .max(self.observed.in_flight())
    }

    /// What the balancer knows of it for a call to `service`.
    fn load_for(&self, service: &str, now: Instant) -> Load {
        // Calls of other services in flight do not slow this one much (echo sleeps, OCR
        // computes): the cost counts this service's calls.
        let (latency_s, in_flight) = self.observed.load(service, now);
        Load {
            latency_s,
            in_flight,
            queue: 0,
            capacity: if cpu_bound(service) {
                self.cores.max(1)
            } else {
                1
            },
            health: 1.0,
        }
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

    /// A call for `service` found no worker to take it: lends the service to the idle worker
    /// [`Workers::lender_for`] names; the worker and the router are told.
    pub(crate) fn lend(&self, service: &str) -> bool {
        let Some(id) = self.lock().lender_for(service, Instant::now()) else {
            return false;
        };
        let moved = self.make_move(
            &id,
            service,
            true,
            "service placed on an idle worker: a call found no other",
        );
        if moved {
            self.changed();
        }
        moved
    }

    /// Carries out one move of placement: the registry's index changes, the move is logged and
    /// counted, and the worker hears the services it is sent now. `false` when nothing changed.
    /// The caller calls [`Registry::changed`] once for all its moves.
    pub(crate) fn make_move(&self, worker: &str, service: &str, added: bool, why: &str) -> bool {
        let Some((link, services)) = self.lock().reassign(worker, service, added) else {
            return false;
        };
        tracing::info!(%worker, %service, services = ?services, "{why}");
        metrics::counter!("rma_coordinator_placement_moves_total", "service" => service::metric_label(service), "move" => if added { "assign" } else { "withdraw" }).increment(1);
        if let Some(l) = link {
            l.assign(services);
        }
        true
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
        self.lock().publish_gauges(now);
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
    /// How a worker is chosen among those that could take a call.
    pub(crate) balance: Balance,
}

/// All workers.
#[derive(Debug)]
pub(crate) struct Workers {
    map: BTreeMap<String, WorkerEntry>,
    /// Service → ids of the workers assigned it, so a pick looks at those only.
    by_service: BTreeMap<String, Vec<String>>,
    thresholds: Thresholds,
    turn: usize,
    rng: SmallRng,
}

/// The bounded `worker` label for a worker id.
pub(crate) fn worker_label(id: &str) -> String {
    static LABELS: std::sync::OnceLock<rma_http::metrics::WorkerLabels> =
        std::sync::OnceLock::new();
    LABELS.get_or_init(Default::default).label(id)
}

/// Above this many workers offering a service, P2C draws its two candidates by probing at
/// random instead of listing every eligible worker: picking stays O(1) at 10,000 workers.
const PROBE_ABOVE: usize = 32;

impl Workers {
    /// An empty registry.
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        Workers {
            map: BTreeMap::new(),
            by_service: BTreeMap::new(),
            thresholds,
            turn: 0,
            rng: SmallRng::from_os_rng(),
        }
    }

    /// The same with a fixed random seed (tests).
    #[cfg(test)]
    pub(crate) fn seeded(thresholds: Thresholds, seed: u64) -> Self {
        Workers {
            rng: SmallRng::seed_from_u64(seed),
            ..Workers::new(thresholds)
        }
    }

    fn unindex(&mut self, id: &str) {
        if let Some(old) = self.map.get(id) {
            for s in &old.services {
                if let Some(ids) = self.by_service.get_mut(s) {
                    ids.retain(|x| x != id);
                }
            }
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
            entry.observed = old.observed.clone();
            entry.failures = old.failures.clone();
        }
        self.unindex(&entry.id);
        for s in &entry.services {
            self.by_service
                .entry(s.clone())
                .or_default()
                .push(entry.id.clone());
        }
        self.map.insert(entry.id.clone(), entry);
    }

    /// A call to `worker` for `service` ended after `took`: `Some(true)` when the worker
    /// answered, `Some(false)` when it failed (lost, 5xx; that teaches nothing about its
    /// speed), `None` when the caller gave up waiting.
    pub(crate) fn finished(
        &mut self,
        worker: &str,
        service: &str,
        took: std::time::Duration,
        answered: Option<bool>,
        now: Instant,
    ) {
        if let Some(w) = self.map.get_mut(worker) {
            w.observed.ended(service, took, answered == Some(true), now);
            if answered == Some(false) {
                w.failures.record(now);
            }
        }
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
        self.unindex(id);
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
        for id in &expired {
            self.unindex(id);
        }
        expired
            .iter()
            .filter_map(|id| self.map.remove(id))
            .collect()
    }

    /// Picks an active worker offering `service`, not in `exclude`, by the balancing policy,
    /// and counts the call as in flight there until [`Workers::finished`]. Returns its id and
    /// how to reach it.
    pub(crate) fn pick(
        &mut self,
        service: &str,
        exclude: &HashSet<String>,
        now: Instant,
    ) -> Option<(String, Route)> {
        let ids = self.by_service.get(service)?;
        let th = self.thresholds;
        let map = &self.map;
        let eligible = |id: &String| {
            map.get(id).is_some_and(|w| {
                !exclude.contains(&w.id)
                    && !w.quarantined
                    && w.in_flight() < th.max_in_flight
                    && liveness(w.last_seen, now, w.reachable(), th.timeout, th.expire_after)
                        == Liveness::Active
            })
        };
        let turn = self.turn;
        self.turn = self.turn.wrapping_add(1);
        let mut chosen = None;
        if self.thresholds.balance == Balance::P2c && ids.len() > PROBE_ABOVE {
            // Probe a few random workers; two eligible ones are enough for P2C.
            let mut found: Vec<&String> = Vec::with_capacity(2);
            for _ in 0..16 {
                let id = &ids[rand::Rng::random_range(&mut self.rng, 0..ids.len())];
                if !found.contains(&id) && eligible(id) {
                    found.push(id);
                    if found.len() == 2 {
                        break;
                    }
                }
            }
            if found.len() == 2 {
                let loads: Vec<Load> = found
                    .iter()
                    .filter_map(|id| map.get(*id).map(|w| w.load_for(service, now)))
                    .collect();
                let i = balance::choose(Balance::P2c, &loads, turn, &mut self.rng)?;
                chosen = Some(found[i].clone());
            }
        }
        if chosen.is_none() {
            let found: Vec<&String> = ids.iter().filter(|id| eligible(id)).collect();
            let loads: Vec<Load> = found
                .iter()
                .filter_map(|id| map.get(*id).map(|w| w.load_for(service, now)))
                .collect();
            let i = balance::choose(self.thresholds.balance, &loads, turn, &mut self.rng)?;
            chosen = Some(found[i].clone());
        }
        let id = chosen?;
        let w = self.map.get_mut(&id)?;
        let route = w.route()?;
        w.requests.record(now);
        w.observed.started(service);
        Some((id, route))
    }

    /// Sets the `rma_coordinator_workers{state}` gauges.
    pub(crate) fn publish_gauges(&self, now: Instant) {
        let c = self.counts(now);
        let quarantined = self.map.values().filter(|w| w.quarantined).count();
        metrics::gauge!("rma_coordinator_workers", "state" => "registered").set(c.total as f64);
        metrics::gauge!("rma_coordinator_workers", "state" => "active").set(c.active as f64);
        metrics::gauge!("rma_coordinator_workers", "state" => "stale").set(c.stale as f64);
        metrics::gauge!("rma_coordinator_workers", "state" => "quarantined")
            .set(quarantined as f64);
        for w in self.map.values() {
            metrics::gauge!("rma_coordinator_worker_queue_depth", "worker" => worker_label(&w.id))
                .set(f64::from(w.in_flight()));
        }
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
                latency_p99_ms: w.observed.p99_ms(now),
                failures_last_minute: w.failures.count(now),
                placed: w
                    .services
                    .iter()
                    .filter(|s| !w.base.contains(s))
                    .cloned()
                    .collect(),
            })
            .collect()
    }

    /// Active workers (the topology's `active`: live and not quarantined) and the services each
    /// is sent: what a replication group records as this coordinator's placement. Checked every
    /// half second, so it builds nothing else (no latency windows, as [`Workers::summaries`]).
    pub(crate) fn assignments(&self, now: Instant) -> BTreeMap<String, Vec<String>> {
        self.map
            .values()
            .filter(|w| !w.quarantined && self.liveness(w, now) == Liveness::Active)
            .map(|w| (w.id.clone(), w.services.clone()))
            .collect()
    }

    /// Every worker as placement sees it.
    pub(crate) fn placement_views(&self, now: Instant) -> Vec<crate::placement::WorkerView> {
        self.map
            .values()
            .map(|w| crate::placement::WorkerView {
                id: w.id.clone(),
                active: !w.quarantined
                    && !w.link.as_ref().is_some_and(LinkHandle::is_draining)
                    && self.liveness(w, now) == Liveness::Active,
                eligible: w.eligible.clone(),
                base: w.base.clone(),
                assigned: w.services.clone(),
                in_flight: w
                    .services
                    .iter()
                    .map(|s| (s.clone(), w.observed.load(s, now).1))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                started: w.observed.started_counts(),
                cores: w.cores,
            })
            .collect()
    }

    /// The worker to lend `service` to when a call for it found nobody: active, idle, eligible
    /// for it and not sent it yet, chosen by [`crate::placement::lender_rank`].
    pub(crate) fn lender_for(&self, service: &str, now: Instant) -> Option<String> {
        self.map
            .values()
            .filter(|w| {
                !w.quarantined
                    && !w.link.as_ref().is_some_and(LinkHandle::is_draining)
                    && w.in_flight() == 0
                    && !w.services.iter().any(|s| s == service)
                    && w.eligible.iter().any(|s| s == service)
                    && self.liveness(w, now) == Liveness::Active
            })
            .min_by_key(|w| crate::placement::lender_rank(w.services.len(), w.cores, &w.id))
            .map(|w| w.id.clone())
    }

    /// Adds `service` to what `id` is sent (`added`) or takes it away, within what it could
    /// run and never below its base. Returns its link (to tell it) and its services now, or
    /// `None` when nothing changed.
    pub(crate) fn reassign(
        &mut self,
        id: &str,
        service: &str,
        added: bool,
    ) -> Option<(Option<LinkHandle>, Vec<String>)> {
        let w = self.map.get_mut(id)?;
        let has = w.services.iter().any(|s| s == service);
        if added {
            if has || !w.eligible.iter().any(|s| s == service) {
                return None;
            }
            w.services.push(service.to_owned());
            w.services.sort();
            self.by_service
                .entry(service.to_owned())
                .or_default()
                .push(id.to_owned());
        } else {
            if !has || w.base.iter().any(|s| s == service) {
                return None;
            }
            w.services.retain(|s| s != service);
            if let Some(ids) = self.by_service.get_mut(service) {
                ids.retain(|x| x != id);
            }
        }
        Some((w.link.clone(), w.services.clone()))
    }

    /// Service → number of active workers that can serve it: assigned, or standby (a call
    /// for it lends it to an idle worker at once, see [`Registry::lend`]). `process` (run by the
    /// coordinator itself) counts as offered when OCR, PDF text and extraction all are.
    pub(crate) fn inventory(&self, now: Instant) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for w in self
            .map
            .values()
            .filter(|w| self.liveness(w, now) == Liveness::Active)
        {
            let standby = w.eligible.iter().filter(|s| !w.services.contains(s));
            for s in w.services.iter().chain(standby) {
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
        balance: Balance::RoundRobin,
    };

    fn worker(id: &str, services: &[&str], now: Instant, linked: bool) -> WorkerEntry {
        WorkerEntry {
            id: id.into(),
            worker_type: WorkerType::Cpu,
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            eligible: services.iter().map(|s| (*s).to_owned()).collect(),
            base: services.iter().map(|s| (*s).to_owned()).collect(),
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
            cores: 1,
            observed: PerService::default(),
            failures: Default::default(),
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

    #[test]
    fn p2c_keeps_a_slow_worker_busy_in_proportion_to_its_speed() {
        // Three workers, one 5× slower. Calls end in order of when they would finish, with at
        // most 6 in flight: the slow one must get work (no starvation) but far less.
        let t0 = Instant::now();
        let mut w = Workers::seeded(
            Thresholds {
                balance: Balance::P2c,
                ..T
            },
            11,
        );
        for id in ["a", "b", "slow"] {
            w.register(worker(id, &["echo"], t0, true));
        }
        let speed = |id: &str| if id == "slow" { 50u64 } else { 10 };
        let none = HashSet::new();
        let mut clock = 0u64; // ms
        let mut running: Vec<(u64, String)> = Vec::new(); // (finishes at, worker)
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..3_000 {
            while running.len() >= 6 {
                running.sort();
                let (at, id) = running.remove(0);
                clock = clock.max(at);
                let now = t0 + Duration::from_millis(clock);
                w.finished(
                    &id,
                    "echo",
                    Duration::from_millis(speed(&id)),
                    Some(true),
                    now,
                );
            }
            let now = t0 + Duration::from_millis(clock);
            let (id, _) = w.pick("echo", &none, now).expect("a worker");
            // Work queues on a worker: it finishes after those already there.
            let queued = running.iter().filter(|(_, x)| *x == id).count() as u64;
            running.push((clock + speed(&id) * (queued + 1), id.clone()));
            *counts.entry(id).or_default() += 1;
        }
        let slow = counts.get("slow").copied().unwrap_or(0);
        assert!(slow > 0, "the slow worker is not starved: {counts:?}");
        assert!(
            slow < counts["a"] / 3 && slow < counts["b"] / 3,
            "it gets a share near its speed (1/5 of a fast one): {counts:?}"
        );
    }

    #[test]
    fn picking_among_thousands_probes_instead_of_scanning() {
        let t0 = Instant::now();
        let mut w = Workers::seeded(
            Thresholds {
                balance: Balance::P2c,
                ..T
            },
            5,
        );
        for i in 0..2_000 {
            w.register(worker(&format!("w{i}"), &["echo"], t0, true));
        }
        let none = HashSet::new();
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let (id, _) = w.pick("echo", &none, t0).expect("a worker");
            seen.insert(id);
        }
        assert!(seen.len() > 400, "picks spread: {}", seen.len());
        // Removing workers keeps the index true.
        for i in 0..2_000 {
            if i != 7 {
                w.remove(&format!("w{i}"));
            }
        }
        assert_eq!(w.pick("echo", &none, t0).expect("the one left").0, "w7");
    }
}
