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
