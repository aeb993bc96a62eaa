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
    call: ServiceCall,
    progress: Option<ProgressFn>,
) -> Result<Served, ApiError> {
    if call.service == service::PROCESS {
        crate::pipeline::run(d, call, progress).await
    } else {
        crate::cache::cached(d, call, progress).await
    }
}
