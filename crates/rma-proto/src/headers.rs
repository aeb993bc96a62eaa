//! Header names used across the federation.

/// Names the coordinator that served a service request.
pub const COORDINATOR: &str = "x-rma-coordinator";
/// Names the worker that served a service request.
pub const WORKER: &str = "x-rma-worker";
/// Correlates one request across router, coordinator and worker; kept from the client when it sent one.
pub const REQUEST_ID: &str = "x-request-id";
/// How many workers or coordinators were tried before the answer (1 when the first one answered).
pub const ATTEMPTS: &str = "x-rma-attempts";
/// Set by a coordinator that sends a job's request on through the router because it has no
/// worker for it; names that coordinator.
pub const FORWARDED_BY: &str = "x-rma-forwarded-by";
/// Router → coordinator: the router's own credential (role `router`, signed with the federation
/// key, made out to that coordinator in `aud`), on every service request it forwards. A coordinator runs services only for a router's
/// credential here, or a client's or coordinator's in `Authorization`.
pub const ROUTER_CREDENTIAL: &str = "x-rma-router-credential";
/// `hit` when a cached result answered, `miss` when the cache was asked and a worker answered.
pub const CACHE: &str = "x-rma-cache";
/// The spot check's verdict on an answer: `agreed`, `unverified` or `disagreed`.
pub const VERIFIED: &str = "x-rma-verified";

/// Worker → coordinator over a tunnel URL: microseconds the worker spent on the call.
pub const TOOK_US: &str = "x-rma-took-us";

/// W3C trace context, accepted or started at the router and carried to the worker.
pub const TRACEPARENT: &str = "traceparent";

/// W3C trace context of the answer: the trace and the router's span (so a client that sent no
/// `traceparent` learns the trace id to look for).
pub const TRACERESPONSE: &str = "traceresponse";

/// Time spent at each hop (`router`, `coordinator`, `link`, `worker`), in milliseconds.
pub const SERVER_TIMING: &str = "server-timing";
