//! Why a credential, a token or a key was refused.

use std::path::PathBuf;

/// Why something was refused; [`AuthError::status`] is the HTTP status it answers with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential where one is needed (401).
    #[error("{0}")]
    Missing(String),
    /// A credential, token or signature that does not verify (401).
    #[error("{0}")]
    Invalid(String),
    /// A valid credential that may not do this: wrong role, revoked, another node's (403).
    #[error("{0}")]
    Forbidden(String),
    /// A key or identity file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key or identity file holds something else.
    #[error("{path}: {message}")]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl AuthError {
    /// 401 for a missing or invalid credential, 403 for one that may not do this, 500 else.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing(_) | AuthError::Invalid(_) => 401,
            AuthError::Forbidden(_) => 403,
            AuthError::Io { .. } | AuthError::Corrupt { .. } => 500,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        AuthError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, message: impl Into<String>) -> Self {
        AuthError::Corrupt {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
