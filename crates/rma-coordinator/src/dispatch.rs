//! Dispatch: pick an active worker offering the service, send the call down its link (or to
//! its tunnel URL), and carry out the forwarding policy ([`rma_http::forwarding`]) on what
//! happened: a lost worker sends the call to another (up to `max_attempts`), a `GET` of a
//! sub-resource answered 404 is asked of the next worker too, so a stored document is found on
//! whichever storage worker holds it.

use std::collections::HashSet;
use std::time::Duration;

use rma_http::ApiError;
use rma_http::forwarding::{Decision, Outcome, Policy};
use rma_proto::results::StoredObject;
use rma_proto::{ServiceCall, ServiceReply, service};
use tokio::time::Instant;

use crate::link::{CallError, ProgressFn};
use crate::registry::{Registry, Route};

/// An answer and who gave it.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// The answer.
    pub(crate) reply: ServiceReply,
    /// The worker that gave it (for `process`, every worker that ran a step, comma-separated).
    pub(crate) worker: String,
    /// Workers tried.
    pub(crate) attempts: u32,
    /// `hit` or `miss` when the cache was consulted.
    pub(crate) cache: Option<&'static str>,
    /// The spot check's verdict, when the answer was checked.
    pub(crate) verified: Option<rma_proto::job::Verdict>,
}

/// What everything below the HTTP handlers needs to send work to workers. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Dispatcher {
    /// The workers.
    pub(crate) registry: Registry,
    /// This coordinator's id (named in `process` steps).
    pub(crate) coordinator_id: String,
    /// How long one call may take.
    pub(crate) timeout: Duration,
    /// Workers lost under one call before giving up.
    pub(crate) max_attempts: u32,
    /// For workers reached over their tunnel URL.
    pub(crate) http: reqwest::Client,
    /// This coordinator's identity: its credential goes with calls over tunnel URLs.
    pub(crate) identity: std::sync::Arc<rma_auth::Identity>,
    /// Seals what goes to storage workers, opens what comes back.
    pub(crate) sealer: crate::sealed::Sealer,
    /// The share of answers spot-checked on a second worker (0.0–1.0).
    pub(crate) spot_check_share: f64,
    /// Spot checks a worker may lose before it is quarantined.
    pub(crate) quarantine_after: u32,
}

impl Dispatcher {
    /// Sends `call` to a worker, and on to others as the forwarding policy says.
    pub(crate) async fn dispatch(
        &self,
        call: &ServiceCall,
        progress: Option<ProgressFn>,
    ) -> Result<Served, ApiError> {
        if !matches!(call.service.as_str(), service::STORE | service::CACHE) {
            return self.dispatch_plain(call, progress).await;
        }
        // Storage workers get ciphertext only.
        let writing = matches!(call.method.as_str(), "POST" | "PUT");
        let plain_size = call.body.len() as u64;
        let plain_type = call.content_type.clone();
        let sealed;
        let call = if writing {
            sealed = ServiceCall {
                body: self.sealer.seal(call.content_type.as_deref(), &call.body),
                content_type: Some("application/octet-stream".into()),
                ..call.clone()
            };
            &sealed
        } else {
            call
        };
        let mut served = self.dispatch_plain(call, progress).await?;
        if served.reply.status != 200 {
            return Ok(served);
        }
        if call.method == "GET" {
            let (ct, body) = self
                .sealer
                .open(&served.reply.body)
                .map_err(|e| ApiError::upstream(format!("{} from worker {}", e, served.worker)))?;
            served.reply.body = body;
            served.reply.content_type = ct;
        } else if writing && call.service == service::STORE {
            // Describe the document, not its ciphertext.
            if let Ok(mut obj) = serde_json::from_slice::<StoredObject>(&served.reply.body) {
                obj.size = plain_size;
                obj.content_type = rma_proto::media::essence(plain_type.as_deref())
                    .unwrap_or_else(|| "application/octet-stream".into());
                served.reply = ServiceReply::json(&obj);
            }
        }
        Ok(served)
    }

