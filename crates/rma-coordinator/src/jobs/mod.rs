//! Async jobs. `Prefer: respond-async` on a service request stores the call as a job
//! ([`store`], SQLite) and answers `202` with `Location: /api/jobs/{id}`; the [`runner`] works
//! the queue. Jobs and their inputs live in the file, so a coordinator restart loses none: jobs
//! that were queued or running run again after it. Finished jobs are kept for the retention
//! time [7 days].
//!
//! A job id is `{coordinator_id}-j{16 hex}`, so the router knows which coordinator to ask.

pub(crate) mod runner;
mod store;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use rma_http::ApiError;

use crate::dispatch::Dispatcher;
use rma_proto::ServiceCall;
use rma_proto::job::{JobProgress, JobState, JobView};
use rma_proto::results::ServiceResult;
use tokio::sync::Notify;

pub use store::StoreError;
use store::{Finished, JobStore};
pub(crate) use store::{JobRow, now_ms};

/// The jobs of one coordinator: the file, and what the runner knows beyond it.
pub(crate) struct Jobs {
    store: JobStore,
    coordinator_id: String,
    retention: Duration,
    /// Queued and running jobs at most, in all and per client key; a submission past either
    /// is refused (429).
    max_unfinished: (usize, usize),
    /// Live progress of running jobs (not written to the file on every page).
    progress: Mutex<HashMap<String, (u32, u32)>>,
    /// Jobs being run by this process.
    running: Mutex<HashSet<String>>,
    wake: Notify,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("coordinator_id", &self.coordinator_id)
            .finish()
    }
}

