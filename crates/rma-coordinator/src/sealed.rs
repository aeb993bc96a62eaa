//! Documents at rest: everything a coordinator sends to `store` and `cache` workers is sealed
//! with XChaCha20-Poly1305 under a key only the coordinator holds (derived from its node key),
//! and opened when it comes back. A storage host keeps ciphertext: it learns sizes, times and
//! which objects are equal, never a word of a letter; an object it alters fails to open.
//!
//! The nonce is derived from the plaintext (keyed BLAKE3), so the same document seals to the
//! same bytes: content addressing and deduplication still work, at the price of showing the
//! storage host that two uploads were the same document.
//!
//! Sealed object: `RMA1` ‖ nonce (24) ‖ AEAD( type length (2, big-endian) ‖ content type ‖
//! body ), associated data `rma-sealed-v1`.

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const MAGIC: &[u8; 4] = b"RMA1";
const AAD: &[u8] = b"rma-sealed-v1";
const NONCE_LEN: usize = 24;

/// Why a stored object did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the stored object failed its integrity check: the storage worker altered it, or another coordinator sealed it"
)]
pub(crate) struct OpenError;

/// Seals and opens stored objects with one coordinator's key.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer from a 32-byte secret (the coordinator derives it from its node key).
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Sealer {
            cipher: XChaCha20Poly1305::new(&secret.into()),
            nonce_key: blake3::derive_key("rma sealed nonce v1", &secret),
        }
    }

    /// Seals `body` and its content type.
    pub(crate) fn seal(&self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        let ct = content_type.unwrap_or("").as_bytes();
        let ct = &ct[..ct.len().min(u16::MAX as usize)];
        let mut plain = Vec::with_capacity(2 + ct.len() + body.len());
        plain.extend_from_slice(&(ct.len() as u16).to_be_bytes());
        plain.extend_from_slice(ct);
        plain.extend_from_slice(body);
        let digest = blake3::keyed_hash(&self.nonce_key, &plain);
        let nonce = XNonce::clone_from_slice(&digest.as_bytes()[..NONCE_LEN]);
        // Encryption in memory cannot fail for inputs under 256 GB.
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(4 + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Bytes::from(out)
    }

    /// Opens a sealed object: its content type (if it had one) and body.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<(Option<String>, Bytes), OpenError> {
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or(OpenError)?;
        if rest.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .map_err(|_| OpenError)?;
        let len = u16::from_be_bytes([
            *plain.first().ok_or(OpenError)?,
            *plain.get(1).ok_or(OpenError)?,
        ]) as usize;
        let ct = plain.get(2..2 + len).ok_or(OpenError)?;
        let ct = String::from_utf8(ct.to_vec()).map_err(|_| OpenError)?;
        let body = Bytes::copy_from_slice(&plain[2 + len..]);
        Ok(((!ct.is_empty()).then_some(ct), body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_objects_open_only_with_their_key_and_unaltered() {
        let s = Sealer::new([7; 32]);
        let letter = b"Dear Ms Smith, you owe \xc2\xa3187.45";
        let sealed = s.seal(Some("text/plain"), letter);
        assert!(
            !sealed.windows(5).any(|w| w == b"Smith"),
            "no plaintext in the sealed object"
        );
        assert_eq!(
            s.open(&sealed),
            Ok((Some("text/plain".into()), Bytes::from_static(letter)))
        );
        assert_eq!(
            sealed,
            s.seal(Some("text/plain"), letter),
            "same document, same bytes"
        );
        assert_ne!(sealed, s.seal(Some("text/plain"), b"another letter"));
        assert_eq!(Sealer::new([8; 32]).open(&sealed), Err(OpenError));
        let mut tampered = sealed.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(s.open(&tampered), Err(OpenError));
        for short in [&b""[..], b"RMA1", b"RMA1short", b"plain text"] {
            assert_eq!(s.open(short), Err(OpenError));
        }
        assert_eq!(s.open(&s.seal(None, b"")), Ok((None, Bytes::new())));
    }

    proptest::proptest! {
        #[test]
        fn opening_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let s = Sealer::new([1; 32]);
            let _ = s.open(&bytes);
            let mut framed = b"RMA1".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = s.open(&framed);
        }
    }
}
