//! Membership checks at the edge of every handler that takes a credential.

use axum::http::HeaderMap;
use rma_auth::{Claims, Revoked, Role, Verifier};

use crate::ApiError;

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    rma_auth::bearer(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The claims of the request's credential: 401 without one or with one that does not verify,
/// 403 when it is for another role or its node is revoked.
pub fn member(
    verifier: &Verifier,
    revoked: &Revoked,
    headers: &HeaderMap,
    role: Role,
) -> Result<Claims, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized(format!(
            "this needs a {role} credential (Authorization: Bearer …); enrol with `rma {role} --join TOKEN`"
        ))
    })?;
    let claims = verifier
        .verify_as(token, role)
        .map_err(|e| ApiError::from_auth(&e))?;
    if revoked.contains(&claims.sub) {
        return Err(ApiError::forbidden(format!(
            "{role} {} has been revoked",
            claims.sub
        )));
    }
    Ok(claims)
}

/// Credentials already verified, so that a caller presenting the same token on every request
/// (a router's credential, a client key) costs a map look-up instead of an Ed25519
/// verification. A token is answered from here until its `exp`; after that it is verified
/// again (and refused, past the verifier's leeway). At most [`VerifiedTokens::MAX`] are kept;
/// when full, the map starts over.
#[derive(Debug, Default)]
pub struct VerifiedTokens(
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Claims>>>,
);

impl VerifiedTokens {
    /// Tokens kept at most.
    pub const MAX: usize = 1024;

    /// The claims of `token`, from the map or verified now.
    pub fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Result<std::sync::Arc<Claims>, rma_auth::AuthError> {
        let now = rma_auth::unix_now();
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = lock().get(token).filter(|c| now <= c.exp) {
            return Ok(c.clone());
        }
        let claims = std::sync::Arc::new(verifier.verify(token)?);
        let mut map = lock();
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

/// Who may have coordinator `me` run a service: a router of the federation (its credential for
/// `me` in `x-rma-router-credential`), or a client or coordinator (its credential in
/// `Authorization`), not revoked. 401 without any of them or with one that does not verify, 403
/// for a worker's credential, a router credential made out to another coordinator, or a revoked
/// node. Returns the caller's claims.
pub fn service_caller(
    verifier: &Verifier,
    verified: &VerifiedTokens,
    revoked: &Revoked,
    headers: &HeaderMap,
    me: &str,
) -> Result<std::sync::Arc<Claims>, ApiError> {
    let router = headers
        .get(rma_proto::headers::ROUTER_CREDENTIAL)
        .map(|v| v.to_str().unwrap_or_default());
    let (token, roles): (&str, &[Role]) = match (router, bearer(headers)) {
        (Some(t), _) => (t, &[Role::Router]),
        (None, Some(t)) => (t, &[Role::Client, Role::Coordinator]),
        (None, None) => {
            return Err(ApiError::unauthorized(
                "a coordinator runs services for its federation's router, or for a client or coordinator credential (Authorization: Bearer …); send documents to the router",
            ));
        }
    };
    let claims = verified
        .verify(verifier, token)
        .map_err(|e| ApiError::from_auth(&e))?;
    if !roles.contains(&claims.role) {
        return Err(ApiError::forbidden(format!(
            "services are not run for a {} credential ({}); send documents to the router",
            claims.role, claims.sub
        )));
    }
    if claims.role == Role::Router && claims.aud.as_deref() != Some(me) {
        return Err(ApiError::forbidden(format!(
            "this router credential is made out to coordinator {:?}, not to {me:?}",
            claims.aud.as_deref().unwrap_or_default()
        )));
    }
    if revoked.contains(&claims.sub) {
        return Err(ApiError::forbidden(format!(
            "{} {} has been revoked",
            claims.role, claims.sub
        )));
    }
    Ok(claims)
}

/// 403 unless the credential names `id`: a member acts only for itself.
pub fn same_node(claims: &Claims, what: &str, id: &str) -> Result<(), ApiError> {
    if claims.sub == id {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the credential is {}'s; it cannot act for {what} {id:?}",
            claims.sub
        )))
    }
}

/// A state that can check a member's credential (the router's and the coordinator's).
pub trait Membership: Send + Sync {
    /// The claims of the request's credential of `role`, or the 401 / 403 to answer.
    fn member(&self, headers: &HeaderMap, role: Role) -> Result<Claims, ApiError>;
}

/// Extracts a worker's verified claims; runs before the body is read, so a stranger gets 401
/// whatever it sends.
#[derive(Debug, Clone)]
pub struct WorkerClaims(pub Claims);

/// Extracts a coordinator's verified claims (see [`WorkerClaims`]).
#[derive(Debug, Clone)]
pub struct CoordinatorClaims(pub Claims);

