//! Credentials: JWTs signed with the federation's Ed25519 key (`alg: EdDSA`), so a router,
//! a coordinator or a Cloudflare Worker (WebCrypto) checks them with the public key alone.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{AuthError, NodeKey, PublicKey};

/// The `iss` of every credential.
pub const ISSUER: &str = "rma";

/// How long a credential lives [24 h]; nodes renew at two thirds of it.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a router's own credential lives ([`FederationKey::router_credential`]); the router
/// signs a new one two thirds in.
pub const ROUTER_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);

/// Clock skew tolerated between nodes when checking `exp`.
const LEEWAY_S: u64 = 60;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a node is in the federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Registers at the router, holds workers, dispatches.
    Coordinator,
    /// Runs services for a coordinator.
    Worker,
    /// An organisation that submits documents (`rma router --clients keyed`).
    Client,
    /// A router, which signs its own credential with the federation key and presents it to the
    /// coordinators it forwards service requests to ([`FederationKey::router_credential`]).
    /// Never issued by an invite.
    Router,
}

impl Role {
    /// `coordinator`, `worker`, `client` or `router`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::Client => "client",
            Role::Router => "router",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "coordinator" => Ok(Role::Coordinator),
            "worker" => Ok(Role::Worker),
            "client" => Ok(Role::Client),
            // What a user may name (invites): a router's credential is made by the router.
            "router" => Err(
                "a router signs its own credential with the federation key; invites are for coordinator, worker or client".to_owned(),
            ),
            other => Err(format!(
                "{other:?} is not a role (coordinator, worker or client)"
            )),
        }
    }
}

/// What a credential says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The node's id.
    pub sub: String,
    /// Its role.
    pub role: Role,
    /// The services it may run (workers) or hold (coordinators); `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Who runs the node (an invite's `--owner`): spot checks ask a worker of another owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The public key the node must prove it holds (RFC 7800 calls this confirmation).
    pub cnf: PublicKey,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Unique id of this credential.
    pub jti: String,
    /// Who the credential is for, when only one may take it: a router's credential names the
    /// coordinator it is sent to, so one captured there is no use anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// Claims of a credential for `sub` issued now, valid for `ttl`.
    fn new(sub: &str, role: Role, cnf: PublicKey, ttl: Duration) -> Self {
        let iat = unix_now();
        Claims {
            iss: ISSUER.to_owned(),
            sub: sub.to_owned(),
            role,
            services: None,
            owner: None,
            cnf,
            iat,
            exp: iat + ttl.as_secs().max(1),
            jti: random_hex(16),
            aud: None,
        }
    }

    /// Who runs the node: its owner, else the node itself.
    pub fn owner(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.sub)
    }

    /// Whether the credential lets its node run `service`.
    pub fn allows(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == service))
    }

    /// When the node should renew: two thirds into the credential's life.
    pub fn renew_at(&self) -> u64 {
        self.iat + self.exp.saturating_sub(self.iat) * 2 / 3
    }
}

/// A credential: the signed token and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The JWT, as sent in `Authorization: Bearer …`.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// The federation's signing key, held by the router.
#[derive(Clone)]
pub struct FederationKey {
    key: NodeKey,
    encoding: EncodingKey,
    verifier: Verifier,
}

impl std::fmt::Debug for FederationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FederationKey({})", self.key.public())
    }
}

impl FederationKey {
    /// A federation key from a node key (tests keep one in memory).
    pub fn from_key(key: NodeKey) -> Self {
        let encoding = EncodingKey::from_ed_der(&key.pkcs8_der());
        let verifier = Verifier::new(&key.public());
        FederationKey {
            key,
            encoding,
            verifier,
        }
    }

    /// A fresh federation key.
    pub fn generate() -> Self {
        Self::from_key(NodeKey::generate())
    }

