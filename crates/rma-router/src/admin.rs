//! The admin token: made on the router's first start and written to `admin.token` (mode 0600)
//! beside its registry file. Admin views — the coordinator list, the topology with addresses,
//! `/metrics` — need it as `Authorization: Bearer {token}`; without it the topology is the
//! public, redacted view and the rest answer 401.

use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use rma_http::ApiError;

/// The file beside the registry `db` that holds the admin token.
pub(crate) fn token_path(db: &Path) -> PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("admin.token")
}

/// Whether the request carries the admin token.
pub(crate) fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| rma_auth::same_secret(given.trim().as_bytes(), token.as_bytes()))
}

/// 401 unless the request carries the admin token.
pub(crate) fn require(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    if is_admin(headers, token) {
        return Ok(());
    }
    Err(ApiError::unauthorized(
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            "the admin token is not valid"
        } else {
            "this needs the admin token (Authorization: Bearer …; the router wrote it to admin.token beside its --db)"
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_passes() {
        let mut h = HeaderMap::new();
        assert_eq!(require(&h, "t0k").expect_err("none").status, 401);
        h.insert("authorization", "Bearer nope".parse().expect("header"));
        assert_eq!(require(&h, "t0k").expect_err("wrong").status, 401);
        h.insert("authorization", "Bearer t0k".parse().expect("header"));
        assert!(require(&h, "t0k").is_ok());
    }
}
