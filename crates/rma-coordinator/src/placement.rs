//! Self-healing placement: services move to where the work is.
//!
//! A worker registers with the services it can run (its capabilities, its credential, what its
//! binary implements: *eligible*) and those it starts serving (`rma worker --services`: its
//! *base*; all eligible ones when it names none). The rest are standby. When a service's work
//! backs up — jobs queued for it, or more calls in flight at its workers than they have cores —
//! and stays backed up for [`Rules::grow_after`] (at once when no worker serves it at all), the
//! coordinator assigns it, live, to an idle worker that could run it: one more worker per
//! service per round. Once the service has been calm for [`Rules::shrink_after`], the workers it
//! was lent to give it back, as soon as they have none of its calls in flight. Base services are
//! never taken away.
//!
//! [`decide`] is the whole policy: a pure function of what the registry and the job queue say
//! and what it remembers between rounds ([`Memory`]), tested without I/O. [`run`] is the loop
//! that feeds it and carries its moves out: the registry's index changes, the worker hears an
//! `assign` frame on its link, and the router gets a heartbeat with the new inventory.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

/// How eager placement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long a service's work must stay backed up before another worker is lent to it
    /// [5 s]. A service no active worker serves is placed at the first round that sees its queue.
    pub grow_after: Duration,
    /// How long a service must be calm (nothing queued, no worker past its cores) before lent
    /// workers give it back [60 s].
    pub shrink_after: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grow_after: Duration::from_secs(5),
            shrink_after: Duration::from_secs(60),
        }
    }
}

/// One worker as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerView {
    /// Its id.
    pub(crate) id: String,
    /// In rotation (active, linked or reachable, not quarantined or draining).
    pub(crate) active: bool,
    /// Services it could run.
    pub(crate) eligible: Vec<String>,
    /// Services it started with; never taken away.
    pub(crate) base: Vec<String>,
    /// Services it is sent now.
    pub(crate) assigned: Vec<String>,
    /// Calls in flight on it, per service.
    pub(crate) in_flight: BTreeMap<String, u32>,
    /// Calls started on it so far, per service (what happened between two rounds).
    pub(crate) started: BTreeMap<String, u64>,
    /// Calls of a CPU-bound service it runs at once (its cores).
    pub(crate) cores: u32,
}

impl WorkerView {
    fn busy(&self) -> bool {
        self.in_flight.values().any(|n| *n > 0)
    }

    fn has(&self, service: &str) -> bool {
        self.assigned.iter().any(|s| s == service)
    }
}

/// What waits for one service at this coordinator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Queue {
    /// Jobs queued for it.
    pub(crate) jobs: u32,
}

/// One change of assignment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Move {
    /// Send `service` to `worker` from now on.
    Assign {
        /// Who.
        worker: String,
        /// What.
        service: String,
    },
    /// Stop sending `service` to `worker`.
    Withdraw {
        /// Who.
        worker: String,
        /// What.
        service: String,
    },
}

/// What placement remembers between rounds, per service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Memory {
    /// Since when its work has been backed up.
    backed_up_since: BTreeMap<String, Instant>,
    /// Since when it has been calm.
    calm_since: BTreeMap<String, Instant>,
    /// Calls of it started at all workers, as of the last round.
    started: BTreeMap<String, u64>,
}

/// Calls of `service` waiting beyond what its workers run at once: jobs queued for it, and
/// calls in flight past each serving worker's cores (CPU-bound services only; I/O services are
/// not limited by cores).
fn backlog(
    service: &str,
    workers: &[WorkerView],
    queues: &BTreeMap<String, Queue>,
    cpu_bound: impl Fn(&str) -> bool,
) -> u32 {
    let queued = queues.get(service).map_or(0, |q| q.jobs);
    let over: u32 = if cpu_bound(service) {
        workers
            .iter()
            .filter(|w| w.has(service))
            .map(|w| {
                w.in_flight
                    .get(service)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(w.cores.max(1))
            })
            .sum()
    } else {
        0
    };
    queued.saturating_add(over)
}

/// The order idle workers are lent a service in (the least comes first): the least committed
/// worker, then the one with the most cores, then by id. Placement's rounds and the dispatcher
/// (a call that found nobody) choose alike.
pub(crate) fn lender_rank(assigned: usize, cores: u32, id: &str) -> (usize, Reverse<u32>, &str) {
    (assigned, Reverse(cores), id)
}

