//! The job runner: takes queued jobs, up to `max_concurrent_jobs` at once, runs them through
//! [`crate::execute`] like synchronous requests and writes how they ended. A job whose service
//! no worker here offers is asked of the rest of the federation through the router, and failing
//! that stays queued until workers change.

use std::sync::Arc;
use std::time::Duration;

use rma_client::Client;
use rma_http::{ApiError, Shutdown};
use rma_proto::{ErrorBody, ServiceCall, ServiceReply, error_code, headers};
use tokio::sync::Semaphore;

use super::{Finished, Jobs};
use crate::dispatch::{Dispatcher, Served};
use crate::execute::execute;
use crate::link::ProgressFn;

/// What the runner needs.
pub(crate) struct Runner {
    /// The jobs.
    pub(crate) jobs: Arc<Jobs>,
    /// Where they run.
    pub(crate) dispatcher: Dispatcher,
    /// The routers, to run jobs elsewhere when no worker here can (tried in turn).
    pub(crate) routers: Vec<Client>,
    /// Jobs run at once.
    pub(crate) max_concurrent: usize,
}

impl Runner {
    /// Works the queue until shutdown.
    pub(crate) async fn run(self, mut shutdown: Shutdown) {
        let this = Arc::new(self);
        let limit = Arc::new(Semaphore::new(this.max_concurrent.max(1)));
        let mut changes = this.dispatcher.registry.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = tokio::time::Instant::now();
        loop {
            let free = limit.available_permits();
            if free > 0 {
                let exclude = this.jobs.running().clone();
                let queued = match this.jobs.store.queued(free, exclude).await {
                    Ok(q) => q,
                    Err(e) => {
                        tracing::error!(error = %e, "could not read the job queue");
                        Vec::new()
                    }
                };
                for (id, call, created_ms) in queued {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        break;
                    };
                    let waited = (super::now_ms() - created_ms).max(0) as f64 / 1000.0;
                    metrics::histogram!("rma_coordinator_job_schedule_to_start_seconds")
                        .record(waited);
                    this.jobs.running().insert(id.clone());
                    if let Err(e) = this.jobs.store.mark_running(&id).await {
                        tracing::error!(job = %id, error = %e, "could not mark the job running");
                    }
                    let this = this.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        this.run_one(&id, call).await;
                        this.jobs.running().remove(&id);
                        // A slot is free: look at the queue again.
                        this.jobs.wake();
                    });
                }
            }
            if let Ok(depth) = this.jobs.store.queue_depth().await {
                metrics::gauge!("rma_coordinator_jobs_queued").set(depth as f64);
            }
            metrics::gauge!("rma_coordinator_jobs_running").set(this.jobs.running().len() as f64);
            if last_expiry.elapsed() > Duration::from_secs(3600) {
                last_expiry = tokio::time::Instant::now();
                let cutoff = super::now_ms() - this.jobs.retention.as_millis() as i64;
                match this.jobs.store.expire(cutoff).await {
                    Ok(results) if results.is_empty() => {}
                    Ok(results) => {
                        tracing::info!(
                            expired = results.len(),
                            "finished jobs past retention deleted"
                        );
                        // Retention applies to every copy: the stored documents go too.
                        super::forget_copies(&this.dispatcher, &results).await;
                    }
                    Err(e) => tracing::error!(error = %e, "could not delete old jobs"),
                }
            }
            tokio::select! {
                _ = this.jobs.wake.notified() => {}
                _ = changes.changed() => {}
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    async fn run_one(&self, id: &str, call: ServiceCall) {
        let jobs = self.jobs.clone();
        let job_id = id.to_owned();
        let progress: ProgressFn =
            Arc::new(move |done, total| jobs.set_progress(&job_id, done, total));
        self.jobs.set_progress(id, 0, 0);
        let outcome =
            execute_anywhere(&self.dispatcher, &self.routers, &call, Some(progress)).await;
        let last = self
            .jobs
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let written = match outcome {
            // No worker for it yet (none registered, or all re-homing): keep it queued.
            Err(e) if e.code == error_code::NO_WORKER => {
                tracing::info!(job = id, "no worker for the job yet; it stays queued");
                let r = self.jobs.store.requeue(id).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                r
            }
            outcome => {
                let (state, how) = finished(outcome);
                metrics::counter!("rma_coordinator_jobs_total", "state" => state).increment(1);
                self.jobs
                    .store
                    .finish(id, last.unwrap_or((1, 1)), how)
                    .await
            }
        };
        if let Err(e) = written {
            tracing::error!(job = id, error = %e, "could not record the job's outcome");
        }
    }
}

