//! The replicated job log's state machine: plain data and a pure [`Jobs::apply`].
//!
//! Every change is a [`Command`] committed by the group; applying the same commands in the same
//! order gives every member the same jobs. Commands carry everything they need (times
//! included), so applying is deterministic.
//!
//! Documents and answers are not in the log: they are kept by content hash ([`content_hash`])
//! in each member's blob store, on at least two members before an entry naming them is
//! committed, so log entries stay small (Raft's heartbeats carry them within 250 ms).
//!
//! Jobs are fenced by their *run*: a job is run by one member at a time (its `runner`), and
//! every reassignment starts a new run. A `start` or `finish` names the run it belongs to and is
//! refused when that run is over — so a coordinator cut off from the group that finishes a job
//! late cannot record a second result: each job ends exactly once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The content hash documents are kept under (BLAKE3, hex).
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Corrections one job keeps at most.
pub const MAX_CORRECTIONS: usize = 100;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Accepted, waiting for its runner.
    Queued,
    /// Its runner started it.
    Running,
    /// Answered with a 2xx–3xx.
    Done,
    /// Answered with an error.
    Failed,
}

impl State {
    /// Whether the job has ended.
    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed)
    }
}

/// The call a job makes, without its body (kept by hash in the members' blob stores).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Service name.
    pub service: String,
    /// HTTP method.
    pub method: String,
    /// Sub-path after the service.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content type of the body.
    pub content_type: Option<String>,
    /// The client's request id.
    pub request_id: Option<String>,
    /// W3C traceparent of the submission.
    pub traceparent: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// HTTP status of the answer.
    pub status: u16,
    /// Its content type.
    pub content_type: Option<String>,
    /// Content hash of its body (in the members' blob stores).
    pub body: String,
    /// Its body's size in bytes.
    pub size: u64,
    /// Who served it (`worker@coordinator`).
    pub worker: String,
}

/// One job as the group holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The call.
    pub call: Call,
    /// Content hash of the body (in the members' blob stores).
    pub input: String,
    /// The client key's node id, when a client key submitted it.
    pub client: Option<String>,
    /// The member that accepted it.
    pub accepted_by: NodeId,
    /// The member that runs it now.
    pub runner: NodeId,
    /// Its run: 1 at first, one more at every reassignment.
    pub run: u32,
    /// Where it stands.
    pub state: State,
    /// Accepted (Unix ms).
    pub created_ms: i64,
    /// Its current run started (Unix ms).
    pub started_ms: Option<i64>,
    /// It ended (Unix ms).
    pub finished_ms: Option<i64>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Units done of all (pages), as its runner last recorded.
    #[serde(default)]
    pub progress: (u32, u32),
    /// A person's corrections of its facts, each as the API's JSON, oldest first.
    #[serde(default)]
    pub corrections: Vec<String>,
}

/// A change to the job log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// A new job; its body is already kept on two members under `input`.
    Submit {
        /// Its id.
        job: String,
        /// The call.
        call: Call,
        /// Content hash of the body.
        input: String,
        /// The client key's node id.
        client: Option<String>,
        /// Who accepted it (and runs it first).
        accepted_by: NodeId,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// Its runner starts run `run`.
    Start {
        /// The job.
        job: String,
        /// Who starts it.
        runner: NodeId,
        /// Which run.
        run: u32,
        /// When.
        at_ms: i64,
    },
    /// Run `run` ended with `outcome`.
    Finish {
        /// The job.
        job: String,
        /// Who ran it.
        runner: NodeId,
        /// Which run.
        run: u32,
        /// How it ended.
        outcome: Outcome,
        /// When.
        at_ms: i64,
    },
    /// Its runner's progress on run `run` (written at most about once a second).
    Progress {
        /// The job.
        job: String,
        /// Who runs it.
        runner: NodeId,
        /// Which run.
        run: u32,
        /// Units done.
        done: u32,
        /// Units in all.
        total: u32,
    },
    /// The leader moves an unfinished job to another member (its runner is gone): a new run.
    Reassign {
        /// The job.
        job: String,
        /// The runner it is taken from (refused if that is no longer the runner).
        from: NodeId,
        /// Its new runner.
        to: NodeId,
    },
    /// A person corrected one of a finished job's facts (the correction as the API's JSON).
    Correct {
        /// The job.
        job: String,
        /// The correction.
        correction: String,
    },
    /// The job and its body are deleted.
    Delete {
        /// The job.
        job: String,
    },
    /// A member's workers and the services each is sent now (it writes this when they change;
    /// the leader empties a silent member's, whose workers re-home).
    Placement {
        /// The member.
        coordinator: NodeId,
        /// Worker id → its services.
        workers: BTreeMap<String, Vec<String>>,
        /// When (Unix ms).
        at_ms: i64,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Whether the command took effect.
    pub ok: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Applied {
    fn ok() -> Self {
        Applied {
            ok: true,
            reason: String::new(),
        }
    }

    fn refused(reason: impl Into<String>) -> Self {
        Applied {
            ok: false,
            reason: reason.into(),
        }
    }
}

/// Where a member's workers are and what they are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Worker id → its services.
    pub workers: BTreeMap<String, Vec<String>>,
    /// When the member last wrote it (Unix ms).
    pub at_ms: i64,
}

/// The jobs of a group and the bodies they need, and where every member's workers are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jobs {
    /// By id.
    pub jobs: BTreeMap<String, Job>,
    /// Worker placement and service assignments, by member.
    #[serde(default)]
    pub placements: BTreeMap<NodeId, Placement>,
}

