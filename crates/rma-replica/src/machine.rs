//! The replicated job log's state machine: plain data and a pure [`Jobs::apply`].
//!
//! Every change is a [`Command`] committed by the group; applying the same commands in the same
//! order gives every member the same jobs. Commands carry everything they need (times
//! included), so applying is deterministic.
//!
//! Jobs are fenced by their *run*: a job is run by one member at a time (its `runner`), and
//! every reassignment starts a new run. A `start` or `finish` names the run it belongs to and is
//! refused when that run is over — so a coordinator cut off from the group that finishes a job
//! late cannot record a second result: each job ends exactly once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Bytes that travel as base64 in JSON (log entries, snapshots, RPCs).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob(#[serde(with = "b64")] pub Vec<u8>);

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The content hash documents are kept under (BLAKE3, hex).
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

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

/// The call a job makes, without its body (kept by hash in [`Jobs::blobs`]).
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
    /// Its body.
    pub body: Blob,
    /// Who served it (`worker@coordinator`).
    pub worker: String,
}

/// One job as the group holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The call.
    pub call: Call,
    /// Content hash of the body (in [`Jobs::blobs`]).
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
}

/// A change to the job log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// A new job, its body included: committed means on a majority of members.
    Submit {
        /// Its id.
        job: String,
        /// The call.
        call: Call,
        /// The body.
        input: Blob,
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
    /// The leader moves an unfinished job to another member (its runner is gone): a new run.
    Reassign {
        /// The job.
        job: String,
        /// The runner it is taken from (refused if that is no longer the runner).
        from: NodeId,
        /// Its new runner.
        to: NodeId,
    },
    /// The job and its body are deleted.
    Delete {
        /// The job.
        job: String,
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

/// The jobs of a group and the bodies they need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jobs {
    /// By id.
    pub jobs: BTreeMap<String, Job>,
    /// Bodies by content hash.
    pub blobs: BTreeMap<String, Blob>,
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
                if self.jobs.contains_key(&job) {
                    return Applied::refused("a job with this id exists");
                }
                let hash = content_hash(&input.0);
                self.blobs.entry(hash.clone()).or_insert(input);
                self.jobs.insert(
                    job,
                    Job {
                        call,
                        input: hash,
                        client,
                        accepted_by,
                        runner: accepted_by,
                        run: 1,
                        state: State::Queued,
                        created_ms: at_ms,
                        started_ms: None,
                        finished_ms: None,
                        outcome: None,
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
            Command::Reassign { job, from, to } => match self.jobs.get_mut(&job) {
                Some(j) if !j.state.finished() && j.runner == from => {
                    j.runner = to;
                    j.run += 1;
                    j.state = State::Queued;
                    j.started_ms = None;
                    Applied::ok()
                }
                Some(_) => Applied::refused("ended, or no longer that runner's"),
                None => Applied::refused("no such job"),
            },
            Command::Delete { job } => match self.jobs.remove(&job) {
                Some(j) => {
                    if !self.jobs.values().any(|o| o.input == j.input) {
                        self.blobs.remove(&j.input);
                    }
                    Applied::ok()
                }
                None => Applied::refused("no such job"),
            },
        }
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
            input: Blob(b"letter".to_vec()),
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
                body: Blob(body.to_vec()),
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
        assert_eq!(s.blobs.len(), 1, "the body is kept by its hash");
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
        let j = &s.jobs["j1"];
        assert_eq!(j.state, State::Done);
        assert_eq!(
            j.outcome.as_ref().map(|o| o.body.0.clone()),
            Some(b"first".to_vec())
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
        // Run 1's result arrives late: refused. Run 2's is the one.
        let late = s.apply(finish("j1", 1, 1, b"late"));
        assert!(!late.ok);
        assert!(late.reason.contains("reassigned"), "{late:?}");
        assert!(s.apply(finish("j1", 2, 2, b"second")).ok);
        assert_eq!(
            s.jobs["j1"].outcome.as_ref().map(|o| o.body.0.clone()),
            Some(b"second".to_vec())
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
    fn deleting_keeps_a_body_another_job_shares() {
        let mut s = Jobs::default();
        s.apply(submit("a", 1));
        s.apply(submit("b", 1));
        assert_eq!(s.blobs.len(), 1);
        assert!(s.apply(Command::Delete { job: "a".into() }).ok);
        assert_eq!(s.blobs.len(), 1);
        assert!(s.apply(Command::Delete { job: "b".into() }).ok);
        assert!(s.blobs.is_empty());
        assert!(!s.apply(Command::Delete { job: "b".into() }).ok);
    }

    #[test]
    fn commands_and_bodies_survive_json() {
        let c = submit("j", 7);
        let text = serde_json::to_string(&c).expect("json");
        assert!(text.contains("\"op\":\"submit\""), "{text}");
        assert!(text.contains("bGV0dGVy"), "base64 body: {text}");
        assert_eq!(serde_json::from_str::<Command>(&text).expect("back"), c);
    }
}