/// One round of placement at `now`: the moves to make, at most one assignment per service and
/// per worker.
pub(crate) fn decide(
    workers: &[WorkerView],
    queues: &BTreeMap<String, Queue>,
    memory: &mut Memory,
    rules: Rules,
    now: Instant,
    cpu_bound: impl Fn(&str) -> bool,
) -> Vec<Move> {
    // Every service anyone could run or anything waits for.
    let services: BTreeSet<&str> = workers
        .iter()
        .flat_map(|w| w.eligible.iter().map(String::as_str))
        .chain(queues.keys().map(String::as_str))
        .collect();
    let mut pressed: Vec<(u32, &str)> = Vec::new();
    for s in &services {
        let b = backlog(s, workers, queues, &cpu_bound);
        // Calm means nothing waits, nothing runs and nothing started since the last round:
        // a service with steady short calls is in use even if no round sees one in flight.
        let started: u64 = workers.iter().filter_map(|w| w.started.get(*s)).sum();
        let before = memory.started.insert((*s).to_owned(), started).unwrap_or(0);
        let running: u32 = workers.iter().filter_map(|w| w.in_flight.get(*s)).sum();
        if b == 0 && (started != before || running > 0) {
            memory.backed_up_since.remove(*s);
            memory.calm_since.remove(*s);
        } else if b > 0 {
            memory.calm_since.remove(*s);
            let since = *memory.backed_up_since.entry((*s).to_owned()).or_insert(now);
            let unserved = !workers.iter().any(|w| w.active && w.has(s));
            if unserved || now.saturating_duration_since(since) >= rules.grow_after {
                pressed.push((b, s));
            }
        } else {
            memory.backed_up_since.remove(*s);
            memory.calm_since.entry((*s).to_owned()).or_insert(now);
        }
    }
    let mut moves = Vec::new();
    // The most backed-up service chooses first.
    pressed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    for (_, s) in pressed {
        let lender = workers
            .iter()
            .filter(|w| {
                w.active
                    && !w.busy()
                    && !taken.contains(w.id.as_str())
                    && !w.has(s)
                    && w.eligible.iter().any(|e| e == s)
            })
            .min_by_key(|w| lender_rank(w.assigned.len(), w.cores, &w.id));
        if let Some(w) = lender {
            taken.insert(w.id.as_str());
            moves.push(Move::Assign {
                worker: w.id.clone(),
                service: s.to_owned(),
            });
            // A fresh wait before the next worker is lent to the same service.
            memory.backed_up_since.insert(s.to_owned(), now);
        }
    }
    // Lent services go back once calm long enough, from workers with none of their calls left.
    for w in workers {
        for s in w.assigned.iter().filter(|s| !w.base.contains(s)) {
            let calm = memory
                .calm_since
                .get(s)
                .is_some_and(|t| now.saturating_duration_since(*t) >= rules.shrink_after);
            let idle_here = w.in_flight.get(s).copied().unwrap_or(0) == 0;
            if calm && idle_here {
                moves.push(Move::Withdraw {
                    worker: w.id.clone(),
                    service: s.clone(),
                });
            }
        }
    }
    moves
}

