//! The machine-readable `error` field of JSON error bodies. Each maps to one HTTP status.

/// 400: the request is malformed (bad JSON, missing field, bad id or URL).
pub const BAD_REQUEST: &str = "bad_request";
/// 404: no such route, worker, coordinator or resource.
pub const NOT_FOUND: &str = "not_found";
/// 405: the route exists but not for this method.
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
/// 413: the body is over the configured limit.
pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
/// 415: the body is not of a media type the endpoint accepts.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
/// 502: an upstream (coordinator or worker) failed.
pub const UPSTREAM_FAILED: &str = "upstream_failed";
/// 503: no fresh coordinator is registered.
pub const NO_COORDINATOR: &str = "no_coordinator";
/// 503: no active worker offers the requested service.
pub const NO_WORKER: &str = "no_worker";
/// 504: the upstream did not answer within the request timeout.
pub const TIMEOUT: &str = "timeout";
/// 500: a bug; the message says what failed.
pub const INTERNAL: &str = "internal";
