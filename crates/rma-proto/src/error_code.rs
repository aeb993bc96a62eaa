//! The machine-readable `error` field of JSON error bodies. Each maps to one HTTP status, and
//! [`for_status`] is the one mapping back from a status to a code, used wherever an answer
//! passes through (router, pipeline steps, jobs, clients; the web UI reads the stored code).

/// 400: the request is malformed (bad JSON, missing field, bad id or URL).
pub const BAD_REQUEST: &str = "bad_request";
/// 401: no credential, or one that is not valid.
pub const UNAUTHORIZED: &str = "unauthorized";
/// 403: a valid credential that does not allow this.
pub const FORBIDDEN: &str = "forbidden";
/// 429: too many requests from one client; retry later.
pub const RATE_LIMITED: &str = "rate_limited";
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

/// The code for an error status that arrived without one of ours (an upstream's answer passed
/// on, a failed pipeline step, a job that failed with a status): the code that this status
/// has in the contract. 503 is `no_worker` (a coordinator's and a router's 503 both mean nobody
/// can serve it now); other 5xx are `upstream_failed`, other 4xx `bad_request`.
pub fn for_status(status: u16) -> &'static str {
    match status {
        400 => BAD_REQUEST,
        401 => UNAUTHORIZED,
        403 => FORBIDDEN,
        404 => NOT_FOUND,
        405 => METHOD_NOT_ALLOWED,
        413 => PAYLOAD_TOO_LARGE,
        415 => UNSUPPORTED_MEDIA_TYPE,
        429 => RATE_LIMITED,
        500 => INTERNAL,
        503 => NO_WORKER,
        504 => TIMEOUT,
        s if s >= 500 => UPSTREAM_FAILED,
        _ => BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_codes() {
        assert_eq!(for_status(404), NOT_FOUND);
        assert_eq!(for_status(413), PAYLOAD_TOO_LARGE);
        assert_eq!(for_status(502), UPSTREAM_FAILED);
        assert_eq!(for_status(503), NO_WORKER);
        assert_eq!(for_status(504), TIMEOUT);
        assert_eq!(for_status(418), BAD_REQUEST);
    }
}
