//! The job file: one SQLite table of jobs with their inputs and results. Every call runs on
//! the blocking pool, so a slow disk never stalls the async runtime.
//!
//! Schema versions: 1 the table; 2 adds `error_code` (the code of a failure); 3 `verified`;
//! 4 `client`; 5 `traceparent` (the trace a job's run continues).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rma_proto::ServiceCall;
use rma_proto::job::{Correction, JobState};
use rusqlite::{Connection, OptionalExtension, params};

const MIGRATIONS: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS jobs (
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
     CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created_ms)",
    "ALTER TABLE jobs ADD COLUMN error_code TEXT",
    "ALTER TABLE jobs ADD COLUMN verified TEXT",
    "ALTER TABLE jobs ADD COLUMN client TEXT;
     CREATE INDEX IF NOT EXISTS jobs_by_client ON jobs (client, state)",
    "ALTER TABLE jobs ADD COLUMN traceparent TEXT",
    "ALTER TABLE jobs ADD COLUMN corrections TEXT",
];

/// Most corrections one job keeps.
pub(crate) const MAX_CORRECTIONS: usize = 100;

/// What became of a correction.
#[derive(Debug)]
pub(crate) enum Corrected {
    /// Kept: the job's whole list now.
    Added(Vec<Correction>),
    /// The job holds [`MAX_CORRECTIONS`] already.
    Full,
    /// No such job.
    NoJob,
}

/// A failure of the job file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or migrating it.
    #[error(transparent)]
    Open(#[from] rma_http::sqlite::SqliteError),
    /// A statement failed.
    #[error("jobs database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task died.
    #[error("jobs database task: {0}")]
    Task(String),
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How a job ended, as written to its row.
#[derive(Debug)]
pub(crate) enum Finished {
    /// A 2xx/3xx answer.
    Done {
        worker: String,
        status: u16,
        content_type: Option<String>,
        body: Bytes,
        /// The spot check's verdict (`agreed`…), when checked.
        verified: Option<&'static str>,
    },
    /// An error answer or a failure to run.
    Failed {
        worker: Option<String>,
        status: u16,
        code: String,
        message: String,
    },
}

/// One job as stored.
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) state: JobState,
    pub(crate) done: u32,
    pub(crate) total: u32,
    pub(crate) runs: u32,
    pub(crate) worker: Option<String>,
    pub(crate) result: Option<Vec<u8>>,
    pub(crate) result_type: Option<String>,
    pub(crate) result_status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) error_code: Option<String>,
    pub(crate) verified: Option<String>,
    /// Corrections by a person, a JSON array of `Correction`.
    pub(crate) corrections: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) started_ms: Option<i64>,
    pub(crate) finished_ms: Option<i64>,
}

/// The job file.
#[derive(Clone)]
pub(crate) struct JobStore {
    conn: Arc<Mutex<Connection>>,
}

impl JobStore {
    /// Opens the file (in memory when `path` is `None`) and queues again the jobs a previous
    /// process left running.
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        let conn = rma_http::sqlite::open_versioned("jobs database", path, &MIGRATIONS)?;
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
        Ok(JobStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(StoreError::from)
    }