    /// [`Dispatcher::dispatch`] without sealing.
    async fn dispatch_plain(
        &self,
        call: &ServiceCall,
        progress: Option<ProgressFn>,
    ) -> Result<Served, ApiError> {
        let policy = Policy::coordinator(&call.method, &call.path);
        let mut tried: HashSet<String> = HashSet::new();
        let mut lost = 0u32;
        let mut kept: Option<Served> = None;
        let mut attempts = 0u32;
        let mut lent = false;
        loop {
            let choosing = Instant::now();
            let mut picked = self.registry.lock().pick(&call.service, &tried, choosing);
            // Nobody serves it now but an idle worker could: lend it the service (once a call).
            if picked.is_none() && !lent && self.registry.lend(&call.service) {
                lent = true;
                picked = self
                    .registry
                    .lock()
                    .pick(&call.service, &tried, Instant::now());
            }
            metrics::histogram!("rma_coordinator_routing_seconds")
                .record(choosing.elapsed().as_secs_f64());
            let Some((worker, route)) = picked else {
                return kept.ok_or_else(|| self.nobody(call, &tried));
            };
            attempts += 1;
            let result = self.send(&worker, route, call, progress.clone()).await;
            let outcome = match &result {
                Ok(reply) => Outcome::Answered(reply.status),
                Err(CallError::Lost) => Outcome::Unreachable,
                Err(CallError::Timeout) => Outcome::TimedOut,
            };
            let served = |reply| Served {
                reply,
                worker: worker.clone(),
                attempts,
                cache: None,
                verified: None,
            };
            match (policy.classify(outcome), result) {
                (Decision::Answer, Ok(reply)) => return Ok(served(reply)),
                (Decision::NextKeep, Ok(reply)) => {
                    kept = Some(served(reply));
                    tried.insert(worker);
                }
                (Decision::Fail, _) => {
                    return Err(ApiError::timeout(format!(
                        "worker {worker} did not answer {:?} within {} s",
                        call.service,
                        self.timeout.as_secs()
                    )));
                }
                _ => {
                    tracing::warn!(%worker, service = %call.service, attempts, "worker lost mid-request; retrying on another");
                    metrics::counter!("rma_coordinator_retries_total").increment(1);
                    tried.insert(worker);
                    lost += 1;
                    if lost >= self.max_attempts {
                        return Err(ApiError::upstream(format!(
                            "{lost} workers were lost while serving {:?}; giving up",
                            call.service
                        )));
                    }
                }
            }
        }
    }

    /// Sends `call` once to one active worker offering its service that is not in `exclude`
    /// (a spot check): who answered and what, or `None` when none is there or it failed.
    pub(crate) async fn ask_one(
        &self,
        call: &ServiceCall,
        exclude: &HashSet<String>,
    ) -> Option<(String, ServiceReply)> {
        let (worker, route) = self
            .registry
            .lock()
            .pick(&call.service, exclude, Instant::now())?;
        let result = self.send(&worker, route, call, None).await;
        result.ok().map(|r| (worker, r))
    }

    /// Sends `call` to every active worker offering its service (a delete of stored copies);
    /// returns how many answered 2xx.
    pub(crate) async fn dispatch_every(&self, call: &ServiceCall) -> usize {
        let mut tried: HashSet<String> = HashSet::new();
        let mut ok = 0;
        loop {
            let picked = self
                .registry
                .lock()
                .pick(&call.service, &tried, Instant::now());
            let Some((worker, route)) = picked else {
                return ok;
            };
            let result = self.send(&worker, route, call, None).await;
            if result.is_ok_and(|r| (200..300).contains(&r.status)) {
                ok += 1;
            }
            tried.insert(worker);
        }
    }

    /// One attempt: `call` to `worker` (picked, so counted in flight there) down its link or
    /// over its tunnel URL; a tunnel that cannot be reached is taken out of use. The call is
    /// counted out again however it ends (a dropped handler included), and an answer's round
    /// trip feeds the worker's service-time estimate.
    async fn send(
        &self,
        worker: &str,
        route: Route,
        call: &ServiceCall,
        progress: Option<ProgressFn>,
    ) -> Result<ServiceReply, CallError> {
        let mut ticket = Ticket {
            registry: &self.registry,
            worker,
            service: &call.service,
            started: Instant::now(),
            answered: None,
        };
        let result = match route {
            Route::Link(link) => link.call(call, self.timeout, progress).await,
            Route::Http(url) => {
                let bearer = self.identity.bearer();
                let r = crate::tunnel::call(&self.http, &url, bearer, call, self.timeout).await;
                if r == Err(CallError::Lost) {
                    self.registry.lock().mark_tunnel_down(worker);
                }
                r
            }
        };
        ticket.answered = Some(result.as_ref().is_ok_and(|r| r.status < 500));
        if let Ok(ServiceReply {
            took_us: Some(us), ..
        }) = &result
        {
            metrics::histogram!(
                "rma_coordinator_worker_service_seconds",
                "worker" => crate::registry::worker_label(worker),
                "service" => rma_proto::service::metric_label(&call.service)
            )
            .record(*us as f64 / 1e6);
        }
        result
    }

    fn nobody(&self, call: &ServiceCall, tried: &HashSet<String>) -> ApiError {
        ApiError::no_worker(if tried.is_empty() {
            format!("no active worker offers the {:?} service", call.service)
        } else {
            format!(
                "the link of every worker tried for {:?} dropped ({}), and no other worker offers it",
                call.service,
                tried.len()
            )
        })
    }
}

/// A call in flight at a worker: counted out when dropped.
struct Ticket<'a> {
    registry: &'a Registry,
    worker: &'a str,
    service: &'a str,
    started: Instant,
    answered: Option<bool>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        self.registry.lock().finished(
            self.worker,
            self.service,
            now.saturating_duration_since(self.started),
            self.answered,
            now,
        );
    }
}
