//! JSON bodies of membership: invites, enrolment, renewal, revocation (see `rma-auth`).

use serde::{Deserialize, Serialize};

/// `POST /api/admin/invites` (admin token): a join token for one kind of node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct InviteRequest {
    /// `coordinator`, `worker` or `client`.
    pub role: String,
    /// The services the node may run (workers) or hold (coordinators); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// How long the token may be used [900 s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// How many nodes may enrol with it [1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// Who runs the node(s) it enrols (a person or an organisation): spot checks compare
    /// answers of workers of different owners. Absent: each node is its own owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The router URL the token names (what nodes will reach the router at); the router's
    /// own address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_url: Option<String>,
}

/// Answer to [`InviteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Invite {
    /// The join token, for `--join` / `RMA_JOIN_TOKEN`.
    pub token: String,
    /// The role it enrols.
    pub role: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Enrolments it allows.
    pub uses: u32,
}

/// `POST /api/enroll`: a node trades a join token and its public key for a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct EnrollRequest {
    /// The join token.
    pub token: String,
    /// The node's Ed25519 public key, base64url.
    pub public_key: String,
    /// The id the node would like; the router makes it unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

/// Answer to [`EnrollRequest`] and to [`RenewRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Enrolled {
    /// The node's id in the federation.
    pub node_id: String,
    /// Its role.
    pub role: String,
    /// Its credential (a JWT signed by the federation key).
    pub credential: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The federation's public key, base64url: members check credentials with it.
    pub federation_key: String,
}

/// `POST /api/credentials/renew`: a node proves it holds its key and gets a fresh credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RenewRequest {
    /// The node.
    pub node_id: String,
    /// Unix seconds when signed; within 5 minutes of the router's clock.
    pub timestamp: u64,
    /// Its signature of `rma-renew-v1\n{node_id}\n{timestamp}`, base64url.
    pub signature: String,
}

/// `GET /api/admin/nodes`: one enrolled node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NodeInfo {
    /// Id.
    pub node_id: String,
    /// Role.
    pub role: String,
    /// Services it may run or hold; absent: any.
    pub services: Option<Vec<String>>,
    /// Who runs it, when the invite said.
    #[serde(default)]
    pub owner: Option<String>,
    /// Its public key, base64url.
    pub public_key: String,
    /// RFC 3339.
    pub enrolled_at: String,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
}

/// Answer to a coordinator's heartbeat: the nodes revoked lately, which the coordinator drops
/// and refuses from then on (their credentials may not have expired yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HeartbeatReply {
    /// `ok`.
    pub status: String,
    /// Ids of nodes revoked within a credential's lifetime.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// The heartbeat interval the router asks for now, when it sets one: the edge router
    /// lengthens it as coordinators join, so their heartbeats stay within its daily budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub heartbeat_interval_ms: Option<u64>,
}