    /// Stores a call as a queued job, unless `limits.0` jobs are queued or running already, or
    /// `limits.1` of `client`'s (checked and inserted in one statement): whether it was stored.
    pub(crate) async fn insert(
        &self,
        id: &str,
        call: ServiceCall,
        client: Option<String>,
        (max_unfinished, per_client): (usize, usize),
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO jobs (id, service, method, path, query, content_type, request_id, input, state, created_ms, client, traceparent)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?11, ?13
                 WHERE (SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')) < ?10
                   AND (?11 IS NULL OR (SELECT COUNT(*) FROM jobs
                        WHERE client = ?11 AND state IN ('queued', 'running')) < ?12)",
                params![id, call.service, call.method, call.path, call.query, call.content_type, call.request_id, call.body.as_ref(), now_ms(), max_unfinished as i64, client, per_client as i64, call.traceparent],
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Jobs queued and not started.
    pub(crate) async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM jobs WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    /// Up to `limit` queued jobs not in `exclude`, oldest first, with their calls.
    pub(crate) async fn queued(
        &self,
        limit: usize,
        exclude: HashSet<String>,
    ) -> Result<Vec<(String, ServiceCall, i64)>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, service, method, path, query, content_type, request_id, input, created_ms, traceparent FROM jobs
                 WHERE state = 'queued' ORDER BY created_ms LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![(limit + exclude.len()) as i64], |r| {
                let input: Option<Vec<u8>> = r.get(7)?;
                Ok((
                    r.get::<_, String>(0)?,
                    ServiceCall {
                        service: r.get(1)?,
                        method: r.get(2)?,
                        path: r.get(3)?,
                        query: r.get(4)?,
                        content_type: r.get(5)?,
                        request_id: r.get(6)?,
                        body: Bytes::from(input.unwrap_or_default()),
                        traceparent: r.get(9)?,
                    },
                    r.get::<_, i64>(8)?,
                ))
            })?;
            Ok(rows
                .flatten()
                .filter(|(id, _, _)| !exclude.contains(id))
                .take(limit)
                .collect())
        })
        .await
    }

    /// Per service, how many jobs are queued (placement's view of the queue).
    pub(crate) async fn queued_by_service(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::placement::Queue>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT service, COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY service",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            Ok(rows
                .flatten()
                .map(|(s, n)| {
                    let jobs = u32::try_from(n).unwrap_or(u32::MAX);
                    (s, crate::placement::Queue { jobs })
                })
                .collect())
        })
        .await
    }

    /// Marks a job running (one more run).
    pub(crate) async fn mark_running(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET state = 'running', started_ms = ?2, runs = runs + 1 WHERE id = ?1",
                params![id, now_ms()],
            )
            .map(drop)
        })
        .await
    }

    /// Puts a job back in the queue.
    pub(crate) async fn requeue(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE jobs SET state = 'queued' WHERE id = ?1",
                params![id],
            )
            .map(drop)
        })
        .await
    }

    /// Writes how a job ended, with its last progress.
    pub(crate) async fn finish(
        &self,
        id: &str,
        (done, total): (u32, u32),
        how: Finished,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            match how {
                Finished::Done { worker, status, content_type, body, verified } => c.execute(
                    "UPDATE jobs SET state = 'done', done = ?2, total = ?3, worker = ?4, result = ?5,
                         result_type = ?6, result_status = ?7, finished_ms = ?8, input = NULL, verified = ?9
                     WHERE id = ?1",
                    params![id, total.max(done), total, worker, body.as_ref(), content_type, status, now_ms(), verified],
                ),
                Finished::Failed { worker, status, code, message } => c.execute(
                    "UPDATE jobs SET state = 'failed', done = ?2, total = ?3, worker = COALESCE(?4, worker), error = ?5,
                         error_code = ?6, result_status = ?7, finished_ms = ?8 WHERE id = ?1",
                    params![id, done, total, worker, message, code, status, now_ms()],
                ),
            }
            .map(drop)
        })
        .await
    }

    /// Deletes finished jobs that finished before `cutoff_ms`; returns the results of those
    /// that had one (for the copies they name to be deleted too).
    pub(crate) async fn expire(&self, cutoff_ms: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "DELETE FROM jobs WHERE state IN ('done', 'failed') AND finished_ms < ?1
                 RETURNING result",
            )?;
            let rows = stmt.query_map(params![cutoff_ms], |r| r.get::<_, Option<Vec<u8>>>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r?.unwrap_or_default());
            }
            Ok(out)
        })
        .await
    }

    /// Deletes one job, whatever its state; its result if it was there (empty when it had
    /// none), `None` when there was no such job.
    pub(crate) async fn delete(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                "DELETE FROM jobs WHERE id = ?1 RETURNING result",
                params![id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(|o| o.map(Option::unwrap_or_default))
        })
        .await
    }

    /// Adds a correction to a job's list, read and written under one lock so two corrections
    /// at once both stay. A list already holding [`MAX_CORRECTIONS`] is left as it is: a job
    /// id is its only key, so what its holder can write is bounded.
    pub(crate) async fn add_correction(
        &self,
        id: &str,
        correction: Correction,
    ) -> Result<Corrected, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let Some(kept) = c
                .query_row(
                    "SELECT corrections FROM jobs WHERE id = ?1",
                    params![id],
                    |r| r.get::<_, Option<String>>(0),
                )
                .optional()?
            else {
                return Ok(Corrected::NoJob);
            };
            let mut list: Vec<Correction> = kept
                .and_then(|k| serde_json::from_str(&k).ok())
                .unwrap_or_default();
            if list.len() >= MAX_CORRECTIONS {
                return Ok(Corrected::Full);
            }
            list.push(correction);
            let json = serde_json::to_string(&list)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            c.execute(
                "UPDATE jobs SET corrections = ?2 WHERE id = ?1",
                params![id, json],
            )?;
            Ok(Corrected::Added(list))
        })
        .await
    }

    /// One job's row.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT id, service, state, done, total, runs, worker, result, result_type, result_status, error,
                        error_code, created_ms, started_ms, finished_ms, verified, corrections FROM jobs WHERE id = ?1",
                params![id],
                |r| {
                    let state: String = r.get(2)?;
                    Ok(JobRow {
                        id: r.get(0)?,
                        service: r.get(1)?,
                        state: JobState::parse(&state).unwrap_or(JobState::Failed),
                        done: r.get(3)?,
                        total: r.get(4)?,
                        runs: r.get(5)?,
                        worker: r.get(6)?,
                        result: r.get(7)?,
                        result_type: r.get(8)?,
                        result_status: r.get(9)?,
                        error: r.get(10)?,
                        error_code: r.get(11)?,
                        created_ms: r.get(12)?,
                        started_ms: r.get(13)?,
                        finished_ms: r.get(14)?,
                        verified: r.get(15)?,
                        corrections: r.get(16)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// A finished job's raw result and its content type.
    pub(crate) async fn result(
        &self,
        id: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
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
            .map(|o| o.and_then(|(body, ct)| body.map(|b| (b, ct))))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn corrections_all_stay_up_to_the_bound_and_none_for_no_job() {
        let store = JobStore::open(None).expect("open");
        let call = ServiceCall::post("echo", None, Bytes::new());
        assert!(
            store
                .insert("c1-jc", call, None, (3, 1))
                .await
                .expect("insert")
        );
        let fix = |i: usize| Correction {
            field: "amounts".into(),
            index: Some(0),
            value: format!("{i}.00"),
            was: "1.00".into(),
            by: "person".into(),
            at: String::new(),
        };
        // Many at once: every one is kept.
        let adds = (0..20).map(|i| {
            let store = store.clone();
            async move { store.add_correction("c1-jc", fix(i)).await }
        });
        for r in futures_util::future::join_all(adds).await {
            assert!(matches!(r.expect("add"), Corrected::Added(_)));
        }
        let Corrected::Added(list) = store.add_correction("c1-jc", fix(20)).await.expect("add")
        else {
            panic!("the 21st is kept");
        };
        assert_eq!(list.len(), 21);
        // Up to the bound they are kept; past it, nothing more is written.
        for i in 21..MAX_CORRECTIONS {
            let r = store.add_correction("c1-jc", fix(i)).await.expect("add");
            assert!(matches!(r, Corrected::Added(ref l) if l.len() == i + 1));
        }
        let r = store.add_correction("c1-jc", fix(0)).await.expect("add");
        assert!(matches!(r, Corrected::Full), "{r:?}");
        let r = store.add_correction("c1-nope", fix(0)).await.expect("add");
        assert!(matches!(r, Corrected::NoJob), "{r:?}");
    }

    #[tokio::test]
    async fn unfinished_jobs_survive_reopening_and_are_queued_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let call = ServiceCall::post(
            "echo",
            Some("text/plain".into()),
            Bytes::from_static(b"keep me"),
        );
        {
            let store = JobStore::open(Some(&path)).expect("open");
            let org = || Some("org".to_owned());
            assert!(
                store
                    .insert("c1-ja", call.clone(), org(), (3, 1))
                    .await
                    .expect("a")
            );
            assert!(
                !store
                    .insert("c1-jx", call.clone(), org(), (3, 1))
                    .await
                    .expect("x"),
                "one unfinished job is this client's limit"
            );
            assert!(
                store
                    .insert("c1-jb", call.clone(), None, (2, 1))
                    .await
                    .expect("b")
            );
            assert!(
                !store
                    .insert("c1-jc", call.clone(), None, (2, 1))
                    .await
                    .expect("c"),
                "two unfinished jobs are the limit"
            );
            store.mark_running("c1-ja").await.expect("running");
        }
        let store = JobStore::open(Some(&path)).expect("reopen");
        let queued = store.queued(10, HashSet::new()).await.expect("queued");
        let ids: Vec<&str> = queued.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["c1-ja", "c1-jb"]);
        assert_eq!(queued[0].1, call, "the input is kept");
        let row = store.get("c1-ja").await.expect("get").expect("exists");
        assert_eq!((row.state, row.runs), (JobState::Queued, 1));
    }

    #[tokio::test]
    async fn a_version_1_file_is_migrated_with_its_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.db");
        let conn =
            rma_http::sqlite::open_versioned("v1", Some(&path), &MIGRATIONS[..1]).expect("v1 file");
        conn.execute(
            "INSERT INTO jobs (id, service, method, path, query, state, created_ms) VALUES ('c-jx', 'echo', 'POST', '', '', 'queued', 1)",
            [],
        )
        .expect("row");
        drop(conn);
        let store = JobStore::open(Some(&path)).expect("migrated");
        store
            .finish(
                "c-jx",
                (0, 0),
                Finished::Failed {
                    worker: None,
                    status: 503,
                    code: "no_worker".into(),
                    message: "nobody".into(),
                },
            )
            .await
            .expect("finish");
        let row = store.get("c-jx").await.expect("get").expect("row");
        assert_eq!(row.error_code.as_deref(), Some("no_worker"));
    }
}
