//! A node's identity over HTTP: enrol with a join token on first start, keep the credential
//! renewed at the router at two thirds of its life.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rma_auth::{AuthError, Identity, JoinToken, PublicKey, Role};
use rma_proto::membership::{EnrollRequest, RenewRequest};

use crate::{Backoff, Client, ClientError};

/// Why a node has no identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity in the data dir and no join token given.
    #[error(
        "{dir} holds no identity yet: enrol once with --join TOKEN (or RMA_JOIN_TOKEN); an admin makes one with `rma invite --router URL --role {role}`"
    )]
    NotEnrolled {
        /// The data dir.
        dir: String,
        /// The role needed.
        role: Role,
    },
    /// The identity in the data dir, or the credential the router gave, is for another role.
    #[error("{0}")]
    WrongRole(String),
    /// A key, token, credential or file was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The router refused or could not be reached.
    #[error("enrolling at {router}: {source}")]
    Enroll {
        /// The router.
        router: String,
        /// Why.
        source: ClientError,
    },
}

/// The identity kept in `dir`, or, when there is none, one enrolled now with `join` (and kept
/// in `dir`). `node_id` is the id the node would like; the router may make it unique.
pub async fn obtain(
    dir: &Path,
    join: Option<&str>,
    role: Role,
    node_id: &str,
) -> Result<Arc<Identity>, IdentityError> {
    if let Some(id) = Identity::load(dir)? {
        if id.role() != role {
            return Err(IdentityError::WrongRole(format!(
                "{} holds the identity of {} {}, not of a {role}; give this {role} a data dir of its own",
                dir.display(),
                id.role(),
                id.node_id()
            )));
        }
        if join.is_some() {
            tracing::info!(node = %id.node_id(), "already enrolled; the join token is not needed and was not used");
        }
        return Ok(Arc::new(id));
    }
    let Some(join) = join else {
        return Err(IdentityError::NotEnrolled {
            dir: dir.display().to_string(),
            role,
        });
    };
    let token = JoinToken::parse(join)?;
    let key = Identity::node_key(dir)?;
    let enroll_err = |source| IdentityError::Enroll {
        router: token.router.clone(),
        source,
    };
    let router = Client::new(&token.router).map_err(enroll_err)?;
    let enrolled = router
        .enroll(&EnrollRequest {
            token: join.trim().to_owned(),
            public_key: key.public().to_string(),
            node_id: Some(node_id.to_owned()),
        })
        .await
        .map_err(enroll_err)?;
    if enrolled.role != role.as_str() {
        return Err(IdentityError::WrongRole(format!(
            "this join token enrols a {}, not a {role}",
            enrolled.role
        )));
    }
    let federation = PublicKey::parse(&enrolled.federation_key)?;
    let id = Identity::new(
        key,
        &enrolled.credential,
        &federation,
        Some(token.router.clone()),
    )?
    .persist_in(dir)?;
    tracing::info!(node = %enrolled.node_id, %role, router = %token.router, "enrolled; identity kept in the data dir");
    Ok(Arc::new(id))
}

/// Renews the credential at the router now.
pub async fn renew(identity: &Identity) -> Result<(), IdentityError> {
    let Some(router) = identity.router_url() else {
        return Ok(());
    };
    let err = |source| IdentityError::Enroll {
        router: router.to_owned(),
        source,
    };
    let (node_id, timestamp, signature) = identity.renewal_proof();
    let renewed = Client::new(router)
        .map_err(err)?
        .renew(&RenewRequest {
            node_id,
            timestamp,
            signature,
        })
        .await
        .map_err(err)?;
    identity.replace(&renewed.credential)?;
    Ok(())
}

/// Renews the credential whenever two thirds of its life have passed, until dropped; retries
/// with backoff (at most every 5 minutes) while the router cannot be reached. Does nothing for
/// an identity without a router.
pub async fn keep_renewed(identity: Arc<Identity>) {
    if identity.router_url().is_none() {
        return;
    }
    let mut backoff = Backoff::new();
    loop {
        tokio::time::sleep(Duration::from_secs(identity.renew_in())).await;
        match renew(&identity).await {
            Ok(()) => {
                backoff.reset();
                tracing::info!(node = %identity.node_id(), renew_in_s = identity.renew_in(), "credential renewed");
            }
            Err(e) => {
                let wait = backoff
                    .next_delay()
                    .max(Duration::from_secs(5))
                    .min(Duration::from_secs(300));
                tracing::warn!(node = %identity.node_id(), error = %e, retry_in_s = wait.as_secs(), "could not renew the credential");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
