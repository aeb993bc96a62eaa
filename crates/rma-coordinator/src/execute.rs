//! Running a call the way a client asked for it, synchronously or as a job: `process` through
//! the pipeline, every other service through the cache and a worker. The one entry point from
//! the HTTP handlers and the job runner into the execution path (execute → pipeline / cache →
//! dispatch → link or tunnel → registry).

use rma_http::ApiError;
use rma_proto::{ServiceCall, service};

use crate::dispatch::{Dispatcher, Served};
use crate::link::ProgressFn;

/// Runs `call`; `progress` hears pages or steps done.
pub(crate) async fn execute(
    d: &Dispatcher,
    mut call: ServiceCall,
    progress: Option<ProgressFn>,
) -> Result<Served, ApiError> {
    // `?verify=true` asks for a spot check; it is ours, not the service's.
    let verify = crate::spotcheck::take_verify(&mut call);
    if call.service == service::PROCESS {
        crate::pipeline::run(d, call, progress, verify).await
    } else {
        crate::cache::cached(d, call, progress, verify).await
    }
}