impl Jobs {
    /// Applies one committed command.
    pub fn apply(&mut self, cmd: Command) -> Applied {
        match cmd {
            Command::Submit {
                job,
                call,
                input,
                client,
                accepted_by,
                at_ms,
            } => {
                if let Some(held) = self.jobs.get(&job) {
                    // The same submission committed again (a write retried after its first try
                    // timed out, or after a leader died having committed it) is what it was the
                    // first time: accepted, changing nothing. Anything else with this id is not.
                    let again = held.call == call
                        && held.input == input
                        && held.client == client
                        && held.accepted_by == accepted_by
                        && held.created_ms == at_ms;
                    return if again {
                        Applied::ok()
                    } else {
                        Applied::refused("a job with this id exists")
                    };
                }
                self.jobs.insert(
                    job,
                    Job {
                        call,
                        input,
                        client,
                        accepted_by,
                        runner: accepted_by,
                        run: 1,
                        state: State::Queued,
                        created_ms: at_ms,
                        started_ms: None,
                        finished_ms: None,
                        outcome: None,
                        progress: (0, 0),
                        corrections: Vec::new(),
                    },
                );
                Applied::ok()
            }
            Command::Start {
                job,
                runner,
                run,
                at_ms,
            } => match self.jobs.get_mut(&job) {
                Some(j) if j.state == State::Queued && j.runner == runner && j.run == run => {
                    j.state = State::Running;
                    j.started_ms = Some(at_ms);
                    Applied::ok()
                }
                Some(_) => Applied::refused("not this runner's queued run"),
                None => Applied::refused("no such job"),
            },
            Command::Finish {
                job,
                runner,
                run,
                outcome,
                at_ms,
            } => match self.jobs.get_mut(&job) {
                Some(j) if j.state == State::Running && j.runner == runner && j.run == run => {
                    j.state = if outcome.status < 400 {
                        State::Done
                    } else {
                        State::Failed
                    };
                    j.finished_ms = Some(at_ms);
                    j.outcome = Some(outcome);
                    Applied::ok()
                }
                Some(j) if j.state.finished() => Applied::refused("the job has already ended"),
                Some(_) => Applied::refused("this run is over: the job was reassigned"),
                None => Applied::refused("no such job"),
            },
            Command::Progress {
                job,
                runner,
                run,
                done,
                total,
            } => match self.jobs.get_mut(&job) {
                Some(j) if j.state == State::Running && j.runner == runner && j.run == run => {
                    j.progress = (done, total);
                    Applied::ok()
                }
                Some(_) => Applied::refused("not this runner's running run"),
                None => Applied::refused("no such job"),
            },
            Command::Reassign { job, from, to } => match self.jobs.get_mut(&job) {
                Some(j) if !j.state.finished() && j.runner == from => {
                    j.runner = to;
                    j.run += 1;
                    j.state = State::Queued;
                    j.started_ms = None;
                    j.progress = (0, 0);
                    Applied::ok()
                }
                Some(_) => Applied::refused("ended, or no longer that runner's"),
                None => Applied::refused("no such job"),
            },
            Command::Placement {
                coordinator,
                workers,
                at_ms,
            } => {
                // A worker is at one member: one that moved leaves the others' lists.
                for (member, p) in self.placements.iter_mut() {
                    if *member != coordinator {
                        p.workers.retain(|w, _| !workers.contains_key(w));
                    }
                }
                self.placements
                    .insert(coordinator, Placement { workers, at_ms });
                Applied::ok()
            }
            Command::Correct { job, correction } => match self.jobs.get_mut(&job) {
                // The same correction committed twice (a write retried after its answer was
                // lost) is accepted and kept once: each carries the millisecond it was made, so
                // two that are the same text are one person's one correction.
                Some(j) if j.corrections.contains(&correction) => Applied::ok(),
                Some(j) if j.state == State::Done && j.corrections.len() < MAX_CORRECTIONS => {
                    j.corrections.push(correction);
                    Applied::ok()
                }
                Some(j) if j.state == State::Done => Applied::refused(format!(
                    "the job holds {MAX_CORRECTIONS} corrections, the most kept"
                )),
                Some(_) => Applied::refused("the job has not finished with an answer"),
                None => Applied::refused("no such job"),
            },
            Command::Delete { job } => match self.jobs.remove(&job) {
                Some(_) => Applied::ok(),
                None => Applied::refused("no such job"),
            },
        }
    }