impl<S: Membership> axum::extract::FromRequestParts<S> for WorkerClaims {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        state.member(&parts.headers, Role::Worker).map(WorkerClaims)
    }
}

impl<S: Membership> axum::extract::FromRequestParts<S> for CoordinatorClaims {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        state
            .member(&parts.headers, Role::Coordinator)
            .map(CoordinatorClaims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use rma_auth::FederationKey;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header value"));
        h
    }

    fn token(fed: &FederationKey, id: &str, role: Role) -> String {
        fed.identity(id, role, None)
            .expect("identity")
            .credential()
            .token
    }

    #[test]
    fn services_are_run_for_routers_clients_and_coordinators_only() {
        let fed = FederationKey::generate();
        let (verified, revoked) = (VerifiedTokens::default(), Revoked::default());
        let check = |h: &HeaderMap| service_caller(fed.verifier(), &verified, &revoked, h, "c-me");
        let status =
            |r: Result<_, ApiError>| r.map(|_| StatusCode::OK).unwrap_or_else(|e| e.status);

        let router = fed
            .router_credential("router", "c-me")
            .expect("router")
            .token;
        let caller = check(&with(rma_proto::headers::ROUTER_CREDENTIAL, &router)).expect("router");
        assert_eq!(caller.role, Role::Router);
        for role in [Role::Client, Role::Coordinator] {
            let t = token(&fed, "n1", role);
            let bearer = format!("Bearer {t}");
            assert_eq!(
                status(check(&with("authorization", &bearer))),
                StatusCode::OK
            );
        }
        // Nobody, a worker, a router's credential passed off as a bearer, a client's passed off
        // as a router's, and another federation's router.
        assert_eq!(status(check(&HeaderMap::new())), StatusCode::UNAUTHORIZED);
        let worker = format!("Bearer {}", token(&fed, "w1", Role::Worker));
        assert_eq!(
            status(check(&with("authorization", &worker))),
            StatusCode::FORBIDDEN
        );
        let as_bearer = format!("Bearer {router}");
        assert_eq!(
            status(check(&with("authorization", &as_bearer))),
            StatusCode::FORBIDDEN
        );
        let client = token(&fed, "c1", Role::Client);
        assert_eq!(
            status(check(&with(rma_proto::headers::ROUTER_CREDENTIAL, &client))),
            StatusCode::FORBIDDEN
        );
        // One made out to another coordinator (captured there, say) is no use here.
        let elsewhere = fed
            .router_credential("router", "c-other")
            .expect("router")
            .token;
        assert_eq!(
            status(check(&with(
                rma_proto::headers::ROUTER_CREDENTIAL,
                &elsewhere
            ))),
            StatusCode::FORBIDDEN
        );
        let stranger = FederationKey::generate()
            .router_credential("router", "c-me")
            .expect("router");
        assert_eq!(
            status(check(&with(
                rma_proto::headers::ROUTER_CREDENTIAL,
                &stranger.token
            ))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(check(&with(
                rma_proto::headers::ROUTER_CREDENTIAL,
                "not a token"
            ))),
            StatusCode::UNAUTHORIZED
        );
        // Revocation counts even for a token verified before.
        let bearer = format!("Bearer {client}");
        assert_eq!(
            status(check(&with("authorization", &bearer))),
            StatusCode::OK
        );
        revoked.extend(["c1".to_owned()]);
        assert_eq!(
            status(check(&with("authorization", &bearer))),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn verified_tokens_are_kept_until_they_expire_and_bounded() {
        let fed = FederationKey::generate();
        let verified = VerifiedTokens::default();
        let t = token(&fed, "c1", Role::Client);
        let a = verified.verify(fed.verifier(), &t).expect("verifies");
        let b = verified.verify(fed.verifier(), &t).expect("kept");
        assert!(std::sync::Arc::ptr_eq(&a, &b), "answered from the map");
        // An expired one is not answered from the map.
        let key = rma_auth::NodeKey::generate();
        let old = fed
            .issue(
                "c2",
                Role::Client,
                None,
                None,
                &key.public(),
                std::time::Duration::from_secs(1),
            )
            .expect("issues");
        let mut claims = old.claims.clone();
        claims.exp = 0;
        verified
            .0
            .lock()
            .expect("lock")
            .insert(old.token.clone(), std::sync::Arc::new(claims));
        let again = verified
            .verify(fed.verifier(), &old.token)
            .expect("verified again");
        assert_ne!(again.exp, 0, "verified afresh, not taken from the map");
        // Never more than MAX.
        for i in 0..VerifiedTokens::MAX + 10 {
            let _ = verified.verify(fed.verifier(), &format!("junk{i}"));
            let t = token(&fed, &format!("n{i}"), Role::Client);
            verified.verify(fed.verifier(), &t).expect("verifies");
            assert!(verified.0.lock().expect("lock").len() <= VerifiedTokens::MAX);
        }
    }
}
