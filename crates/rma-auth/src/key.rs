//! Ed25519 keys: a node's own ([`NodeKey`], kept in a 0600 file) and the public half others
//! check its signatures with ([`PublicKey`], base64url of the 32 bytes, as in a JWK's `x`).

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// A node's Ed25519 signing key.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half.
        write!(f, "NodeKey({})", self.public())
    }
}

impl NodeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        NodeKey(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// Reads the key at `path` (64 hex digits of its seed); a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::io(path, e))?;
        let seed = decode_hex32(text.trim())
            .ok_or_else(|| AuthError::corrupt(path, "not an rma key (64 hex digits)"))?;
        Ok(NodeKey(SigningKey::from_bytes(&seed)))
    }

    /// Reads the key at `path` (64 hex digits of its seed), or makes one and writes it there,
    /// readable by its owner only. Returns it and whether it was made now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), AuthError> {
        match std::fs::metadata(path) {
            Ok(_) => return Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AuthError::io(path, e)),
        }
        let key = Self::generate();
        let hex: String = key
            .0
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write_private(path, format!("{hex}\n").as_bytes()).map_err(|e| AuthError::io(path, e))?;
        Ok((key, true))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(B64.encode(self.0.verifying_key().to_bytes()))
    }

    /// Signs `message`; the signature as base64url.
    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.0.sign(message).to_bytes())
    }

    /// A secret for `context` derived from this key (BLAKE3's key derivation): the same key
    /// and context always give the same secret, and it tells nothing about the key.
    pub fn derive_secret(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0.to_bytes())
    }

    /// PKCS#8 DER of the key, as JWT libraries take it.
    pub(crate) fn pkcs8_der(&self) -> Vec<u8> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        // Encoding a valid 32-byte key cannot fail.
        self.0
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }
}

/// The public half of an Ed25519 key, base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(String);

impl PublicKey {
    /// Checks that `text` is base64url of a valid Ed25519 public key.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let k = PublicKey(text.trim().to_owned());
        k.verifying_key()?;
        Ok(k)
    }

    /// base64url of the 32 bytes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> Result<[u8; 32], AuthError> {
        let raw = B64
            .decode(&self.0)
            .map_err(|_| AuthError::Invalid("public key is not base64url".into()))?;
        raw.try_into()
            .map_err(|_| AuthError::Invalid("public key is not 32 bytes".into()))
    }

    fn verifying_key(&self) -> Result<VerifyingKey, AuthError> {
        VerifyingKey::from_bytes(&self.to_bytes()?)
            .map_err(|_| AuthError::Invalid("not an Ed25519 public key".into()))
    }

    /// Whether `signature` (base64url) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(), AuthError> {
        let bad = || AuthError::Invalid("the signature does not verify".into());
        let raw = B64.decode(signature.trim()).map_err(|_| bad())?;
        let sig = Signature::from_slice(&raw).map_err(|_| bad())?;
        self.verifying_key()?
            .verify(message, &sig)
            .map_err(|_| bad())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = AuthError;
    fn try_from(s: String) -> Result<Self, AuthError> {
        PublicKey::parse(&s)
    }
}

impl From<PublicKey> for String {
    fn from(k: PublicKey) -> String {
        k.0
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads the secret token in `path` (trimmed), or makes one (256 random bits, hex) and writes it
/// there with [`write_private`]. Returns it and whether it was made now. The admin token, a
/// coordinator's metrics token.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = crate::credential::random_hex(32);
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok((token, true))
}

/// Writes `bytes` to `path` readable and writable by its owner only (0600 on Unix), through
/// a temporary file renamed into place so a crash never leaves half a key.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/node.key");
        let (a, made) = NodeKey::load_or_create(&path).expect("made");
        assert!(made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, made) = NodeKey::load_or_create(&path).expect("kept");
        assert!(!made);
        assert_eq!(a.public(), b.public());
        assert!(!format!("{a:?}").contains(&std::fs::read_to_string(&path).expect("read")[..8]));

        std::fs::write(&path, "not a key").expect("write");
        let e = NodeKey::load_or_create(&path).expect_err("corrupt");
        assert!(e.to_string().contains("not an rma key"), "{e}");
    }

    #[test]
    fn a_secret_is_made_once_private_and_then_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        let (a, made) = load_or_create_secret(&path).expect("made");
        assert!(made && a.len() == 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .ends_with('\n')
        );
        let (b, made) = load_or_create_secret(&path).expect("kept");
        assert!(!made);
        assert_eq!(a, b);
    }

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let k = NodeKey::generate();
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig).is_ok());
        assert!(k.public().verify(b"hellO", &sig).is_err());
        assert!(NodeKey::generate().public().verify(b"hello", &sig).is_err());
        assert!(k.public().verify(b"hello", "not base64!").is_err());
        assert!(k.public().verify(b"hello", "").is_err());
        assert!(PublicKey::parse("short").is_err());
        assert!(PublicKey::parse(k.public().as_str()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_public_key_or_signature_never_panics(text in ".{0,100}", sig in ".{0,120}") {
            let _ = PublicKey::parse(&text);
            let k = NodeKey::generate();
            let _ = k.public().verify(text.as_bytes(), &sig);
        }
    }
}
