//! Async jobs. `Prefer: respond-async` on a service request stores the request as a job in
//! SQLite and answers `202` with `Location: /api/jobs/{id}`; a runner works the queue. Jobs and
//! their inputs live in the file, so a coordinator restart loses none: jobs that were queued or
//! running run again after the restart. Finished jobs are kept for the retention time [7 days].
//!
//! A job id is `{coordinator_id}-j{16 hex}`, so the router knows which coordinator to ask.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rma_http::ApiError;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::AppState;
use crate::dispatch::execute;
use crate::link::{Call, ProgressFn};

/// Schema version this build writes.
const SCHEMA_VERSION: i64 = 1;

/// A failure of the jobs file.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// SQLite refused.
    #[error("jobs database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Written by a newer rma.
    #[error("jobs database has schema version {0}, newer than this rma understands")]
    TooNew(i64),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: Option<i64>) -> Value {
    match ms {
        Some(ms) => json!(rma_http::rfc3339(
            UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
        )),
        None => Value::Null,
    }
}

/// A finished job's raw answer.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The answer's body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: Option<String>,
}

/// The job store and its runner's bookkeeping.
pub struct Jobs {
    conn: Mutex<Connection>,
    coordinator_id: String,
    wake: Notify,
    /// Live progress of running jobs (not written to the file on every page).
    progress: Mutex<HashMap<String, (u32, u32)>>,
    /// Jobs being run by this process.
    running: Mutex<std::collections::HashSet<String>>,
    retention: Duration,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("coordinator_id", &self.coordinator_id)
            .finish()
    }
}

