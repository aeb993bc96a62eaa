//! What a node keeps in its data dir: `node.key` (its Ed25519 key) and `identity.json` (its id,
//! role, current credential, the federation's public key and the router it renews at), both
//! readable by its owner only.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::{AuthError, Claims, Credential, NodeKey, PublicKey, Role, Verifier, proof, unix_now};

const KEY_FILE: &str = "node.key";
const IDENTITY_FILE: &str = "identity.json";

#[derive(Serialize, Deserialize)]
struct Stored {
    node_id: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    router_url: Option<String>,
    federation_key: PublicKey,
    credential: String,
}

/// A node's identity: key, credential (renewed in place), and the federation it belongs to.
#[derive(Debug)]
pub struct Identity {
    key: NodeKey,
    verifier: Verifier,
    router_url: Option<String>,
    credential: RwLock<Credential>,
    dir: Option<PathBuf>,
}

impl Identity {
    /// An identity from a credential the federation issued for `key`: checks that the
    /// federation signed it, that it has not expired and that it names `key`.
    pub fn new(
        key: NodeKey,
        credential: &str,
        federation_key: &PublicKey,
        router_url: Option<String>,
    ) -> Result<Self, AuthError> {
        let verifier = Verifier::new(federation_key);
        let claims = verifier.verify(credential)?;
        if claims.cnf != key.public() {
            return Err(AuthError::Invalid(
                "the credential names another key than this node's".into(),
            ));
        }
        Ok(Identity {
            key,
            verifier,
            router_url,
            credential: RwLock::new(Credential {
                token: credential.trim().to_owned(),
                claims,
            }),
            dir: None,
        })
    }

    /// The key file in a data dir, made (0600) when absent.
    pub fn node_key(dir: &Path) -> Result<NodeKey, AuthError> {
        Ok(NodeKey::load_or_create(&dir.join(KEY_FILE))?.0)
    }