fn rfc3339(ms: i64) -> String {
    rma_http::rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

impl Jobs {
    /// Opens the job file (in memory when `path` is `None`).
    pub(crate) fn open(
        path: Option<&Path>,
        coordinator_id: &str,
        retention: Duration,
        max_unfinished: (usize, usize),
    ) -> Result<Jobs, StoreError> {
        Ok(Jobs {
            store: JobStore::open(path)?,
            coordinator_id: coordinator_id.to_owned(),
            retention,
            max_unfinished,
            progress: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        })
    }

    /// Wakes the runner.
    /// Per service, how many jobs are queued.
    pub(crate) async fn queued_by_service(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::placement::Queue>, store::StoreError>
    {
        self.store.queued_by_service().await
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stores a call as a queued job of `client` (a verified client key's node id) and wakes the
    /// runner; returns the job id.
    pub(crate) async fn submit(
        &self,
        call: ServiceCall,
        client: Option<String>,
    ) -> Result<String, ApiError> {
        let id = rma_proto::ids::job_id(&self.coordinator_id, rand::random::<u128>());
        let stored = self
            .store
            .insert(&id, call, client.clone(), self.max_unfinished)
            .await
            .map_err(|e| ApiError::internal(format!("could not store the job: {e}")))?;
        if !stored {
            metrics::counter!("rma_coordinator_jobs_refused_total").increment(1);
            let (all, per_client) = self.max_unfinished;
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                rma_proto::error_code::RATE_LIMITED,
                match client {
                    Some(c) => format!(
                        "the job queue is full: this coordinator takes at most {all} unfinished jobs, {per_client} of client {c}; try again when some have finished"
                    ),
                    None => format!(
                        "the job queue is full: this coordinator takes at most {all} unfinished jobs; try again when some have finished"
                    ),
                },
            ));
        }
        metrics::counter!("rma_coordinator_jobs_submitted_total").increment(1);
        self.wake();
        Ok(id)
    }

    fn live(&self, id: &str) -> Option<(u32, u32)> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    fn set_progress(&self, id: &str, done: u32, total: u32) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), (done, total));
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A job as the API shows it, or `None`.
    pub(crate) async fn view(&self, id: &str) -> Result<Option<JobView>, ApiError> {
        let row = self
            .store
            .get(id)
            .await
            .map_err(|e| ApiError::internal(format!("reading the job: {e}")))?;
        Ok(row.map(|row| self.render(row)))
    }

    /// A row as the API shows it (group jobs are shown the same way).
    pub(crate) fn render_row(&self, row: JobRow) -> JobView {
        self.render(row)
    }

    fn render(&self, row: JobRow) -> JobView {
        let (done, total) = match (row.state, self.live(&row.id)) {
            (JobState::Running, Some(p)) => p,
            _ => (row.done, row.total),
        };
        let is_json = row
            .result_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"));
        let result: Option<ServiceResult> = match (&row.result, is_json) {
            (Some(bytes), true) => serde_json::from_slice(bytes).ok(),
            _ => None,
        };
        let steps = match &result {
            Some(ServiceResult::Process(p)) => Some(p.steps.clone()),
            _ => None,
        };
        let end = row.finished_ms.unwrap_or_else(now_ms);
        JobView {
            result_url: row
                .result
                .is_some()
                .then(|| format!("/{}", rma_proto::job::result_path(&row.id))),
            id: row.id,
            service: row.service,
            state: row.state,
            progress: JobProgress { done, total },
            coordinator: self.coordinator_id.clone(),
            worker: row.worker,
            runs: row.runs,
            created_at: rfc3339(row.created_ms),
            started_at: row.started_ms.map(rfc3339),
            finished_at: row.finished_ms.map(rfc3339),
            queued_ms: row.started_ms.map(|s| s - row.created_ms),
            run_ms: row.started_ms.map(|s| end - s),
            error: row.error,
            error_code: row.error_code,
            status: row.result_status,
            result,
            steps,
            verified: row
                .verified
                .and_then(|v| serde_json::from_value(serde_json::Value::String(v)).ok()),
            corrections: row
                .corrections
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default(),
        }
    }

    /// Keeps a person's correction of one of a finished job's facts, and answers the job with
    /// it. 404 for no such job, 409 while it has no facts, 400 for a field, index or value
    /// that is not one.
    pub(crate) async fn correct(
        &self,
        id: &str,
        req: rma_proto::job::CorrectionRequest,
    ) -> Result<JobView, ApiError> {
        let Some(mut view) = self.view(id).await? else {
            return Err(ApiError::not_found(format!("no job {id}")));
        };
        let correction = correction_of(&view, req)?;
        let list = match self
            .store
            .add_correction(id, correction)
            .await
            .map_err(|e| ApiError::internal(format!("keeping the correction: {e}")))?
        {
            store::Corrected::Added(list) => list,
            store::Corrected::Full => {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "job {id} holds {} corrections, the most kept; make a new job to correct it again",
                        store::MAX_CORRECTIONS
                    ),
                ));
            }
            store::Corrected::NoJob => return Err(ApiError::not_found(format!("no job {id}"))),
        };
        tracing::info!(job = %id, field = %list.last().map_or("", |c| c.field.as_str()), "a fact corrected by a person");
        view.corrections = list;
        Ok(view)
    }

    /// Deletes a job and every stored copy its result names (original, cleaned-up image,
    /// result) from the storage workers; `false` when there was no such job.
    pub(crate) async fn delete(&self, id: &str, d: &Dispatcher) -> Result<bool, ApiError> {
        let result = self
            .store
            .delete(id)
            .await
            .map_err(|e| ApiError::internal(format!("deleting the job: {e}")))?;
        let Some(result) = result else {
            return Ok(false);
        };
        self.running().remove(id);
        forget_copies(d, &[result]).await;
        Ok(true)
    }

    /// A finished job's raw result and its content type.
    pub(crate) async fn result(
        &self,
        id: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, ApiError> {
        self.store
            .result(id)
            .await
            .map_err(|e| ApiError::internal(format!("reading the job: {e}")))
    }
}

