//! Async jobs: `Prefer: respond-async` on a service request answers [`JobAccepted`], and
//! `GET /api/jobs/{id}` answers a [`JobView`] until the job is done or failed.

use serde::{Deserialize, Serialize};

use crate::results::ServiceResult;

/// `202 Accepted`: the job is stored and queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobAccepted {
    /// `{coordinator_id}-j{16 hex}`.
    pub job_id: String,
    /// Always [`JobState::Queued`].
    pub state: JobState,
    /// Where to ask for it: `/api/jobs/{id}`.
    pub location: String,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum JobState {
    /// Waiting for a runner (or for a worker that offers its service).
    Queued,
    /// Being run.
    Running,
    /// Finished with a 2xx or 3xx answer.
    Done,
    /// Finished with an error; `error` says why.
    Failed,
}

impl JobState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }

    /// Whether the job will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

/// Units of work done of all: pages for OCR, steps for `process`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobProgress {
    /// Done so far.
    pub done: u32,
    /// In all (0 while unknown).
    pub total: u32,
}

/// One step of `process`: which service ran where, how long it took, and whether the cache
/// answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobStep {
    /// `store`, `enhance`, `ocr`, `pdf-text` or `extract`.
    pub step: String,
    /// The worker that ran it.
    pub worker: String,
    /// The coordinator that dispatched it.
    pub coordinator: String,
    /// The HTTP status it answered.
    pub status: u16,
    /// Milliseconds it took, dispatch included.
    pub ms: u64,
    /// `hit` or `miss` when the cache was consulted.
    pub cache: Option<String>,
    /// The spot check's verdict, when this step was checked on a second worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub verified: Option<Verdict>,
    /// The cache entry its answer was kept under (a hash), so deleting the job deletes it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub cache_key: Option<String>,
}

/// What a spot check found: the answer was asked of a second worker of another owner too (the
/// way BOINC validates volunteers' results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Verdict {
    /// Both answers were the same.
    Agreed,
    /// No second worker of another owner was there to ask.
    Unverified,
    /// The answers differed: the one a third worker agreed with was kept, or, without a third,
    /// the first; either way the job is flagged.
    Disagreed,
}

impl Verdict {
    /// `agreed`, `unverified` or `disagreed` (the `x-rma-verified` header).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agreed => "agreed",
            Verdict::Unverified => "unverified",
            Verdict::Disagreed => "disagreed",
        }
    }
}

/// `GET /api/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobView {
    /// The job id.
    pub id: String,
    /// The service asked for.
    pub service: String,
    /// Where it is.
    pub state: JobState,
    /// Pages or steps done, live while it runs.
    pub progress: JobProgress,
    /// The coordinator holding it.
    pub coordinator: String,
    /// The worker(s) that served it, comma-separated for `process`.
    pub worker: Option<String>,
    /// Times it was started (more than 1 after a restart cut it off).
    pub runs: u32,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when it first started.
    pub started_at: Option<String>,
    /// RFC 3339, when it finished.
    pub finished_at: Option<String>,
    /// Milliseconds between acceptance and start.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub queued_ms: Option<i64>,
    /// Milliseconds it has run (until now while running).
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub run_ms: Option<i64>,
    /// Why it failed, in words.
    pub error: Option<String>,
    /// The code of the failure ([`crate::error_code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub error_code: Option<String>,
    /// The HTTP status of its answer.
    pub status: Option<u16>,
    /// The answer, when it is JSON.
    pub result: Option<ServiceResult>,
    /// The steps of `process`, copied from its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub steps: Option<Vec<JobStep>>,
    /// The spot check's verdict (the worst of its steps' for `process`), when it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub verified: Option<Verdict>,
    /// Where to fetch the raw answer (an enhanced PNG, say): `/api/jobs/{id}/result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub result_url: Option<String>,
    /// Facts a person corrected, oldest first; the result itself is left as read.
    #[serde(default)]
    pub corrections: Vec<Correction>,
}

/// The facts a person may correct.
pub const CORRECTABLE: [&str; 4] = ["amounts", "dates", "references", "letter_type"];

/// `POST /api/jobs/{id}/corrections`: a person says what a fact really is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CorrectionRequest {
    /// `amounts`, `dates`, `references` or `letter_type`.
    pub field: String,
    /// Which one of the list (0-based); absent for `letter_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub index: Option<u32>,
    /// The right value: an amount as `1482.37`, a date as `YYYY-MM-DD`, a reference as
    /// printed, a letter type by its name.
    pub value: String,
}

/// A fact corrected by a person, kept with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Correction {
    /// As asked.
    pub field: String,
    /// As asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub index: Option<u32>,
    /// The value a person gave.
    pub value: String,
    /// What was read before.
    pub was: String,
    /// Always `person`: the value did not come from a machine.
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// The path of a job's corrections: `api/jobs/{id}/corrections`.
pub fn corrections_path(id: &str) -> String {
    format!("api/jobs/{id}/corrections")
}

/// The path of a job relative to a role's base URL: `api/jobs/{id}`.
pub fn path(id: &str) -> String {
    format!("api/jobs/{id}")
}

/// The path of a job's raw result: `api/jobs/{id}/result`.
pub fn result_path(id: &str) -> String {
    format!("api/jobs/{id}/result")
}

/// The `Location` of a job: `/api/jobs/{id}`.
pub fn location(id: &str) -> String {
    format!("/{}", path(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::Value::from(s.as_str())
            );
        }
        assert_eq!(JobState::parse("bogus"), None);
    }
}
