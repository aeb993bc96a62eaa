//! One forwarding policy for both hops — the router sending a request to a coordinator, the
//! coordinator sending it to a worker — in the spirit of pingora's `fail_to_connect` /
//! `error_while_proxy` hooks: each attempt's [`Outcome`] is classified into a [`Decision`], and
//! the loops around it only carry it out.

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Never answered: connection refused or reset, or the worker's link closed under the
    /// request. Safe to resend: every service is pure or content-addressed.
    Unreachable,
    /// No answer within the request timeout.
    TimedOut,
    /// An HTTP answer with this status.
    Answered(u16),
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This is the answer.
    Answer,
    /// Try the next candidate.
    Next,
    /// Try the next candidate, and keep this answer in case no other has anything better (a
    /// `GET store/{hash}` that this storage worker does not hold).
    NextKeep,
    /// Give up: the request has had its time.
    Fail,
}

/// The rules of one hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Statuses after which another candidate is tried: a coordinator's 502/503 mean "not me",
    /// a worker's mean the service's own backend failed.
    pub retry_statuses: &'static [u16],
    /// Whether a 404 sends the request on (lookups of sub-resources spread over workers).
    pub next_on_not_found: bool,
}

impl Policy {
    /// The router → coordinator hop.
    pub const ROUTER: Policy = Policy {
        retry_statuses: &[502, 503],
        next_on_not_found: false,
    };

    /// The coordinator → worker hop, for a call with this method and sub-path.
    pub fn coordinator(method: &str, sub_path: &str) -> Policy {
        Policy {
            retry_statuses: &[],
            next_on_not_found: method == "GET" && !sub_path.is_empty(),
        }
    }

    /// Classifies an attempt.
    pub fn classify(&self, outcome: Outcome) -> Decision {
        match outcome {
            Outcome::Unreachable => Decision::Next,
            Outcome::TimedOut => Decision::Fail,
            Outcome::Answered(s) if self.retry_statuses.contains(&s) => Decision::Next,
            Outcome::Answered(404) if self.next_on_not_found => Decision::NextKeep,
            Outcome::Answered(_) => Decision::Answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_retries_unreachable_and_busy_coordinators_only() {
        let p = Policy::ROUTER;
        assert_eq!(p.classify(Outcome::Unreachable), Decision::Next);
        assert_eq!(p.classify(Outcome::Answered(502)), Decision::Next);
        assert_eq!(p.classify(Outcome::Answered(503)), Decision::Next);
        assert_eq!(p.classify(Outcome::Answered(500)), Decision::Answer);
        assert_eq!(p.classify(Outcome::Answered(404)), Decision::Answer);
        assert_eq!(p.classify(Outcome::TimedOut), Decision::Fail);
    }

    #[test]
    fn the_coordinator_looks_further_only_for_sub_resources() {
        let get = Policy::coordinator("GET", "/abc");
        assert_eq!(get.classify(Outcome::Answered(404)), Decision::NextKeep);
        assert_eq!(get.classify(Outcome::Answered(503)), Decision::Answer);
        let post = Policy::coordinator("POST", "");
        assert_eq!(post.classify(Outcome::Answered(404)), Decision::Answer);
        assert_eq!(post.classify(Outcome::Unreachable), Decision::Next);
        assert_eq!(post.classify(Outcome::TimedOut), Decision::Fail);
    }
}
