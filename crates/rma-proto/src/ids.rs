//! Validation of the ids that name workers and coordinators.
//!
//! Ids travel in URLs, headers and log lines, so they are kept to a safe alphabet.

/// Longest id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// The id holds a character outside `[A-Za-z0-9._-]`.
    #[error("id {0:?} holds a character outside [A-Za-z0-9._-]")]
    BadChar(String),
}

/// Checks that `id` is 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9._-]`.
pub fn validate(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(IdError::BadChar(id.to_owned()));
    }
    Ok(())
}

/// Turns free text (a hostname, say) into a valid id fragment: other characters become `-`.
pub fn sanitize(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_ID_LEN / 2)
        .collect();
    if s.is_empty() {
        "unknown".to_owned()
    } else {
        s
    }
}

/// A job id for a job held by `coordinator`: `{coordinator}-j{32 hex}`. The 128 random bits
/// are the job's only protection: whoever knows the id may read the job and its result, so
/// `random` must come from a cryptographic source.
pub fn job_id(coordinator: &str, random: u128) -> String {
    format!("{coordinator}-j{random:032x}")
}

/// Which coordinator holds a job, read from its id; `None` when it is not a job id. Ids with
/// 16 hex digits (64 bits, before 128-bit ids) are still read, so jobs made before an upgrade
/// stay readable for their retention time.
pub fn job_coordinator(job_id: &str) -> Option<&str> {
    let (coord, tail) = job_id.rsplit_once("-j")?;
    (matches!(tail.len(), 16 | 32)
        && tail.bytes().all(|b| b.is_ascii_hexdigit())
        && validate(coord).is_ok())
    .then_some(coord)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_the_rest() {
        assert_eq!(validate("worker-nas.home_1"), Ok(()));
        assert_eq!(validate(""), Err(IdError::Empty));
        assert!(matches!(validate("a/b"), Err(IdError::BadChar(_))));
        assert!(matches!(validate("a b"), Err(IdError::BadChar(_))));
        assert_eq!(validate(&"x".repeat(129)), Err(IdError::TooLong));
    }

    #[test]
    fn job_ids_name_their_coordinator() {
        let id = job_id("coord-a", 0xdead_beef);
        assert_eq!(id, "coord-a-j000000000000000000000000deadbeef");
        assert_eq!(job_coordinator(&id), Some("coord-a"));
        assert_eq!(job_coordinator("c-j1-j0123456789abcdef"), Some("c-j1"));
        assert_eq!(job_coordinator("c-jxyz"), None);
        assert_eq!(job_coordinator("-j0123456789abcdef"), None);
        assert_eq!(job_coordinator("a/b-j0123456789abcdef"), None);
    }

    proptest::proptest! {
        /// Job ids come from URLs: any text is a job id or not, never a panic.
        #[test]
        fn reading_any_job_id_never_panics(text in ".{0,200}") {
            let _ = job_coordinator(&text);
            let _ = validate(&text);
            proptest::prop_assert!(validate(&sanitize(&text)).is_ok());
        }

        #[test]
        fn every_made_job_id_is_read_back(coord in "[A-Za-z0-9._-]{1,60}", random in proptest::num::u128::ANY) {
            let id = job_id(&coord, random);
            proptest::prop_assert_eq!(job_coordinator(&id), Some(coord.as_str()));
        }
    }

    #[test]
    fn sanitize_makes_valid_ids() {
        assert_eq!(sanitize("my pc/é"), "my-pc--");
        assert_eq!(sanitize(""), "unknown");
        assert_eq!(validate(&sanitize("ünïcode host")), Ok(()));
    }
}