    /// The identity kept in `dir`, if there is one. Its credential may have expired: the
    /// router renews an expired credential of a node that is not revoked, on a signature of
    /// its key.
    pub fn load(dir: &Path) -> Result<Option<Self>, AuthError> {
        let path = dir.join(IDENTITY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AuthError::io(&path, e)),
        };
        let stored: Stored = serde_json::from_str(&text)
            .map_err(|e| AuthError::corrupt(&path, format!("not an rma identity: {e}")))?;
        let key = Self::node_key(dir)?;
        let verifier = Verifier::new(&stored.federation_key);
        // Read without checking expiry: an old credential still names the node for renewal.
        let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(&stored.credential)
            .map(|d| d.claims)
            .map_err(|e| AuthError::corrupt(&path, format!("bad credential: {e}")))?;
        if claims.cnf != key.public() || claims.sub != stored.node_id || claims.role != stored.role
        {
            return Err(AuthError::corrupt(
                &path,
                "the credential does not match node.key; remove the data dir's identity.json and enrol again",
            ));
        }
        Ok(Some(Identity {
            key,
            verifier,
            router_url: stored.router_url,
            credential: RwLock::new(Credential {
                token: stored.credential,
                claims,
            }),
            dir: Some(dir.to_owned()),
        }))
    }

    /// Keeps this identity in `dir` from now on (written at once and on every renewal).
    pub fn persist_in(mut self, dir: &Path) -> Result<Self, AuthError> {
        self.dir = Some(dir.to_owned());
        self.save()?;
        Ok(self)
    }

    fn save(&self) -> Result<(), AuthError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let c = self.credential();
        let stored = Stored {
            node_id: c.claims.sub.clone(),
            role: c.claims.role,
            router_url: self.router_url.clone(),
            federation_key: self.verifier.public().clone(),
            credential: c.token,
        };
        let path = dir.join(IDENTITY_FILE);
        let json = serde_json::to_vec_pretty(&stored).unwrap_or_default();
        crate::write_private(&path, &json).map_err(|e| AuthError::io(&path, e))
    }

    /// The node's id.
    pub fn node_id(&self) -> String {
        self.credential().claims.sub
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.credential().claims.role
    }

    /// The current credential.
    pub fn credential(&self) -> Credential {
        self.credential
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current credential's token, for `Authorization: Bearer …`.
    pub fn bearer(&self) -> String {
        self.credential().token
    }

    /// Checks credentials of other members.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The router this node renews at.
    pub fn router_url(&self) -> Option<&str> {
        self.router_url.as_deref()
    }

    /// A secret for `context` derived from the node's key (a coordinator's sealing key).
    pub fn derive_secret(&self, context: &str) -> [u8; 32] {
        self.key.derive_secret(context)
    }

    /// Signs a link challenge.
    pub fn sign_link(&self, coordinator_id: &str, nonce: &str) -> String {
        self.key
            .sign(&proof::link_message(coordinator_id, nonce, &self.node_id()))
    }

    /// The value of [`proof::PROOF_HEADER`] for a request sent now.
    pub fn request_proof(&self) -> String {
        let now = unix_now();
        format!(
            "{now}.{}",
            self.key.sign(&proof::request_message(&self.node_id(), now))
        )
    }

    /// A renewal request signed now: `(node_id, unix seconds, signature)`.
    pub fn renewal_proof(&self) -> (String, u64, String) {
        let id = self.node_id();
        let now = unix_now();
        let sig = self.key.sign(&proof::renew_message(&id, now));
        (id, now, sig)
    }

    /// Seconds until renewal is due (0: now).
    pub fn renew_in(&self) -> u64 {
        self.credential()
            .claims
            .renew_at()
            .saturating_sub(unix_now())
    }

    /// Takes a renewed credential: it must verify and name this node, role and key.
    pub fn replace(&self, token: &str) -> Result<(), AuthError> {
        let claims = self.verifier.verify(token)?;
        let current = self.credential();
        if claims.sub != current.claims.sub
            || claims.role != current.claims.role
            || claims.cnf != self.key.public()
        {
            return Err(AuthError::Invalid(
                "the renewed credential names another node".into(),
            ));
        }
        *self.credential.write().unwrap_or_else(|p| p.into_inner()) = Credential {
            token: token.trim().to_owned(),
            claims,
        };
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CREDENTIAL_TTL, FederationKey};

    #[test]
    fn an_identity_is_kept_renewed_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fed = FederationKey::generate();
        let key = Identity::node_key(dir.path()).expect("key");
        let c = fed
            .issue(
                "w1",
                Role::Worker,
                None,
                None,
                &key.public(),
                CREDENTIAL_TTL,
            )
            .expect("issue");
        let id = Identity::new(
            key.clone(),
            &c.token,
            &fed.public(),
            Some("http://r".into()),
        )
        .expect("identity")
        .persist_in(dir.path())
        .expect("saved");
        assert_eq!(id.node_id(), "w1");
        assert!(id.renew_in() > 15 * 3600);

        let c2 = fed
            .issue(
                "w1",
                Role::Worker,
                None,
                None,
                &key.public(),
                CREDENTIAL_TTL,
            )
            .expect("issue");
        id.replace(&c2.token).expect("renewed");
        let back = Identity::load(dir.path()).expect("load").expect("there");
        assert_eq!(back.bearer(), c2.token);
        assert_eq!(back.router_url(), Some("http://r"));

        // A credential for another node or key is refused.
        let other = fed
            .issue(
                "w2",
                Role::Worker,
                None,
                None,
                &key.public(),
                CREDENTIAL_TTL,
            )
            .expect("issue");
        assert!(id.replace(&other.token).is_err());
        let stranger = NodeKey::generate();
        assert!(Identity::new(stranger, &c.token, &fed.public(), None).is_err());
        assert!(
            Identity::load(&dir.path().join("none"))
                .expect("ok")
                .is_none()
        );
    }
}
