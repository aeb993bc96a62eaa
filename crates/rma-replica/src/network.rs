//! Raft's RPCs between members: `POST {url}/api/raft/{append,vote,snapshot}` with the sender's
//! coordinator credential, JSON both ways. The answer is openraft's `Result` as JSON; anything
//! else (a refused connection, a 401, a proxy's page) is a network error, and openraft retries.

use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{NodeId, TypeConfig};

/// The bearer token a member sends (its coordinator credential, renewed as it goes).
pub type Bearer = Arc<dyn Fn() -> String + Send + Sync>;

/// Makes connections to peers.
#[derive(Clone)]
pub struct Network {
    http: reqwest::Client,
    bearer: Bearer,
}

impl Network {
    /// Peers are called with `http`, each request carrying `bearer()`.
    pub fn new(http: reqwest::Client, bearer: Bearer) -> Self {
        Network { http, bearer }
    }
}

/// A message of the transport's own, as an error openraft can carry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            net: self.clone(),
            target,
            url: crate::split_addr(&node.addr)
                .map_or(node.addr.as_str(), |(_, u)| u)
                .to_owned(),
        }
    }
}

/// One peer.
pub struct Peer {
    net: Network,
    target: NodeId,
    url: String,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        what: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/api/raft/{what}", self.url);
        let resp = self
            .net
            .http
            .post(&url)
            .bearer_auth((self.net.bearer)())
            .timeout(timeout)
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::new(&Transport(format!(
                "{url}: {status}: {}",
                body.chars().take(300).collect::<String>()
            )))));
        }
        let answer: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