impl Jobs {
    /// Opens the jobs file (in memory when `path` is `None`) and requeues jobs a previous process
    /// left running.
    pub fn open(
        path: Option<&Path>,
        coordinator_id: &str,
        retention: Duration,
    ) -> Result<Jobs, JobsError> {
        let conn = match path {
            Some(p) => {
                if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(parent);
                }
                Connection::open(p)?
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            0 => conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS jobs (
                     id TEXT PRIMARY KEY NOT NULL,
                     service TEXT NOT NULL,
                     method TEXT NOT NULL,
                     path TEXT NOT NULL,
                     query TEXT NOT NULL,
                     content_type TEXT,
                     request_id TEXT,
                     input BLOB,
                     state TEXT NOT NULL,
                     done INTEGER NOT NULL DEFAULT 0,
                     total INTEGER NOT NULL DEFAULT 0,
                     runs INTEGER NOT NULL DEFAULT 0,
                     worker TEXT,
                     result BLOB,
                     result_type TEXT,
                     result_status INTEGER,
                     error TEXT,
                     created_ms INTEGER NOT NULL,
                     started_ms INTEGER,
                     finished_ms INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created_ms);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?,
            SCHEMA_VERSION => {}
            newer => return Err(JobsError::TooNew(newer)),
        }
        let requeued = conn.execute(
            "UPDATE jobs SET state = 'queued' WHERE state = 'running'",
            [],
        )?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "jobs left running by the last process are queued again"
            );
        }
        Ok(Jobs {
            conn: Mutex::new(conn),
            coordinator_id: coordinator_id.to_owned(),
            wake: Notify::new(),
            progress: Mutex::new(HashMap::new()),
            running: Mutex::new(Default::default()),
            retention,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the runner.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stores a call as a queued job; returns its id.
    pub async fn submit(&self, call: &Call) -> Result<String, ApiError> {
        let id = rma_proto::ids::job_id(&self.coordinator_id, rand::random::<u64>());
        let r = self.db().execute(
            "INSERT INTO jobs (id, service, method, path, query, content_type, request_id, input, state, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9)",
            params![id, call.service, call.method, call.path, call.query, call.content_type, call.request_id, call.body.as_ref(), now_ms()],
        );
        r.map_err(|e| ApiError::internal(format!("could not store the job: {e}")))?;
        metrics::counter!("rma_coordinator_jobs_submitted_total").increment(1);
        Ok(id)
    }

    /// Queued jobs not already running here, oldest first.
    fn next_queued(&self, limit: usize) -> Vec<(String, Call)> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let db = self.db();
        let Ok(mut stmt) = db.prepare(
            "SELECT id, service, method, path, query, content_type, request_id, input FROM jobs
             WHERE state = 'queued' ORDER BY created_ms LIMIT ?1",
        ) else {
            return Vec::new();
        };
        let rows = stmt.query_map(params![(limit + running.len()) as i64], |r| {
            let input: Option<Vec<u8>> = r.get(7)?;
            Ok((
                r.get::<_, String>(0)?,
                Call {
                    service: r.get(1)?,
                    method: r.get(2)?,
                    path: r.get(3)?,
                    query: r.get(4)?,
                    content_type: r.get(5)?,
                    request_id: r.get(6)?,
                    body: Bytes::from(input.unwrap_or_default()),
                },
            ))
        });
        match rows {
            Ok(rows) => rows
                .flatten()
                .filter(|(id, _)| !running.contains(id))
                .take(limit)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn mark_running(&self, id: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        let _ = self.db().execute(
            "UPDATE jobs SET state = 'running', started_ms = ?2, runs = runs + 1 WHERE id = ?1",
            params![id, now_ms()],
        );
    }

    fn finish(&self, id: &str, outcome: Result<crate::dispatch::Served, ApiError>) {
        let (done, total) = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .unwrap_or((1, 1));
        let db = self.db();
        let r = match outcome {
            Ok(s) if s.reply.status < 400 => {
                metrics::counter!("rma_coordinator_jobs_total", "state" => "done").increment(1);
                db.execute(
                    "UPDATE jobs SET state = 'done', done = ?2, total = ?3, worker = ?4, result = ?5,
                         result_type = ?6, result_status = ?7, finished_ms = ?8, input = NULL WHERE id = ?1",
                    params![id, total.max(done), total, s.worker, s.reply.body.as_ref(), s.reply.content_type, s.reply.status, now_ms()],
                )
            }
            Ok(s) => {
                metrics::counter!("rma_coordinator_jobs_total", "state" => "failed").increment(1);
                let message = serde_json::from_slice::<rma_proto::ErrorBody>(&s.reply.body)
                    .map(|b| b.message)
                    .unwrap_or_else(|_| {
                        String::from_utf8_lossy(&s.reply.body)
                            .chars()
                            .take(300)
                            .collect()
                    });
                db.execute(
                    "UPDATE jobs SET state = 'failed', done = ?2, total = ?3, worker = ?4, error = ?5, result_status = ?6, finished_ms = ?7 WHERE id = ?1",
                    params![id, done, total, s.worker, message, s.reply.status, now_ms()],
                )
            }
            Err(e) => {
                metrics::counter!("rma_coordinator_jobs_total", "state" => "failed").increment(1);
                db.execute(
                    "UPDATE jobs SET state = 'failed', done = ?2, total = ?3, error = ?4, result_status = ?5, finished_ms = ?6 WHERE id = ?1",
                    params![id, done, total, e.message, e.status.as_u16(), now_ms()],
                )
            }
        };
        if let Err(e) = r {
            tracing::error!(job = id, error = %e, "could not record the job's outcome");
        }
        drop(db);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Puts a job back in the queue (no worker could take it yet).
    fn requeue(&self, id: &str) {
        let _ = self.db().execute(
            "UPDATE jobs SET state = 'queued' WHERE id = ?1",
            params![id],
        );
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Deletes finished jobs older than the retention time; returns how many.
    pub fn expire(&self) -> usize {
        let cutoff = now_ms() - self.retention.as_millis() as i64;
        self.db()
            .execute(
                "DELETE FROM jobs WHERE state IN ('done', 'failed') AND finished_ms < ?1",
                params![cutoff],
            )
            .unwrap_or(0)
    }

    /// A job as the API shows it, or `None`.
    pub fn view(&self, id: &str) -> Result<Option<Value>, ApiError> {
        let live = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied();
        let db = self.db();
        let row = db
            .query_row(
                "SELECT id, service, state, done, total, runs, worker, result, result_type, result_status, error,
                        created_ms, started_ms, finished_ms FROM jobs WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, u32>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<Vec<u8>>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<u16>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        (r.get::<_, i64>(11)?, r.get::<_, Option<i64>>(12)?, r.get::<_, Option<i64>>(13)?),
                    ))
                },
            )
            .optional()
            .map_err(|e| ApiError::internal(format!("reading the job: {e}")))?;
        let Some((
            id,
            service,
            state,
            done,
            total,
            runs,
            worker,
            result,
            result_type,
            result_status,
            error,
            (created, started, finished),
        )) = row
        else {
            return Ok(None);
        };
        let (done, total) = match (state.as_str(), live) {
            ("running", Some(p)) => p,
            _ => (done, total),
        };
        let is_json = result_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"));
        let result_value = match (&result, is_json) {
            (Some(bytes), true) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let end = finished.unwrap_or_else(now_ms);
        let mut v = json!({
            "id": id,
            "service": service,
            "state": state,
            "progress": {"done": done, "total": total},
            "coordinator": self.coordinator_id,
            "worker": worker,
            "runs": runs,
            "created_at": rfc3339(Some(created)),
            "started_at": rfc3339(started),
            "finished_at": rfc3339(finished),
            "queued_ms": started.map(|s| s - created),
            "run_ms": started.map(|s| end - s),
            "error": error,
            "status": result_status,
            "result": result_value,
        });
        if let Some(steps) = v["result"].get("steps").cloned() {
            v["steps"] = steps;
        }
        if result.is_some() {
            v["result_url"] = json!(format!(
                "/api/jobs/{}/result",
                v["id"].as_str().unwrap_or_default()
            ));
        }
        Ok(Some(v))
    }

    /// A finished job's raw result and its content type.
    pub fn result(&self, id: &str) -> Result<Option<JobResult>, ApiError> {
        self.db()
            .query_row(
                "SELECT result, result_type FROM jobs WHERE id = ?1 AND state = 'done'",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                },
            )
            .optional()
            .map(|o| {
                o.and_then(|(body, content_type)| body.map(|body| JobResult { body, content_type }))
            })
            .map_err(|e| ApiError::internal(format!("reading the job: {e}")))
    }

    fn set_progress(&self, id: &str, done: u32, total: u32) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), (done, total));
    }
}

