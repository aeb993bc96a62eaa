//! Membership at the router: invites (admin), enrolment (join token → credential), renewal
//! (signature of the node's key → fresh credential), the node list and revocation (admin), and
//! the checks every membership call passes.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use rma_auth::{CREDENTIAL_TTL, Claims, JoinToken, PublicKey, Role, proof, unix_now};
use rma_http::{ApiError, JsonBody};
use rma_proto::api::Ack;
use rma_proto::ids;
use rma_proto::membership::{
    EnrollRequest, Enrolled, Invite, InviteRequest, NodeInfo, RenewRequest,
};

use crate::store::{StoredInvite, StoredNode};
use crate::{AppState, from_ms, to_ms};

/// How long an invite lasts unless it says [15 min], and at most [30 days].
const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(900);
const MAX_INVITE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most enrolments one invite may allow.
const MAX_USES: u32 = 10_000;

impl rma_http::auth::Membership for AppState {
    fn member(&self, headers: &HeaderMap, role: Role) -> Result<Claims, ApiError> {
        rma_http::auth::member(self.federation().verifier(), self.revoked(), headers, role)
    }
}

fn store_err(e: crate::StoreError) -> ApiError {
    ApiError::internal(e.to_string())
}

fn check_services(services: &Option<Vec<String>>) -> Result<(), ApiError> {
    for s in services.iter().flatten() {
        ids::validate(s).map_err(|e| ApiError::bad_request(format!("services: {e}")))?;
    }
    Ok(())
}

/// `POST /api/admin/invites`: a join token (admin token).
pub(crate) async fn invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<InviteRequest>,
) -> Result<Json<Invite>, ApiError> {
    state.require_admin(&headers)?;
    let role: Role = req
        .role
        .parse()
        .map_err(|e: String| ApiError::bad_request(format!("role: {e}")))?;
    check_services(&req.services)?;
    if let Some(o) = &req.owner {
        ids::validate(o).map_err(|e| ApiError::bad_request(format!("owner: {e}")))?;
    }
    let ttl = req.ttl_s.map_or(DEFAULT_INVITE_TTL, Duration::from_secs);
    if ttl.is_zero() || ttl > MAX_INVITE_TTL {
        return Err(ApiError::bad_request(
            "ttl_s must be between 1 second and 30 days",
        ));
    }
    let uses = req.uses.unwrap_or(1);
    if uses == 0 || uses > MAX_USES {
        return Err(ApiError::bad_request(format!(
            "uses must be between 1 and {MAX_USES}"
        )));
    }
    let router = match &req.router_url {
        Some(u) => rma_proto::urls::base_url("router_url", u)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => state.own_url(&headers),
    };
    let token = JoinToken::new(&router);
    let now = SystemTime::now();
    let expires = now + ttl;
    let hash = JoinToken::secret_hash(&token.secret);
    let stored = StoredInvite {
        role: role.as_str().to_owned(),
        services: req.services.clone(),
        owner: req.owner.clone(),
    };
    let (now_ms, exp_ms) = (to_ms(now), to_ms(expires));
    state
        .write(move |s| s.add_invite(&hash, &stored, uses, exp_ms, now_ms))
        .await
        .map_err(store_err)?;
    tracing::info!(%role, uses, ttl_s = ttl.as_secs(), "invite made");
    metrics::counter!("rma_router_invites_total", "role" => role.as_str()).increment(1);
    Ok(Json(Invite {
        token: token.encode(),
        role: role.as_str().to_owned(),
        expires_at: rma_http::rfc3339(expires),
        uses,
    }))
}

