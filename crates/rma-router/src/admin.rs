//! The admin token: made on the router's first start and written to `admin.token` (mode 0600)
//! beside its registry file. Admin views — the coordinator list, the topology with addresses,
//! `/metrics` — need it as `Authorization: Bearer {token}`; without it the topology is the
//! public, redacted view and the rest answer 401.

use std::io::Write;
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

/// Reads the admin token from `path`, or makes one (256 random bits, hex) and writes it there,
/// readable by its owner only. Returns the token and whether it was made now.
pub(crate) fn load_or_create(path: &Path) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok((token, true))
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the admin token.
pub(crate) fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
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
    fn the_token_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = token_path(&dir.path().join("router.db"));
        let (a, made) = load_or_create(&path).expect("made");
        assert!(made && a.len() == 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, made) = load_or_create(&path).expect("kept");
        assert!(!made);
        assert_eq!(a, b);
    }

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
