//! Join tokens: what `rma invite` prints and `--join` takes. One string carrying where to
//! enrol (the router's URL) and a 256-bit secret the router keeps only a hash of, with the role,
//! services, expiry and uses it allows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::credential::random_hex;

/// Every join token starts with this, so a pasted credential or admin token is told apart.
const PREFIX: &str = "rmaj1_";

/// A join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The router to enrol at.
    #[serde(rename = "r")]
    pub router: String,
    /// The secret (64 hex digits).
    #[serde(rename = "s")]
    pub secret: String,
}

impl JoinToken {
    /// A new token for the router at `router`.
    pub fn new(router: &str) -> Self {
        JoinToken {
            router: router.trim_end_matches('/').to_owned(),
            secret: random_hex(32),
        }
    }

    /// The one string to hand over.
    pub fn encode(&self) -> String {
        // A struct of two strings always serialises.
        format!(
            "{PREFIX}{}",
            B64.encode(serde_json::to_vec(self).unwrap_or_default())
        )
    }

    /// Reads a token made by [`JoinToken::encode`].
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let bad = |why: &str| {
            AuthError::Invalid(format!(
                "not a join token ({why}); make one with `rma invite --router URL --role …`"
            ))
        };
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with rmaj1_"))?;
        let raw = B64.decode(body).map_err(|_| bad("bad base64"))?;
        let token: JoinToken = serde_json::from_slice(&raw).map_err(|_| bad("bad contents"))?;
        if token.secret.len() != 64 || !token.secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("bad secret"));
        }
        Ok(token)
    }

    /// What the router stores instead of the secret.
    pub fn secret_hash(secret: &str) -> String {
        blake3::hash(secret.as_bytes()).to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = JoinToken::new("https://router.example/");
        assert_eq!(t.router, "https://router.example");
        let s = t.encode();
        assert!(s.starts_with("rmaj1_"));
        assert_eq!(JoinToken::parse(&format!(" {s}\n")).expect("parses"), t);
        for bad in ["", "rmaj1_", "rmaj1_!!", "abc", "rmaj1_e30"] {
            let e = JoinToken::parse(bad).expect_err(bad);
            assert_eq!(e.status(), 401, "{bad}");
        }
        assert_ne!(JoinToken::secret_hash(&t.secret), t.secret);
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_text_never_panics(text in ".{0,200}") {
            let _ = JoinToken::parse(&text);
            let _ = JoinToken::parse(&format!("rmaj1_{text}"));
        }
    }
}
