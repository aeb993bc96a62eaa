//! Who may take part in an rma federation, and how each side checks it.
//!
//! Modelled on NATS (an operator key signs what members may do, checked offline) and Nomad (a
//! one-time introduction token is exchanged for a node identity that is renewed before it
//! expires):
//!
//! - every node makes its own Ed25519 [`NodeKey`] on first start (a 0600 file in its data dir);
//! - the router holds the federation's [`FederationKey`] (made on first start beside its
//!   registry file) and, in exchange for a [`JoinToken`] made by `rma invite`, issues
//!   [`Credential`]s: EdDSA-signed JWTs naming the node, its [`Role`], the services it may run,
//!   and the public key it must prove it holds; they live 24 h and are renewed at two thirds of
//!   their life;
//! - anyone with the federation's public key checks a credential without asking the router
//!   ([`Verifier`]); on the link a worker also signs a fresh nonce ([`proof`]), so a stolen
//!   credential alone is useless;
//! - an [`Identity`] is what a node keeps in its data dir: key, credential and the federation's
//!   public key.
#![deny(clippy::unwrap_used)]

mod credential;
mod error;
mod identity;
mod join;
mod key;
pub mod proof;

pub use credential::{
    CREDENTIAL_TTL, Claims, Credential, FederationKey, ISSUER, ROUTER_CREDENTIAL_TTL, Role,
    Verifier, unix_now,
};
pub use error::AuthError;
pub use identity::Identity;
pub use join::JoinToken;
pub use key::{NodeKey, PublicKey, load_or_create_secret, write_private};

/// Nodes revoked while their credentials may still be valid: the router's list, and each
/// coordinator's copy of it (refreshed by every heartbeat answer).
#[derive(Debug, Clone, Default)]
pub struct Revoked(std::sync::Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>);

impl Revoked {
    /// Whether `node_id` is revoked.
    pub fn contains(&self, node_id: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(node_id)
    }

    /// Adds ids; returns those that were not there yet.
    pub fn extend(&self, ids: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        ids.into_iter()
            .filter(|id| set.insert(id.clone()))
            .collect()
    }

    /// Every id, sorted.
    pub fn list(&self) -> Vec<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// The bearer token in an `Authorization` header value (`Bearer …`), if there is one.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two secrets without stopping at the first difference, so timing does not leak them.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