    /// Reads the key at `path`, which must exist: a second router of a federation is given a
    /// copy of the first one's key.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        NodeKey::load(path).map(Self::from_key)
    }

    /// Reads the key at `path` or makes it (0600); returns it and whether it was made now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), AuthError> {
        let (key, made) = NodeKey::load_or_create(path)?;
        Ok((Self::from_key(key), made))
    }

    /// Its public half, which every member keeps to check credentials.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// Checks credentials this key issued.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// A whole identity issued by this key directly, with a fresh node key, kept in memory
    /// (tests, and in-process federations whose router holds the key).
    pub fn identity(
        &self,
        node_id: &str,
        role: Role,
        services: Option<Vec<String>>,
    ) -> Result<crate::Identity, AuthError> {
        self.identity_of(node_id, role, services, None)
    }

    /// [`FederationKey::identity`] for a node run by `owner`.
    pub fn identity_of(
        &self,
        node_id: &str,
        role: Role,
        services: Option<Vec<String>>,
        owner: Option<String>,
    ) -> Result<crate::Identity, AuthError> {
        let key = NodeKey::generate();
        let c = self.issue(
            node_id,
            role,
            services,
            owner,
            &key.public(),
            CREDENTIAL_TTL,
        )?;
        crate::Identity::new(key, &c.token, &self.public(), None)
    }

    /// The router's own credential for coordinator `audience`, as `router_id`: role
    /// [`Role::Router`], `aud` the coordinator, the federation's public key as its key, an hour
    /// of life ([`ROUTER_CREDENTIAL_TTL`]). The router presents it to that coordinator
    /// (`x-rma-router-credential`) so that it takes service requests from it; another
    /// coordinator refuses it.
    pub fn router_credential(
        &self,
        router_id: &str,
        audience: &str,
    ) -> Result<Credential, AuthError> {
        let mut claims = Claims::new(
            router_id,
            Role::Router,
            self.public(),
            ROUTER_CREDENTIAL_TTL,
        );
        claims.aud = Some(audience.to_owned());
        self.sign(claims)
    }

    fn sign(&self, claims: Claims) -> Result<Credential, AuthError> {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(format!("cannot sign a credential: {e}")))?;
        Ok(Credential { token, claims })
    }

    /// Issues a credential for node `node_id` holding `node_key`, valid for `ttl`.
    pub fn issue(
        &self,
        node_id: &str,
        role: Role,
        services: Option<Vec<String>>,
        owner: Option<String>,
        node_key: &PublicKey,
        ttl: Duration,
    ) -> Result<Credential, AuthError> {
        let mut claims = Claims::new(node_id, role, node_key.clone(), ttl);
        claims.services = services;
        claims.owner = owner;
        self.sign(claims)
    }
}

/// Checks credentials with the federation's public key; no call to the router.
#[derive(Clone)]
pub struct Verifier {
    public: PublicKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({})", self.public)
    }
}

impl Verifier {
    /// A verifier of credentials signed by `federation`.
    pub fn new(federation: &PublicKey) -> Self {
        // A parsed PublicKey is 32 bytes, which is what the EdDSA verifier slices.
        let decoding = DecodingKey::from_ed_der(&federation.to_bytes().unwrap_or([0; 32]));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_S;
        validation.set_issuer(&[ISSUER]);
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        validation.validate_aud = false;
        Verifier {
            public: federation.clone(),
            decoding,
            validation,
        }
    }

    /// The federation's public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The claims of a credential this federation signed and that has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                AuthError::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        "the credential has expired; the node renews it at the router by itself, or enrols again with a new join token".to_owned()
                    }
                    ErrorKind::InvalidSignature => {
                        "the credential is not signed by this federation".to_owned()
                    }
                    _ => format!("the credential is not valid: {e}"),
                })
            })
    }

    /// [`Verifier::verify`], and 403 unless the credential's role is `role`.
    pub fn verify_as(&self, token: &str, role: Role) -> Result<Claims, AuthError> {
        let claims = self.verify(token)?;
        if claims.role != role {
            return Err(AuthError::Forbidden(format!(
                "this needs a {role} credential; {} holds a {} credential",
                claims.sub, claims.role
            )));
        }
        Ok(claims)
    }
}