/// `POST /api/enroll`: a join token and a public key for a credential.
pub(crate) async fn enroll(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> Result<Json<Enrolled>, ApiError> {
    let token = JoinToken::parse(&req.token).map_err(|e| ApiError::from_auth(&e))?;
    let key = PublicKey::parse(&req.public_key)
        .map_err(|e| ApiError::bad_request(format!("public_key: {e}")))?;
    let wanted = req.node_id.clone().unwrap_or_else(|| "node".into());
    ids::validate(&wanted).map_err(|e| ApiError::bad_request(format!("node_id: {e}")))?;
    let hash = JoinToken::secret_hash(&token.secret);
    let now_ms = to_ms(SystemTime::now());
    let invite = state
        .write(move |s| s.take_invite(&hash, now_ms))
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "the join token is unknown, expired or used up; ask an admin for a new one (`rma invite`)",
            )
        })?;
    let role: Role = invite
        .role
        .parse()
        .map_err(|e: String| ApiError::internal(e))?;
    // The id the node asked for, or, when another key holds it, one derived from this key
    // (the same on every retry).
    let suffix = &blake3::hash(key.as_str().as_bytes()).to_hex()[..8];
    let mut node_id = None;
    for candidate in [wanted.clone(), format!("{wanted}-{suffix}")] {
        let node = StoredNode {
            node_id: candidate.clone(),
            role: role.as_str().to_owned(),
            services: invite.services.clone(),
            owner: invite.owner.clone(),
            public_key: key.to_string(),
            enrolled_at_ms: now_ms,
            revoked_at_ms: None,
        };
        if state
            .write(move |s| s.add_node(&node))
            .await
            .map_err(store_err)?
        {
            node_id = Some(candidate);
            break;
        }
    }
    let node_id = node_id.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("node id {wanted:?} is taken; enrol with another id"),
        )
    })?;
    tracing::info!(node = %node_id, %role, "node enrolled");
    metrics::counter!("rma_router_enrolments_total", "role" => role.as_str()).increment(1);
    issue(&state, &node_id, role, invite.services, invite.owner, &key)
}

fn issue(
    state: &AppState,
    node_id: &str,
    role: Role,
    services: Option<Vec<String>>,
    owner: Option<String>,
    key: &PublicKey,
) -> Result<Json<Enrolled>, ApiError> {
    let c = state
        .federation()
        .issue(node_id, role, services, owner, key, CREDENTIAL_TTL)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(Enrolled {
        node_id: node_id.to_owned(),
        role: role.as_str().to_owned(),
        credential: c.token,
        expires_at: rma_http::rfc3339(from_ms(c.claims.exp as i64 * 1000)),
        federation_key: state.federation().public().to_string(),
    }))
}

/// `POST /api/credentials/renew`: a fresh credential for a node that proves it holds its key
/// and is not revoked (its old credential may have expired: a machine switched off for a
/// weekend comes back without a new invite).
pub(crate) async fn renew(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RenewRequest>,
) -> Result<Json<Enrolled>, ApiError> {
    ids::validate(&req.node_id).map_err(|e| ApiError::bad_request(format!("node_id: {e}")))?;
    if !proof::fresh(req.timestamp, unix_now()) {
        return Err(ApiError::unauthorized(
            "the renewal's timestamp is more than 5 minutes from the router's clock; check the node's clock",
        ));
    }
    let id = req.node_id.clone();
    let node = state
        .store(move |s| s.node(&id))
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::unauthorized(format!("node {:?} is not enrolled here", req.node_id))
        })?;
    if node.revoked_at_ms.is_some() {
        return Err(ApiError::forbidden(format!(
            "node {} has been revoked",
            node.node_id
        )));
    }
    let key = PublicKey::parse(&node.public_key).map_err(|e| ApiError::internal(e.to_string()))?;
    key.verify(
        &proof::renew_message(&node.node_id, req.timestamp),
        &req.signature,
    )
    .map_err(|e| ApiError::from_auth(&e))?;
    let role: Role = node
        .role
        .parse()
        .map_err(|e: String| ApiError::internal(e))?;
    metrics::counter!("rma_router_renewals_total").increment(1);
    issue(&state, &node.node_id, role, node.services, node.owner, &key)
}

/// `GET /api/admin/nodes` (admin token).
pub(crate) async fn nodes(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    state.require_admin(&headers)?;
    let rows = state.store(|s| s.nodes()).await.map_err(store_err)?;
    Ok(Json(
        rows.into_iter()
            .map(|n| NodeInfo {
                node_id: n.node_id,
                role: n.role,
                services: n.services,
                owner: n.owner,
                public_key: n.public_key,
                enrolled_at: rma_http::rfc3339(from_ms(n.enrolled_at_ms)),
                revoked_at: n.revoked_at_ms.map(|ms| rma_http::rfc3339(from_ms(ms))),
            })
            .collect(),
    ))
}

