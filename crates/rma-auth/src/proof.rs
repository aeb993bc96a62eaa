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

/// The header a node's requests carry beside the credential: `{unix_s}.{signature}` of
/// [`request_message`], so a credential copied off the wire or a disk cannot register a
/// machine of the thief's (a tunnel URL, say) on its own.
pub const PROOF_HEADER: &str = "x-rma-proof";

/// What a node signs for [`PROOF_HEADER`].
pub fn request_message(node_id: &str, unix_s: u64) -> Vec<u8> {
    format!("rma-request-v1\n{node_id}\n{unix_s}").into_bytes()
}

/// Checks a [`PROOF_HEADER`] value against the key a credential names, at `now`.
pub fn check_request(
    key: &crate::PublicKey,
    node_id: &str,
    header: Option<&str>,
    now: u64,
) -> Result<(), crate::AuthError> {
    let missing = || {
        crate::AuthError::Invalid(format!(
            "this needs a proof of the node's key ({PROOF_HEADER}: time.signature); rma nodes send it themselves"
        ))
    };
    let (stamp, sig) = header
        .ok_or_else(missing)?
        .split_once('.')
        .ok_or_else(missing)?;
    let stamp: u64 = stamp.trim().parse().map_err(|_| missing())?;
    if !fresh(stamp, now) {
        return Err(crate::AuthError::Invalid(
            "the proof's time is more than 5 minutes from this machine's clock; check the node's clock".into(),
        ));
    }
    key.verify(&request_message(node_id, stamp), sig)
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

    #[test]
    fn request_proofs_need_the_key_and_a_fresh_time() {
        let k = NodeKey::generate();
        let now = 10_000;
        let header = format!("{now}.{}", k.sign(&request_message("w1", now)));
        assert!(check_request(&k.public(), "w1", Some(&header), now + 10).is_ok());
        assert!(check_request(&k.public(), "w2", Some(&header), now).is_err());
        assert!(check_request(&k.public(), "w1", Some(&header), now + 3600).is_err());
        assert!(check_request(&NodeKey::generate().public(), "w1", Some(&header), now).is_err());
        for bad in [None, Some(""), Some("x.y"), Some("123"), Some(".")] {
            assert!(
                check_request(&k.public(), "w1", bad, now).is_err(),
                "{bad:?}"
            );
        }
    }
}