/// Runs a job's call here, or, with no worker for it here (this coordinator restarted and its
/// workers re-homed, say), at another coordinator through a router.
async fn execute_anywhere(
    dispatcher: &Dispatcher,
    routers: &[Client],
    call: &ServiceCall,
    progress: Option<ProgressFn>,
) -> Result<Served, ApiError> {
    let outcome = execute(dispatcher, call.clone(), progress).await;
    if matches!(&outcome, Err(e) if e.code == error_code::NO_WORKER)
        && let Some(served) = through_routers(routers, &dispatcher.coordinator_id, call).await
    {
        return Ok(served);
    }
    outcome
}

/// Runs a job's call at another coordinator, through a router (the next when one cannot be
/// reached or has no coordinator for it); `None` when there is no router or no coordinator
/// could take it (the job then stays queued).
async fn through_routers(routers: &[Client], me: &str, call: &ServiceCall) -> Option<Served> {
    let mut answer = None;
    for router in routers {
        match router.send(call, &[(headers::FORWARDED_BY, me)]).await {
            Ok(resp) if resp.status.as_u16() != 503 => {
                answer = Some(resp);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(router = %router.base(), error = %e, "router unreachable; trying the next");
            }
        }
    }
    let resp = answer?;
    let worker = format!(
        "{}@{}",
        resp.header(headers::WORKER).unwrap_or("?"),
        resp.header(headers::COORDINATOR).unwrap_or("?")
    );
    tracing::info!(service = %call.service, %worker, "job run elsewhere in the federation: no worker for it here");
    Some(Served {
        verified: None,
        reply: ServiceReply {
            status: resp.status.as_u16(),
            content_type: resp.header("content-type").map(str::to_owned),
            body: resp.body,
            took_us: None,
        },
        worker,
        attempts: 1,
        cache: None,
    })
}

/// How a replicated job's call ended: status, content type, body, who served it.
pub(crate) type Answer = (u16, Option<String>, bytes::Bytes, String);

/// Runs a replicated job's call here or, without a worker for it, through a router: how it
/// ended, or `None` while no worker anywhere offers its service.
pub(crate) async fn run_call(
    state: &crate::AppState,
    call: &ServiceCall,
    progress: Option<ProgressFn>,
) -> Option<Answer> {
    let outcome = execute_anywhere(state.dispatcher(), state.routers(), call, progress).await;
    match outcome {
        Err(e) if e.code == error_code::NO_WORKER => None,
        Ok(s) => Some((s.reply.status, s.reply.content_type, s.reply.body, s.worker)),
        Err(e) => Some((
            e.status.as_u16(),
            Some("application/json".into()),
            bytes::Bytes::from(
                serde_json::to_vec(&ErrorBody {
                    error: e.code.to_owned(),
                    message: e.message,
                })
                .unwrap_or_default(),
            ),
            String::new(),
        )),
    }
}

/// How an outcome is written: its state label and row.
fn finished(outcome: Result<Served, ApiError>) -> (&'static str, Finished) {
    match outcome {
        Ok(s) if s.reply.status < 400 => (
            "done",
            Finished::Done {
                worker: s.worker,
                status: s.reply.status,
                content_type: s.reply.content_type,
                body: s.reply.body,
                verified: s.verified.map(|v| v.as_str()),
            },
        ),
        Ok(s) => {
            let status = s.reply.status;
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&s.reply.body) {
                Ok(b) => (b.error, b.message),
                Err(_) => (
                    error_code::for_status(status).to_owned(),
                    s.reply.error_message(),
                ),
            };
            (
                "failed",
                Finished::Failed {
                    worker: Some(s.worker),
                    status,
                    code,
                    message,
                },
            )
        }
        Err(e) => (
            "failed",
            Finished::Failed {
                worker: None,
                status: e.status.as_u16(),
                code: e.code.to_owned(),
                message: e.message,
            },
        ),
    }
}