/// `POST /api/admin/nodes/{id}/revoke` (admin token): the node can no longer register, renew
/// or link; coordinators hear of it in their next heartbeat answer and drop it. A revoked
/// coordinator is taken out of routing at once.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(node_id): Path<String>,
) -> Result<Json<Ack>, ApiError> {
    state.require_admin(&headers)?;
    ids::validate(&node_id).map_err(|e| ApiError::bad_request(format!("node_id: {e}")))?;
    let id = node_id.clone();
    let now_ms = to_ms(SystemTime::now());
    let known = state
        .write(move |s| s.revoke(&id, now_ms))
        .await
        .map_err(store_err)?;
    state.note_revoked(&node_id, now_ms);
    if state.registry().remove(&node_id).is_some() {
        let id = node_id.clone();
        state
            .write(move |s| s.delete(&id))
            .await
            .map_err(store_err)?;
        tracing::info!(coordinator = %node_id, "revoked coordinator removed from routing");
    }
    tracing::warn!(node = %node_id, known, "node revoked");
    metrics::counter!("rma_router_revocations_total").increment(1);
    Ok(Json(Ack {
        status: "revoked".into(),
    }))
}

#[cfg(test)]
mod tests {
    //! The whole membership cycle against the app in-process: invite, enrol, use, renew,
    //! revoke.
    use axum::http::StatusCode;
    use rma_auth::{NodeKey, proof};
    use rma_http::testing::{call, call_as};
    use serde_json::{Value, json};

    use crate::tests::ADMIN;
    use crate::{AppState, RouterConfig, api};

    async fn invite(app: &axum::Router, body: Value) -> String {
        let (s, v) = call_as(
            app,
            Some(ADMIN),
            "POST",
            "/api/admin/invites",
            &body.to_string(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().expect("token").to_owned()
    }

    async fn enroll(
        app: &axum::Router,
        token: &str,
        key: &NodeKey,
        id: &str,
    ) -> (StatusCode, Value) {
        let body = json!({"token": token, "public_key": key.public().to_string(), "node_id": id});
        call(app, "POST", "/api/enroll", &body.to_string()).await
    }

    #[tokio::test]
    async fn invite_enrol_renew_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = AppState::new(RouterConfig::new(dir.path().join("r.db"))).expect("state");
        let app = api::app(state.clone());

        // Only an admin invites; bad invites are 400.
        let (s, v) = call(&app, "POST", "/api/admin/invites", r#"{"role":"worker"}"#).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        for bad in [
            json!({"role":"king"}),
            json!({"role":"worker","uses":0}),
            json!({"role":"worker","ttl_s":0}),
            json!({"role":"worker","services":["a/b"]}),
        ] {
            let (s, v) = call_as(
                &app,
                Some(ADMIN),
                "POST",
                "/api/admin/invites",
                &bad.to_string(),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        }

        // A worker invite limited to ocr, used once.
        let token = invite(
            &app,
            json!({"role":"worker","services":["ocr"],"router_url":"http://r.example"}),
        )
        .await;
        assert!(rma_auth::JoinToken::parse(&token).expect("token").router == "http://r.example");
        let key = NodeKey::generate();
        let (s, v) = enroll(&app, &token, &key, "w1").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            (v["node_id"].as_str(), v["role"].as_str()),
            (Some("w1"), Some("worker"))
        );
        let cred = v["credential"].as_str().expect("credential").to_owned();
        let claims = state
            .federation()
            .verifier()
            .verify(&cred)
            .expect("verifies");
        assert_eq!(claims.services, Some(vec!["ocr".to_owned()]));
        assert_eq!(claims.cnf, key.public());
        assert_eq!(v["federation_key"], state.federation().public().to_string());
        let (s, v) = enroll(&app, &token, &NodeKey::generate(), "w2").await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "used up"
        );
        let (s, _) = enroll(&app, "rmaj1_garbage", &key, "w3").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Another key asking for a taken id gets one of its own.
        let token = invite(&app, json!({"role":"worker","uses":2})).await;
        let other = NodeKey::generate();
        let (s, v) = enroll(&app, &token, &other, "w1").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["node_id"].as_str().expect("id").starts_with("w1-"), "{v}");