    /// Whether a job still names the blob `hash` (as its input or its answer).
    pub fn references(&self, hash: &str) -> bool {
        self.jobs
            .values()
            .any(|j| j.input == hash || j.outcome.as_ref().is_some_and(|o| o.body == hash))
    }

    /// The blobs `job` names.
    pub fn blobs_of(&self, job: &str) -> Vec<String> {
        self.jobs.get(job).map_or_else(Vec::new, |j| {
            std::iter::once(j.input.clone())
                .chain(j.outcome.as_ref().map(|o| o.body.clone()))
                .collect()
        })
    }

    /// Unfinished jobs of `runner`, oldest first.
    pub fn unfinished_of(&self, runner: NodeId) -> Vec<(&String, &Job)> {
        let mut v: Vec<_> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.runner == runner && !j.state.finished())
            .collect();
        v.sort_by_key(|(_, j)| j.created_ms);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(job: &str, by: NodeId) -> Command {
        Command::Submit {
            job: job.into(),
            call: Call {
                service: "echo".into(),
                method: "POST".into(),
                ..Default::default()
            },
            input: content_hash(b"letter"),
            client: None,
            accepted_by: by,
            at_ms: 1,
        }
    }

    fn finish(job: &str, runner: NodeId, run: u32, body: &[u8]) -> Command {
        Command::Finish {
            job: job.into(),
            runner,
            run,
            outcome: Outcome {
                status: 200,
                content_type: None,
                body: content_hash(body),
                size: body.len() as u64,
                worker: "w@c".into(),
            },
            at_ms: 3,
        }
    }

    #[test]
    fn a_job_runs_once_and_ends_once() {
        let mut s = Jobs::default();
        assert!(s.apply(submit("j1", 1)).ok);
        assert!(!s.apply(submit("j1", 2)).ok, "ids are unique");
        // The same submission committed twice (a retried write) is accepted and changes nothing.
        let before = s.jobs.get("j1").cloned();
        assert!(s.apply(submit("j1", 1)).ok, "a retried submission");
        assert_eq!(s.jobs.get("j1").cloned(), before);
        assert_eq!(s.jobs.len(), 1);
        let start = |runner, run| Command::Start {
            job: "j1".into(),
            runner,
            run,
            at_ms: 2,
        };
        assert!(!s.apply(start(2, 1)).ok, "only its runner starts it");
        assert!(s.apply(start(1, 1)).ok);
        assert!(!s.apply(start(1, 1)).ok, "not twice");
        assert!(s.apply(finish("j1", 1, 1, b"first")).ok);
        assert!(!s.apply(finish("j1", 1, 1, b"again")).ok, "one result");
        let correct = |n: usize| Command::Correct {
            job: "j1".into(),
            correction: format!("{{\"n\":{n}}}"),
        };
        assert!(s.apply(correct(0)).ok, "a finished job takes corrections");
        // A retried write of the same correction is accepted and kept once.
        assert!(s.apply(correct(0)).ok, "a retried correction");
        assert_eq!(s.jobs["j1"].corrections.len(), 1);
        for n in 1..MAX_CORRECTIONS {
            assert!(s.apply(correct(n)).ok);
        }
        assert_eq!(s.jobs["j1"].corrections.len(), MAX_CORRECTIONS);
        assert!(!s.apply(correct(MAX_CORRECTIONS)).ok, "up to a limit");
        assert!(
            s.apply(correct(1)).ok,
            "a retry is still recognised at the limit"
        );
        let j = &s.jobs["j1"];
        assert_eq!(j.state, State::Done);
        assert_eq!(
            j.outcome.as_ref().map(|o| o.body.clone()),
            Some(content_hash(b"first"))
        );
    }