/// A person's correction of one of a finished job's facts, checked against its facts (409 when
/// it has none; 400 when the correction names no fact or does not read as one).
pub(crate) fn correction_of(
    view: &JobView,
    req: rma_proto::job::CorrectionRequest,
) -> Result<rma_proto::job::Correction, ApiError> {
    let facts = match &view.result {
        Some(ServiceResult::Process(p)) => &p.facts.facts,
        Some(ServiceResult::Extract(e)) => &e.facts,
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!(
                    "job {} has no facts to correct (it is {} or not a reading of a letter)",
                    view.id,
                    view.state.as_str()
                ),
            ));
        }
    };
    let was = correctable(facts, &req)?;
    Ok(rma_proto::job::Correction {
        field: req.field,
        index: req.index,
        value: req.value.trim().to_owned(),
        was,
        by: "person".into(),
        at: rfc3339(now_ms()),
    })
}

/// What a correction replaces, when it is one a person may make: the field is correctable,
/// the index names a fact the job has, and the value reads as that kind of fact.
fn correctable(
    facts: &rma_proto::results::Facts,
    req: &rma_proto::job::CorrectionRequest,
) -> Result<String, ApiError> {
    let value = req.value.trim();
    if value.is_empty() || value.len() > 200 {
        return Err(ApiError::bad_request(
            "value must be 1 to 200 characters: what the letter really says",
        ));
    }
    let at = |len: usize| -> Result<usize, ApiError> {
        let i = req
            .index
            .ok_or_else(|| ApiError::bad_request(format!("index is required for {}", req.field)))?
            as usize;
        if i < len {
            Ok(i)
        } else {
            Err(ApiError::bad_request(format!(
                "index {i} is past the {len} {} read from this letter",
                req.field
            )))
        }
    };
    match req.field.as_str() {
        "amounts" => {
            let i = at(facts.amounts.len())?;
            let ok = value
                .trim_start_matches('-')
                .split_once('.')
                .is_some_and(|(p, d)| {
                    !p.is_empty()
                        && p.bytes().all(|b| b.is_ascii_digit())
                        && d.len() == 2
                        && d.bytes().all(|b| b.is_ascii_digit())
                });
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "{value:?} is not an amount: write pounds and pence as 1482.37"
                )));
            }
            Ok(facts.amounts[i].value.clone())
        }
        "dates" => {
            let i = at(facts.dates.len())?;
            let b = value.as_bytes();
            let ok = b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(k, c)| k == 4 || k == 7 || c.is_ascii_digit());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "{value:?} is not a date: write it as YYYY-MM-DD"
                )));
            }
            Ok(facts.dates[i].date.clone())
        }
        "references" => {
            let i = at(facts.references.len())?;
            Ok(facts.references[i].value.clone())
        }
        "letter_type" => {
            if !value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(ApiError::bad_request(format!(
                    "{value:?} is not a letter type name (lowercase and _)"
                )));
            }
            Ok(facts.letter_type.clone())
        }
        other => Err(ApiError::bad_request(format!(
            "field {other:?} cannot be corrected; one of {}",
            rma_proto::job::CORRECTABLE.join(", ")
        ))),
    }
}

/// The copies a `process` result names: `(service, key)` of its stored objects and of the
/// cache entries its steps left.
pub(crate) fn stored_copies(result: &[u8]) -> Vec<(&'static str, String)> {
    let Ok(p) = serde_json::from_slice::<rma_proto::results::ProcessResult>(result) else {
        return Vec::new();
    };
    let stored = [p.stored.original, p.stored.enhanced, p.stored.result]
        .into_iter()
        .flatten()
        .map(|o| (rma_proto::service::STORE, o.hash));
    let cached = p
        .steps
        .into_iter()
        .filter_map(|s| s.cache_key)
        .map(|k| (rma_proto::service::CACHE, k));
    stored.chain(cached).collect()
}

/// Deletes from every storage worker the copies these results name (best effort: a worker
/// offline now keeps its copy; the threat model says so).
pub(crate) async fn forget_copies(d: &Dispatcher, results: &[Vec<u8>]) {
    for (service, key) in results.iter().flat_map(|r| stored_copies(r)) {
        let call = ServiceCall {
            service: service.to_owned(),
            method: "DELETE".into(),
            path: format!("/{key}"),
            ..Default::default()
        };
        let removed = d.dispatch_every(&call).await;
        tracing::debug!(%service, %key, removed, "stored copy deleted");
    }
}