/// Runs placement every `period` until shutdown.
pub(crate) async fn run(
    state: crate::AppState,
    period: Duration,
    mut shutdown: rma_http::Shutdown,
) {
    let rules = state.config().placement;
    let mut memory = Memory::default();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let queues = match state.jobs().queued_by_service().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "placement could not read the job queue");
                continue;
            }
        };
        let now = Instant::now();
        let moves = {
            let w = state.registry().lock();
            let views = w.placement_views(now);
            decide(
                &views,
                &queues,
                &mut memory,
                rules,
                now,
                crate::registry::cpu_bound,
            )
        };
        if moves.is_empty() {
            continue;
        }
        for m in &moves {
            let (worker, service, added, why) = match m {
                Move::Assign { worker, service } => (
                    worker,
                    service,
                    true,
                    "service placed on an idle worker: its queue grew",
                ),
                Move::Withdraw { worker, service } => (
                    worker,
                    service,
                    false,
                    "lent service taken back: its queue drained",
                ),
            };
            state.registry().make_move(worker, service, added, why);
        }
        // The router hears the new inventory at once.
        state.registry().changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn cpu(s: &str) -> bool {
        s == "ocr"
    }

    fn worker(id: &str, base: &[&str], eligible: &[&str]) -> WorkerView {
        WorkerView {
            id: id.into(),
            active: true,
            eligible: eligible.iter().map(|s| (*s).to_owned()).collect(),
            base: base.iter().map(|s| (*s).to_owned()).collect(),
            assigned: base.iter().map(|s| (*s).to_owned()).collect(),
            in_flight: BTreeMap::new(),
            started: BTreeMap::new(),
            cores: 2,
        }
    }

    fn queued(service: &str, jobs: u32) -> BTreeMap<String, Queue> {
        BTreeMap::from([(service.to_owned(), Queue { jobs })])
    }

    fn rules() -> Rules {
        Rules {
            grow_after: 5 * SEC,
            shrink_after: 30 * SEC,
        }
    }

    #[test]
    fn a_queue_for_a_service_nobody_serves_is_placed_at_once_on_an_idle_worker() {
        let t0 = Instant::now();
        let ws = [
            worker("a", &["echo"], &["echo", "ocr"]),
            worker("b", &["echo"], &["echo"]),
        ];
        let mut m = Memory::default();
        let moves = decide(&ws, &queued("ocr", 3), &mut m, rules(), t0, cpu);
        assert_eq!(
            moves,
            [Move::Assign {
                worker: "a".into(),
                service: "ocr".into()
            }],
            "only a can read letters"
        );
    }

    #[test]
    fn a_served_service_gets_another_worker_only_after_staying_backed_up() {
        let t0 = Instant::now();
        let mut busy = worker("reader", &["ocr"], &["ocr"]);
        busy.in_flight.insert("ocr".into(), 2);
        let ws = [busy, worker("idle", &["echo"], &["echo", "ocr"])];
        let mut m = Memory::default();
        let q = queued("ocr", 4);
        assert!(decide(&ws, &q, &mut m, rules(), t0, cpu).is_empty());
        assert!(decide(&ws, &q, &mut m, rules(), t0 + 4 * SEC, cpu).is_empty());
        let moves = decide(&ws, &q, &mut m, rules(), t0 + 5 * SEC, cpu);
        assert_eq!(
            moves,
            [Move::Assign {
                worker: "idle".into(),
                service: "ocr".into()
            }]
        );
        // The next lending waits a full `grow_after` again.
        assert!(decide(&ws, &q, &mut m, rules(), t0 + 6 * SEC, cpu).is_empty());
    }

    #[test]
    fn calls_past_a_workers_cores_count_as_backlog_for_cpu_bound_services_only() {
        let t0 = Instant::now();
        let mut reader = worker("reader", &["ocr", "echo"], &["ocr", "echo"]);
        reader.in_flight.insert("ocr".into(), 5);
        reader.in_flight.insert("echo".into(), 50);
        let ws = [reader, worker("idle", &[], &["ocr", "echo"])];
        let none = BTreeMap::new();
        let mut m = Memory::default();
        assert!(decide(&ws, &none, &mut m, rules(), t0, cpu).is_empty());
        let moves = decide(&ws, &none, &mut m, rules(), t0 + 5 * SEC, cpu);
        assert_eq!(
            moves,
            [Move::Assign {
                worker: "idle".into(),
                service: "ocr".into()
            }],
            "5 OCR calls on 2 cores back up; 50 echoes do not"
        );
    }

    #[test]
    fn busy_inactive_and_incapable_workers_are_never_lent() {
        let t0 = Instant::now();
        let mut busy = worker("busy", &["echo"], &["echo", "ocr"]);
        busy.in_flight.insert("echo".into(), 1);
        let mut gone = worker("gone", &["echo"], &["echo", "ocr"]);
        gone.active = false;
        let unable = worker("unable", &["echo"], &["echo"]);
        let ws = [busy, gone, unable];
        let mut m = Memory::default();
        assert!(decide(&ws, &queued("ocr", 9), &mut m, rules(), t0, cpu).is_empty());
    }

    #[test]
    fn two_backed_up_services_get_two_different_workers_the_most_backed_up_first() {
        let t0 = Instant::now();
        let ws = [
            worker("a", &["echo"], &["echo", "ocr", "pdf-text"]),
            worker("b", &["echo"], &["echo", "ocr", "pdf-text"]),
        ];
        let mut q = queued("pdf-text", 2);
        q.insert("ocr".into(), Queue { jobs: 7 });
        let mut m = Memory::default();
        let moves = decide(&ws, &q, &mut m, rules(), t0, cpu);
        assert_eq!(
            moves,
            [
                Move::Assign {
                    worker: "a".into(),
                    service: "ocr".into()
                },
                Move::Assign {
                    worker: "b".into(),
                    service: "pdf-text".into()
                }
            ]
        );
    }

    #[test]
    fn a_lent_service_goes_back_after_calm_and_base_services_never_do() {
        let t0 = Instant::now();
        let mut lent = worker("a", &["echo"], &["echo", "ocr"]);
        lent.assigned.push("ocr".into());
        let base_reader = worker("r", &["ocr"], &["ocr"]);
        let ws = [lent.clone(), base_reader];
        let none = BTreeMap::new();
        let mut m = Memory::default();
        assert!(decide(&ws, &none, &mut m, rules(), t0, cpu).is_empty());
        assert!(decide(&ws, &none, &mut m, rules(), t0 + 29 * SEC, cpu).is_empty());
        let moves = decide(&ws, &none, &mut m, rules(), t0 + 30 * SEC, cpu);
        assert_eq!(
            moves,
            [Move::Withdraw {
                worker: "a".into(),
                service: "ocr".into()
            }],
            "only the lent one"
        );
        // Work arriving again resets the calm; a worker with a call of it in flight keeps it.
        let mut m = Memory::default();
        assert!(decide(&ws, &none, &mut m, rules(), t0, cpu).is_empty());
        let _ = decide(&ws, &queued("ocr", 1), &mut m, rules(), t0 + 20 * SEC, cpu);
        assert!(decide(&ws, &none, &mut m, rules(), t0 + 40 * SEC, cpu).is_empty());
        let mut working = lent.clone();
        working.in_flight.insert("ocr".into(), 1);
        assert!(decide(&[working], &none, &mut m, rules(), t0 + 90 * SEC, cpu).is_empty());
        // Short calls between rounds (none in flight when it looks) keep it in use too.
        let mut m = Memory::default();
        let mut used = lent;
        for i in 0..10u64 {
            used.started.insert("ocr".into(), i);
            let at = t0 + SEC * 10 * u32::try_from(i).expect("small");
            assert!(
                decide(std::slice::from_ref(&used), &none, &mut m, rules(), at, cpu).is_empty()
            );
        }
    }
}