        // Membership calls: none → 401, wrong role → 403, another node's id → 403.
        let reg = r#"{"coordinator_id":"c1","url":"http://127.0.0.1:9"}"#;
        let (s, _) = call(&app, "POST", "/api/edge/register", reg).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, v) = call_as(&app, Some(&cred), "POST", "/api/edge/register", reg).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden"))
        );
        let (s, _) = call_as(&app, Some("not.a.jwt"), "POST", "/api/edge/register", reg).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = call(
            &app,
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"w1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = call_as(
            &app,
            Some(&cred),
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"w9"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(
            &app,
            "POST",
            "/api/edge/heartbeat",
            r#"{"coordinator_id":"c1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = call(&app, "DELETE", "/api/edge/c1", "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Renewal needs the key: a bad signature or a stale stamp is 401.
        let renew = |k: &NodeKey, stamp: u64| {
            json!({"node_id":"w1","timestamp":stamp,"signature":k.sign(&proof::renew_message("w1", stamp))}).to_string()
        };
        let now = rma_auth::unix_now();
        let (s, v) = call(&app, "POST", "/api/credentials/renew", &renew(&key, now)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(
            state
                .federation()
                .verifier()
                .verify_as(v["credential"].as_str().expect("c"), rma_auth::Role::Worker)
                .is_ok()
        );
        let (s, _) = call(&app, "POST", "/api/credentials/renew", &renew(&other, now)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "another key");
        let (s, _) = call(
            &app,
            "POST",
            "/api/credentials/renew",
            &renew(&key, now - 3600),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "stale");

        // A coordinator heartbeat answer carries revocations; a revoked node renews no more
        // and its credential is refused at once.
        let ckey = NodeKey::generate();
        let ctoken = invite(&app, json!({"role":"coordinator"})).await;
        let (_, v) = enroll(&app, &ctoken, &ckey, "c1").await;
        let ccred = v["credential"].as_str().expect("c").to_owned();
        let (s, v) = call_as(&app, Some(&ccred), "POST", "/api/edge/register", reg).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _) = call(&app, "POST", "/api/admin/nodes/w1/revoke", "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "admin only");
        let (s, _) = call_as(&app, Some(ADMIN), "POST", "/api/admin/nodes/w1/revoke", "").await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = call_as(
            &app,
            Some(&ccred),
            "POST",
            "/api/edge/heartbeat",
            r#"{"coordinator_id":"c1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["revoked"], json!(["w1"]));
        let (s, _) = call(&app, "POST", "/api/credentials/renew", &renew(&key, now)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call_as(
            &app,
            Some(&cred),
            "POST",
            "/api/worker/register",
            r#"{"worker_id":"w1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (_, v) = call_as(&app, Some(ADMIN), "GET", "/api/admin/nodes", "").await;
        let w1 = v
            .as_array()
            .expect("list")
            .iter()
            .find(|n| n["node_id"] == "w1")
            .expect("w1")
            .clone();
        assert!(w1["revoked_at"].is_string(), "{w1}");

        // Revoking a coordinator takes it out of routing at once.
        let (s, _) = call_as(&app, Some(ADMIN), "POST", "/api/admin/nodes/c1/revoke", "").await;
        assert_eq!(s, StatusCode::OK);
        let (_, v) = call_as(&app, Some(ADMIN), "GET", "/api/admin/coordinators", "").await;
        assert_eq!(v, json!([]));
        let (s, _) = call_as(
            &app,
            Some(&ccred),
            "POST",
            "/api/edge/heartbeat",
            r#"{"coordinator_id":"c1"}"#,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Revocations survive a restart of the router.
        drop(app);
        let again = AppState::new(RouterConfig::new(dir.path().join("r.db"))).expect("state");
        assert!(again.revoked().contains("w1") && again.revoked().contains("c1"));
    }
}