    #[test]
    fn a_reassigned_job_refuses_the_old_runs_late_result() {
        let mut s = Jobs::default();
        s.apply(submit("j1", 1));
        s.apply(Command::Start {
            job: "j1".into(),
            runner: 1,
            run: 1,
            at_ms: 2,
        });
        // Runner 1 is cut off; the leader hands the job to 2.
        assert!(
            !s.apply(Command::Reassign {
                job: "j1".into(),
                from: 3,
                to: 2
            })
            .ok,
            "only from its runner"
        );
        assert!(
            s.apply(Command::Reassign {
                job: "j1".into(),
                from: 1,
                to: 2
            })
            .ok
        );
        assert_eq!((s.jobs["j1"].runner, s.jobs["j1"].run), (2, 2));
        assert!(
            s.apply(Command::Start {
                job: "j1".into(),
                runner: 2,
                run: 2,
                at_ms: 4,
            })
            .ok
        );
        let progress = |runner, run| Command::Progress {
            job: "j1".into(),
            runner,
            run,
            done: 1,
            total: 3,
        };
        assert!(
            !s.apply(progress(1, 1)).ok,
            "the old run's progress is refused"
        );
        assert!(s.apply(progress(2, 2)).ok);
        assert_eq!(s.jobs["j1"].progress, (1, 3));
        // Run 1's result arrives late: refused. Run 2's is the one.
        let late = s.apply(finish("j1", 1, 1, b"late"));
        assert!(!late.ok);
        assert!(late.reason.contains("reassigned"), "{late:?}");
        assert!(s.apply(finish("j1", 2, 2, b"second")).ok);
        assert_eq!(
            s.jobs["j1"].outcome.as_ref().map(|o| o.body.clone()),
            Some(content_hash(b"second"))
        );
        // An ended job is never reassigned.
        assert!(
            !s.apply(Command::Reassign {
                job: "j1".into(),
                from: 2,
                to: 1
            })
            .ok
        );
    }

    #[test]
    fn a_blob_is_referenced_while_a_job_names_it() {
        let mut s = Jobs::default();
        s.apply(submit("a", 1));
        s.apply(submit("b", 1));
        let h = content_hash(b"letter");
        assert!(s.apply(Command::Delete { job: "a".into() }).ok);
        assert!(s.references(&h), "b still names it");
        assert_eq!(s.blobs_of("b"), std::slice::from_ref(&h));
        assert!(s.apply(Command::Delete { job: "b".into() }).ok);
        assert!(!s.references(&h));
        assert!(!s.apply(Command::Delete { job: "b".into() }).ok);
    }

    #[test]
    fn a_worker_is_placed_at_one_member() {
        let mut s = Jobs::default();
        let place = |coordinator, ws: &[(&str, &[&str])]| Command::Placement {
            coordinator,
            workers: ws
                .iter()
                .map(|(w, sv)| {
                    (
                        (*w).to_owned(),
                        sv.iter().map(|x| (*x).to_owned()).collect(),
                    )
                })
                .collect(),
            at_ms: 1,
        };
        assert!(s.apply(place(1, &[("w1", &["echo"]), ("w2", &["ocr"])])).ok);
        // w2 re-homes to member 2, and is sent echo too there.
        assert!(s.apply(place(2, &[("w2", &["echo", "ocr"])])).ok);
        assert_eq!(s.placements[&1].workers.keys().collect::<Vec<_>>(), ["w1"]);
        assert_eq!(s.placements[&2].workers["w2"], ["echo", "ocr"]);
        // A silent member's list is emptied by the leader.
        assert!(s.apply(place(1, &[])).ok);
        assert!(s.placements[&1].workers.is_empty());
    }

    #[test]
    fn commands_survive_json() {
        let c = submit("j", 7);
        let text = serde_json::to_string(&c).expect("json");
        assert!(text.contains("\"op\":\"submit\""), "{text}");
        assert!(
            text.contains(&content_hash(b"letter")),
            "the body by hash: {text}"
        );
        assert_eq!(serde_json::from_str::<Command>(&text).expect("back"), c);
    }
}