/// Works the queue until shutdown: up to `max_concurrent_jobs` at once. A job for which no
/// worker is available yet waits in the queue and is tried again when workers change.
pub async fn runner(state: AppState) {
    let mut shutdown = state.shutdown();
    let limit = Arc::new(Semaphore::new(state.config().max_concurrent_jobs.max(1)));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = tokio::time::Instant::now();
    loop {
        let free = limit.available_permits();
        if free > 0 {
            for (id, call) in state.jobs().next_queued(free) {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    break;
                };
                state.jobs().mark_running(&id);
                let state = state.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    run_one(&state, &id, call).await;
                    // A slot is free: look at the queue again.
                    state.jobs().wake();
                });
            }
        }
        if last_expiry.elapsed() > Duration::from_secs(3600) {
            last_expiry = tokio::time::Instant::now();
            let n = state.jobs().expire();
            if n > 0 {
                tracing::info!(expired = n, "finished jobs past retention deleted");
            }
        }
        tokio::select! {
            _ = state.jobs().wake.notified() => {}
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
    }
}

async fn run_one(state: &AppState, id: &str, call: Call) {
    let jobs_state = state.clone();
    let job_id = id.to_owned();
    let progress: ProgressFn =
        Arc::new(move |done, total| jobs_state.jobs().set_progress(&job_id, done, total));
    state.jobs().set_progress(id, 0, 0);
    let mut outcome = execute(state, call.clone(), Some(progress)).await;
    if matches!(&outcome, Err(e) if e.code == rma_proto::error_code::NO_WORKER) {
        // No worker here for it (this coordinator restarted and its workers re-homed, say):
        // ask the rest of the federation through the router.
        if let Some(served) = through_router(state, &call).await {
            outcome = Ok(served);
        }
    }
    match &outcome {
        // No worker for it yet (none registered, or all re-homing): keep it queued.
        Err(e) if e.code == rma_proto::error_code::NO_WORKER => {
            tracing::info!(job = id, "no worker for the job yet; it stays queued");
            state.jobs().requeue(id);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        _ => state.jobs().finish(id, outcome),
    }
}

/// Runs a job's call at another coordinator, through the router; `None` when there is no
/// router or no coordinator could take it either (the job then stays queued).
async fn through_router(state: &AppState, call: &Call) -> Option<crate::dispatch::Served> {
    let router = state.config().router_url.as_deref()?;
    let client = rma_client::Client::with_timeout(router, state.config().request_timeout).ok()?;
    let path = match (call.path.is_empty(), call.query.is_empty()) {
        (true, true) => format!("api/service/{}", call.service),
        (true, false) => format!("api/service/{}?{}", call.service, call.query),
        (false, true) => format!("api/service/{}{}", call.service, call.path),
        (false, false) => format!("api/service/{}{}?{}", call.service, call.path, call.query),
    };
    let method = reqwest::Method::from_bytes(call.method.as_bytes()).ok()?;
    let id = state.config().id.clone();
    let resp = client
        .raw(
            method,
            &path,
            call.content_type.as_deref(),
            call.body.clone(),
            &[(rma_proto::headers::FORWARDED_BY, &id)],
        )
        .await
        .ok()?;
    if resp.status.as_u16() == 503 {
        return None;
    }
    let worker = format!(
        "{}@{}",
        resp.header(rma_proto::headers::WORKER).unwrap_or("?"),
        resp.header(rma_proto::headers::COORDINATOR).unwrap_or("?")
    );
    tracing::info!(service = %call.service, %worker, "job run elsewhere in the federation: no worker for it here");
    Some(crate::dispatch::Served {
        reply: crate::link::Reply {
            status: resp.status.as_u16(),
            content_type: resp.header("content-type").map(str::to_owned),
            body: resp.body,
        },
        worker,
        attempts: 1,
        cache: None,
    })
}

/// `GET /api/jobs/{id}`.
pub async fn get_job(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    state.jobs().view(&id)?.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no job {id} here (finished jobs are kept for the retention time)"
        ))
    })
}