/// `bytes` random bytes as hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_verify_with_the_federation_key_only() {
        let fed = FederationKey::generate();
        let node = NodeKey::generate();
        let c = fed
            .issue(
                "w1",
                Role::Worker,
                Some(vec!["ocr".into()]),
                None,
                &node.public(),
                CREDENTIAL_TTL,
            )
            .expect("issued");
        let claims = fed.verifier().verify(&c.token).expect("verifies");
        assert_eq!(claims, c.claims);
        assert_eq!(claims.sub, "w1");
        assert!(claims.allows("ocr") && !claims.allows("store"));
        assert_eq!(claims.renew_at(), claims.iat + 16 * 3600);
        // Checked with the public key alone.
        let v = Verifier::new(&fed.public());
        assert!(v.verify_as(&c.token, Role::Worker).is_ok());
        let e = v.verify_as(&c.token, Role::Coordinator).expect_err("role");
        assert_eq!(e.status(), 403);

        // Another federation's key, a tampered token, garbage: 401.
        let other = FederationKey::generate();
        assert_eq!(
            other
                .verifier()
                .verify(&c.token)
                .expect_err("other")
                .status(),
            401
        );
        let mut parts: Vec<&str> = c.token.split('.').collect();
        let forged_claims = {
            use base64::Engine;
            let mut cl = c.claims.clone();
            cl.role = Role::Coordinator;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&cl).expect("json"))
        };
        parts[1] = &forged_claims;
        assert!(v.verify(&parts.join(".")).is_err(), "forged claims");
        assert!(v.verify("").is_err());
        assert!(v.verify("a.b.c").is_err());
    }

    #[test]
    fn expired_credentials_are_refused() {
        let fed = FederationKey::generate();
        let node = NodeKey::generate();
        let mut c = fed
            .issue(
                "w1",
                Role::Worker,
                None,
                None,
                &node.public(),
                CREDENTIAL_TTL,
            )
            .expect("issued");
        c.claims.iat -= 2 * 24 * 3600;
        c.claims.exp = c.claims.iat + 24 * 3600;
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &c.claims, &fed.encoding)
            .expect("sign");
        let e = fed.verifier().verify(&token).expect_err("expired");
        assert!(e.to_string().contains("expired"), "{e}");
        assert_eq!(e.status(), 401);
    }

    #[test]
    fn roles_parse() {
        assert_eq!("Worker".parse::<Role>(), Ok(Role::Worker));
        assert!("admin".parse::<Role>().is_err());
        // Nobody is invited as a router.
        let e = "router".parse::<Role>().expect_err("not invitable");
        assert!(e.contains("signs its own"), "{e}");
    }

    #[test]
    fn a_router_credential_is_the_federation_s_and_names_its_role() {
        let fed = FederationKey::generate();
        let c = fed.router_credential("router-1", "coord-a").expect("signs");
        let claims = fed
            .verifier()
            .verify_as(&c.token, Role::Router)
            .expect("verifies");
        assert_eq!(
            (claims.sub.as_str(), claims.role, claims.aud.as_deref()),
            ("router-1", Role::Router, Some("coord-a"))
        );
        assert_eq!(claims.cnf, fed.public());
        assert_eq!(claims.exp - claims.iat, ROUTER_CREDENTIAL_TTL.as_secs());
        // Other credentials name no audience.
        let node = fed.identity("w1", Role::Worker, None).expect("identity");
        let w = fed.verifier().verify(&node.bearer()).expect("verifies");
        assert_eq!(w.aud, None);
        // Another federation's router is a stranger.
        let other = FederationKey::generate()
            .router_credential("router-1", "coord-a")
            .expect("signs");
        assert!(fed.verifier().verify(&other.token).is_err());
    }

    proptest::proptest! {
        #[test]
        fn verifying_any_text_never_panics(token in ".{0,300}") {
            let fed = FederationKey::generate();
            proptest::prop_assert!(fed.verifier().verify(&token).is_err());
        }

        #[test]
        fn verifying_three_base64_parts_never_panics(a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,100}") {
            let fed = FederationKey::generate();
            let token = format!("{a}.{b}.{c}");
            proptest::prop_assert!(fed.verifier().verify(&token).is_err());
        }
    }
}
