//! Proofs that a node holds the key its credential names: what exactly it signs.
//!
//! Each message names its purpose and everything it binds, so a signature made for one thing
//! is worth nothing for another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// How far a renewal's timestamp may be from the router's clock.
pub const RENEW_SKEW_S: u64 = 300;

/// A fresh link challenge: 256 random bits, base64url.
pub fn nonce() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// What a worker signs to open a link: the coordinator that challenged it (a rogue coordinator
/// cannot relay another's challenge: the worker checks the name is the one it registered
/// with), the nonce, and its own id.
pub fn link_message(coordinator_id: &str, nonce: &str, worker_id: &str) -> Vec<u8> {
    format!("rma-link-v2\n{coordinator_id}\n{nonce}\n{worker_id}").into_bytes()
}

/// What a node signs to renew its credential at `unix_s`.
pub fn renew_message(node_id: &str, unix_s: u64) -> Vec<u8> {
    format!("rma-renew-v1\n{node_id}\n{unix_s}").into_bytes()
}

/// Whether a renewal stamped `stamp` is fresh at `now`.
pub fn fresh(stamp: u64, now: u64) -> bool {
    stamp.abs_diff(now) <= RENEW_SKEW_S
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeKey;

    #[test]
    fn a_signature_binds_its_purpose_and_parties() {
        let k = NodeKey::generate();
        let n = nonce();
        assert_ne!(n, nonce());
        let sig = k.sign(&link_message("c1", &n, "w1"));
        assert!(
            k.public()
                .verify(&link_message("c1", &n, "w1"), &sig)
                .is_ok()
        );
        assert!(
            k.public()
                .verify(&link_message("c2", &n, "w1"), &sig)
                .is_err()
        );
        assert!(
            k.public()
                .verify(&link_message("c1", &n, "w2"), &sig)
                .is_err()
        );
        assert!(k.public().verify(&renew_message("w1", 5), &sig).is_err());
        assert!(fresh(1000, 1200) && !fresh(1000, 1400));
    }
}