/// `GET /api/jobs/{id}/result`: the raw result (an enhanced PNG, say).
pub async fn get_result(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let JobResult {
        body,
        content_type: ct,
    } = state.jobs().result(&id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "job {id} has no result (unknown, not finished, or failed)"
        ))
    })?;
    let mut resp = body.into_response();
    if let Some(ct) = ct {
        rma_http::set_header(resp.headers_mut(), "content-type", &ct);
    }
    Ok(resp)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if rma_proto::ids::job_coordinator(id).is_none() || rma_proto::ids::validate(id).is_err() {
        return Err(ApiError::bad_request(format!("{id:?} is not a job id")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_jobs_survive_reopening_and_are_queued_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let call = Call {
            service: "echo".into(),
            method: "POST".into(),
            path: String::new(),
            query: String::new(),
            content_type: Some("text/plain".into()),
            request_id: None,
            body: Bytes::from_static(b"keep me"),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let (a, b) = {
            let jobs = Jobs::open(Some(&path), "c1", Duration::from_secs(60)).expect("open");
            let a = rt.block_on(jobs.submit(&call)).expect("a");
            let b = rt.block_on(jobs.submit(&call)).expect("b");
            jobs.mark_running(&a);
            (a, b)
        };
        let jobs = Jobs::open(Some(&path), "c1", Duration::from_secs(60)).expect("reopen");
        let queued: Vec<String> = jobs
            .next_queued(10)
            .into_iter()
            .map(|(id, c)| {
                assert_eq!(&c.body[..], b"keep me", "the input is kept");
                id
            })
            .collect();
        assert_eq!(queued, [a.clone(), b]);
        assert_eq!(jobs.view(&a).expect("view").expect("exists")["runs"], 1);
    }
}
