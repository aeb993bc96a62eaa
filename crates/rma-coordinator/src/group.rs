//! Replicated coordinators: a *group* of 3 or 5 coordinators that hold one job log with Raft
//! ([`rma_replica`]). A coordinator not in a group keeps its jobs in its own SQLite file, as
//! before.
//!
//! - **Accepting.** Any member accepts a job. It is acknowledged (202) only once the group has
//!   committed it — the job and its body are then on a majority of members' disks. A member
//!   that is not the leader passes the write to the leader (`POST /api/raft/write`); a member
//!   that cannot reach a majority answers 503 and acknowledges nothing.
//! - **Running.** Each job has a runner (at first the member that accepted it) and a run number.
//!   The runner records `start`, runs the job through its workers (or, without one for the
//!   service, through a router), and records `finish`. A finish of a run that is over is refused
//!   by the log itself, so each job ends exactly once.
//! - **Failing over.** The leader pings every member's `/health`; a member silent for
//!   [`DEAD_AFTER`] loses its unfinished jobs to the living (a new run each). When the leader
//!   dies, the others elect a new one (1–2 s of silence) and it does the same.
//! - **Joining.** A new, empty coordinator asks any member to join
//!   (`POST /api/raft/join`); the leader adds it as a learner — it catches up by snapshot — then
//!   as a voter, replacing a dead member if one is named.
//!
//! Every Raft endpoint takes a coordinator credential of the federation, and the RPCs only from
//! a member of the group: a stranger gets 401 or 403, garbage 400, and a stale term is
//! openraft's to refuse — none of it touches the log.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use rma_http::ApiError;
use rma_proto::ServiceCall;
use rma_replica::{Applied, Command, NodeId, TypeConfig};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::AppState;

/// A member silent this long loses its unfinished jobs to the others.
pub const DEAD_AFTER: Duration = Duration::from_secs(3);

/// The largest Raft RPC accepted: a batch of log entries with their documents, base64'd.
pub(crate) const MAX_RPC_BYTES: usize = 256 * 1024 * 1024;

/// How long a write may wait to be committed before the client gets 503.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// 503 `no_coordinator`: no member of the group can take the write now.
fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        rma_proto::error_code::NO_COORDINATOR,
        message,
    )
}

/// A coordinator's place in a group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Its member id (1, 2, 3…), unique in the group.
    pub node_id: NodeId,
    /// The founding members, this one included: id → `coordinator-id@url`. Empty for a
    /// coordinator that joins a running group.
    pub members: BTreeMap<NodeId, String>,
    /// A member to ask to join through (when `members` is empty).
    pub join: Option<String>,
    /// A dead member the joiner replaces.
    pub replace: Option<NodeId>,
    /// Its SQLite file (log, vote, snapshot).
    pub path: std::path::PathBuf,
    /// Entries between snapshots [500].
    pub snapshot_every: u64,
}

/// Shuts a member's Raft down when dropped.
pub(crate) struct StopOnDrop(pub(crate) rma_replica::Raft);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let raft = self.0.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

/// A running member.
pub(crate) struct Group {
    pub(crate) id: NodeId,
    pub(crate) raft: rma_replica::Raft,
    pub(crate) sm: rma_replica::store::StateMachine,
    http: reqwest::Client,
    identity: Arc<rma_auth::Identity>,
}

impl Group {
    /// Whether this member believes it leads (its metrics say so; no round trip).
    fn leads(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The leader's id and address, as this member knows them.
    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node.addr))
    }

    /// Members' ids and addresses (voters and learners).
    pub(crate) fn nodes(&self) -> BTreeMap<NodeId, String> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Commits `cmd` through the leader: 503 when no majority is reachable within
    /// [`COMMIT_WAIT`].
    pub(crate) async fn write(&self, cmd: Command) -> Result<Applied, ApiError> {
        let deadline = Instant::now() + COMMIT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "not committed within {} s: this coordinator cannot reach a majority of its group",
                    COMMIT_WAIT.as_secs()
                )));
            }
            let leader = match tokio::time::timeout(left, self.raft.client_write(cmd.clone())).await
            {
                Ok(Ok(resp)) => return Ok(resp.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    f.leader_node.map(|n| n.addr)
                }
                Ok(Err(e)) => {
                    return Err(unavailable(format!("the group refused: {e}")));
                }
                Err(_) => continue,
            };
            match leader.as_deref().and_then(rma_replica::split_addr) {
                Some((_, url)) => match self.forward(url, &cmd, left).await {
                    Ok(applied) => return Ok(applied),
                    Err(e) => tracing::debug!(error = %e, "write to the leader failed; retrying"),
                },
                None => tracing::debug!("no leader known yet; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200).min(left)).await;
        }
    }

    /// Keeps `bytes` here and on at least one other member before answering their hash:
    /// a document or an answer is on two machines before an entry names it. 503 when no other
    /// member took it within [`COMMIT_WAIT`].
    pub(crate) async fn keep(&self, bytes: Bytes) -> Result<String, ApiError> {
        let hash = self
            .sm
            .put_blob(&bytes)
            .map_err(|e| ApiError::internal(format!("keeping the document: {e}")))?;
        let peers: Vec<String> = self
            .nodes()
            .into_iter()
            .filter(|(id, _)| *id != self.id)
            .filter_map(|(_, a)| rma_replica::split_addr(&a).map(|(_, u)| u.to_owned()))
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel(peers.len().max(1));
        for url in peers {
            let (http, tx, bytes, hash) =
                (self.http.clone(), tx.clone(), bytes.clone(), hash.clone());
            let bearer = self.identity.bearer();
            tokio::spawn(async move {
                let sent = http
                    .put(format!("{url}/api/raft/blob/{hash}"))
                    .bearer_auth(bearer)
                    .timeout(COMMIT_WAIT)
                    .body(bytes)
                    .send()
                    .await;
                let _ = tx.send(sent.is_ok_and(|r| r.status().is_success())).await;
            });
        }
        drop(tx);
        let second = tokio::time::timeout(COMMIT_WAIT, async {
            while let Some(ok) = rx.recv().await {
                if ok {
                    return true;
                }
            }
            false
        });
        if second.await.unwrap_or(false) {
            Ok(hash)
        } else {
            Err(unavailable(
                "no other member of the group could keep a copy of the document",
            ))
        }
    }

    /// The blob `hash`: from this member, else from another (and then kept here too).
    pub(crate) async fn fetch(&self, hash: &str) -> Option<Bytes> {
        if let Some(b) = self.sm.get_blob(hash) {
            return Some(Bytes::from(b));
        }
        for (id, addr) in self.nodes() {
            let Some((_, url)) = rma_replica::split_addr(&addr).filter(|_| id != self.id) else {
                continue;
            };
            let got = self
                .http
                .get(format!("{url}/api/raft/blob/{hash}"))
                .bearer_auth(self.identity.bearer())
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            let Ok(resp) = got else { continue };
            if !resp.status().is_success() {
                continue;
            }
            let Ok(bytes) = resp.bytes().await else {
                continue;
            };
            if rma_replica::content_hash(&bytes) == hash {
                let _ = self.sm.put_blob(&bytes);
                return Some(bytes);
            }
        }
        None
    }

    /// Sends a write to the leader at `url`.
    async fn forward(
        &self,
        url: &str,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<Applied, String> {
        let resp = self
            .http
            .post(format!("{url}/api/raft/write"))
            .bearer_auth(self.identity.bearer())
            .timeout(timeout)
            .json(cmd)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("leader answered {}", resp.status()));
        }
        resp.json().await.map_err(|e| e.to_string())
    }
}

/// Starts this coordinator's member: opens its storage, starts Raft, founds the group (the
/// lowest founding id does) or asks to join it.
pub(crate) async fn start(state: &AppState, cfg: &GroupConfig) -> Result<Arc<Group>, String> {
    let identity = state.config().identity.clone();
    let http = rma_client::http_client_with(None, Some(state.config().url_policy))
        .map_err(|e| e.to_string())?;
    let bearer_identity = identity.clone();
    let network = rma_replica::network::Network::new(
        http.clone(),
        Arc::new(move || bearer_identity.bearer()),
    );
    let (raft, sm) = rma_replica::start(cfg.node_id, &cfg.path, network, cfg.snapshot_every)
        .await
        .map_err(|e| e.to_string())?;
    let group = Arc::new(Group {
        id: cfg.node_id,
        raft,
        sm,
        http,
        identity,
    });
    let initialized = group.raft.is_initialized().await.unwrap_or(false);
    if !initialized && !cfg.members.is_empty() {
        if cfg.members.keys().next() == Some(&cfg.node_id) {
            let nodes: BTreeMap<NodeId, BasicNode> = cfg
                .members
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            if let Err(e) = group.raft.initialize(nodes).await {
                tracing::info!(error = %e, "group already founded");
            } else {
                tracing::info!(members = ?cfg.members, "group founded");
            }
        }
    } else if !initialized && let Some(via) = &cfg.join {
        let g = group.clone();
        let via = via.trim_end_matches('/').to_owned();
        let me = rma_replica::node_addr(&state.config().id, state.public_url());
        let replace = cfg.replace;
        tokio::spawn(async move { join_loop(g, via, me, replace).await });
    }
    Ok(group)
}

/// Asks `via` to add this member until it is in.
async fn join_loop(g: Arc<Group>, via: String, me: String, replace: Option<NodeId>) {
    let req = JoinRequest {
        node_id: g.id,
        addr: me,
        replace,
    };
    let mut wait = Duration::from_millis(200);
    loop {
        let sent = g
            .http
            .post(format!("{via}/api/raft/join"))
            .bearer_auth(g.identity.bearer())
            .timeout(Duration::from_secs(120))
            .json(&req)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(%via, "joined the group");
                return;
            }
            Ok(r) => tracing::warn!(%via, status = %r.status(), "join refused; retrying"),
            Err(e) => tracing::warn!(%via, error = %e, "join failed; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// `POST /api/raft/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    node_id: NodeId,
    addr: String,
    #[serde(default)]
    replace: Option<NodeId>,
}

fn group_of(state: &AppState) -> Result<Arc<Group>, ApiError> {
    match (state.group(), state.group_config()) {
        (Some(g), _) => Ok(g),
        (None, Some(_)) => Err(unavailable(
            "this coordinator's replication group member is starting",
        )),
        (None, None) => Err(ApiError::not_found(
            "this coordinator is not in a replication group",
        )),
    }
}

/// A request body as `T`, read after the caller is known: a stranger learns nothing from how
/// its garbage is parsed.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not {what}: {e}")))
}

/// The caller must hold a coordinator credential; for RPCs, of a member of the group.
fn check_caller(
    state: &AppState,
    g: &Group,
    headers: &HeaderMap,
    member: bool,
) -> Result<String, ApiError> {
    let claims = rma_http::auth::Membership::member(state, headers, rma_auth::Role::Coordinator)?;
    // A coordinator that is joining knows no members yet: the group's leader (any coordinator
    // of the federation) may replicate to it until it has a membership of its own.
    if member && !g.nodes().is_empty() {
        let known = g
            .nodes()
            .values()
            .chain(
                state
                    .group_config()
                    .map(|c| c.members.values())
                    .into_iter()
                    .flatten(),
            )
            .filter_map(|a| rma_replica::split_addr(a))
            .any(|(id, _)| id == claims.sub);
        if !known {
            return Err(ApiError::forbidden(format!(
                "coordinator {} is not a member of this replication group",
                claims.sub
            )));
        }
    }
    Ok(claims.sub)
}

/// A request from a member of the group: the group, then the caller checked, then its body
/// read as `T` (a stranger learns nothing from how its garbage is parsed).
fn from_member<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<(Arc<Group>, T), ApiError> {
    let g = group_of(state)?;
    check_caller(state, &g, headers, true)?;
    Ok((g, parse(body, what)?))
}

/// `POST /api/raft/append`.
pub(crate) async fn append(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (g, rpc): (_, AppendEntriesRequest<TypeConfig>) =
        from_member(&state, &headers, &body, "an append-entries request")?;
    answer(g.raft.append_entries(rpc).await)
}

/// `POST /api/raft/vote`.
pub(crate) async fn vote(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (g, rpc): (_, VoteRequest<NodeId>) =
        from_member(&state, &headers, &body, "a vote request")?;
    answer(g.raft.vote(rpc).await)
}

/// `POST /api/raft/snapshot`.
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (g, rpc): (_, InstallSnapshotRequest<TypeConfig>) =
        from_member(&state, &headers, &body, "an install-snapshot request")?;
    answer(g.raft.install_snapshot(rpc).await)
}

/// openraft's `Result` as JSON, as [`rma_replica::network`] reads it.
fn answer<T: Serialize, E: Serialize>(
    r: Result<T, E>,
) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(&r)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))
}

/// `PUT /api/raft/blob/{hash}`: a member keeps a copy of a document or an answer; the body
/// must hash to `hash`.
pub(crate) async fn put_blob(
    State(state): State<AppState>,
    axum::extract::Path(hash): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let g = group_of(&state)?;
    check_caller(&state, &g, &headers, true)?;
    if rma_replica::content_hash(&body) != hash {
        return Err(ApiError::bad_request(format!(
            "the body does not hash to {hash} (BLAKE3, hex)"
        )));
    }
    g.sm.put_blob(&body)
        .map_err(|e| ApiError::internal(format!("keeping the blob: {e}")))?;
    Ok(Json(serde_json::json!({ "status": "kept", "hash": hash })))
}

/// `GET /api/raft/blob/{hash}`: a member's copy, for another that lacks it.
pub(crate) async fn get_blob(
    State(state): State<AppState>,
    axum::extract::Path(hash): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Bytes, ApiError> {
    let g = group_of(&state)?;
    check_caller(&state, &g, &headers, true)?;
    g.sm.get_blob(&hash)
        .map(Bytes::from)
        .ok_or_else(|| ApiError::not_found(format!("this member keeps no blob {hash}")))
}

/// `POST /api/raft/write`: a member passes a client's write to the leader.
pub(crate) async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Applied>, ApiError> {
    let (g, cmd): (_, Command) = from_member(&state, &headers, &body, "a job-log command")?;
    match tokio::time::timeout(COMMIT_WAIT, g.raft.client_write(cmd)).await {
        Ok(Ok(resp)) => Ok(Json(resp.data)),
        Ok(Err(e)) => Err(unavailable(format!("not written here: {e}"))),
        Err(_) => Err(unavailable(
            "not committed in time: the leader cannot reach a majority",
        )),
    }
}

/// `POST /api/raft/join`: adds a coordinator to the group (as a learner until it has caught up,
/// then as a voter), replacing a dead member when asked. Passed to the leader when this member
/// is not it.
pub(crate) async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let g = group_of(&state)?;
    let caller = check_caller(&state, &g, &headers, false)?;
    let req: JoinRequest = parse(&body, "a join request")?;
    match rma_replica::split_addr(&req.addr) {
        Some((id, url)) if id == caller && url.starts_with("http") => {}
        _ => {
            return Err(ApiError::forbidden(format!(
                "a coordinator joins as itself: addr must be \"{caller}@http(s)://…\""
            )));
        }
    }
    if !g.leads() {
        let Some((_, leader)) = g.leader() else {
            return Err(unavailable("the group has no leader now; try again"));
        };
        let Some((_, url)) = rma_replica::split_addr(&leader) else {
            return Err(ApiError::internal("the leader's address is unreadable"));
        };
        let resp = g
            .http
            .post(format!("{url}/api/raft/join"))
            .header(
                "authorization",
                headers
                    .get("authorization")
                    .cloned()
                    .unwrap_or(axum::http::HeaderValue::from_static("")),
            )
            .timeout(Duration::from_secs(120))
            .json(&req)
            .send()
            .await
            .map_err(|e| ApiError::upstream(format!("the leader is unreachable: {e}")))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ApiError::upstream(format!(
                "the leader refused the join: {body}"
            )));
        }
        return Ok(Json(body));
    }
    g.raft
        .add_learner(
            req.node_id,
            BasicNode {
                addr: req.addr.clone(),
            },
            true,
        )
        .await
        .map_err(|e| unavailable(format!("could not add the learner: {e}")))?;
    let mut voters: BTreeSet<NodeId> = g
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters.insert(req.node_id);
    if let Some(dead) = req.replace {
        voters.remove(&dead);
    }
    g.raft
        .change_membership(voters.clone(), false)
        .await
        .map_err(|e| unavailable(format!("could not change the membership: {e}")))?;
    tracing::info!(node = req.node_id, addr = %req.addr, voters = ?voters, "coordinator joined the group");
    Ok(Json(
        serde_json::json!({ "status": "joined", "voters": voters }),
    ))
}

/// `GET /api/raft/status` (metrics token): who leads, the term, what is applied, the members.
pub(crate) async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.require_metrics_token(&headers)?;
    let g = group_of(&state)?;
    let m = g.raft.metrics().borrow().clone();
    let (jobs, placements) = g.sm.read(|j| {
        let mut by: BTreeMap<&'static str, usize> = BTreeMap::new();
        for job in j.jobs.values() {
            *by.entry(state_name(job.state)).or_default() += 1;
        }
        (by, j.placements.clone())
    });
    Ok(Json(serde_json::json!({
        "node_id": g.id,
        "state": format!("{:?}", m.state),
        "leader": m.current_leader,
        "term": m.current_term,
        "last_applied": m.last_applied.map(|l| l.index),
        "snapshot": m.snapshot.map(|l| l.index),
        "purged": m.purged.map(|l| l.index),
        "voters": m.membership_config.membership().voter_ids().collect::<Vec<_>>(),
        "nodes": g.nodes(),
        "jobs": jobs,
        "placements": placements,
    })))
}

/// `GET /api/raft/jobs` (metrics token): every job in the group's log — id, state, runs, the
/// hash of its input and of its answer — for operators and for the history checker of the
/// failure tests.
pub(crate) async fn jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    state.require_metrics_token(&headers)?;
    let g = group_of(&state)?;
    Ok(Json(g.sm.read(|j| {
        j.jobs
            .iter()
            .map(|(id, job)| {
                serde_json::json!({
                    "id": id,
                    "state": state_name(job.state),
                    "run": job.run,
                    "runner": job.runner,
                    "input": job.input,
                    "output": job.outcome.as_ref().map(|o| o.body.clone()),
                })
            })
            .collect()
    })))
}

fn state_name(s: rma_replica::State) -> &'static str {
    match s {
        rma_replica::State::Queued => "queued",
        rma_replica::State::Running => "running",
        rma_replica::State::Done => "done",
        rma_replica::State::Failed => "failed",
    }
}

/// Accepts a job into the group's log: its id once committed.
pub(crate) async fn submit(
    state: &AppState,
    g: &Group,
    call: ServiceCall,
    client: Option<String>,
) -> Result<String, ApiError> {
    let id = rma_proto::ids::job_id(&state.config().id, rand::random::<u128>());
    let input = g.keep(call.body.clone()).await?;
    let cmd = Command::Submit {
        job: id.clone(),
        call: rma_replica::Call {
            service: call.service,
            method: call.method,
            path: call.path,
            query: call.query,
            content_type: call.content_type,
            request_id: call.request_id,
            traceparent: call.traceparent,
        },
        input,
        client,
        accepted_by: g.id,
        at_ms: crate::jobs::now_ms(),
    };
    let applied = g.write(cmd).await?;
    if !applied.ok {
        return Err(ApiError::internal(format!(
            "the job was not accepted: {}",
            applied.reason
        )));
    }
    metrics::counter!("rma_coordinator_jobs_submitted_total").increment(1);
    Ok(id)
}

/// A group job as the API shows it.
pub(crate) async fn view(state: &AppState, g: &Group, id: &str) -> Option<rma_proto::job::JobView> {
    let job = g.sm.read(|j| j.jobs.get(id).cloned())?;
    let names: BTreeMap<NodeId, String> = g
        .nodes()
        .into_iter()
        .map(|(n, a)| {
            let name = rma_replica::split_addr(&a).map_or(a.clone(), |(c, _)| c.to_owned());
            (n, name)
        })
        .collect();
    let answer = match &job.outcome {
        Some(o) => g.fetch(&o.body).await.map(|b| b.to_vec()),
        None => None,
    };
    let (result_type, status, worker, error) = match &job.outcome {
        Some(o) => (
            o.content_type.clone(),
            Some(o.status),
            Some(o.worker.clone()).filter(|w| !w.is_empty()),
            (o.status >= 400).then(|| {
                answer
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<rma_proto::ErrorBody>(b).ok())
                    .map_or_else(|| format!("failed with {}", o.status), |e| e.message)
            }),
        ),
        None => (None, None, None, None),
    };
    let row = crate::jobs::JobRow {
        id: id.to_owned(),
        service: job.call.service.clone(),
        state: match job.state {
            rma_replica::State::Queued => rma_proto::job::JobState::Queued,
            rma_replica::State::Running => rma_proto::job::JobState::Running,
            rma_replica::State::Done => rma_proto::job::JobState::Done,
            rma_replica::State::Failed => rma_proto::job::JobState::Failed,
        },
        done: match job.state {
            rma_replica::State::Running if job.progress.1 > 0 => job.progress.0,
            _ => u32::from(job.state.finished()),
        },
        total: match job.state {
            rma_replica::State::Running if job.progress.1 > 0 => job.progress.1,
            _ => 1,
        },
        runs: job.run,
        worker,
        result: if job.state == rma_replica::State::Done {
            answer
        } else {
            None
        },
        result_type,
        result_status: status,
        error,
        error_code: None,
        verified: None,
        corrections: (!job.corrections.is_empty())
            .then(|| format!("[{}]", job.corrections.join(","))),
        created_ms: job.created_ms,
        started_ms: job.started_ms,
        finished_ms: job.finished_ms,
    };
    let mut v = state.jobs().render_row(row);
    v.coordinator = names
        .get(&job.runner)
        .cloned()
        .unwrap_or_else(|| job.runner.to_string());
    Some(v)
}

/// A person's correction of a group job's fact, committed to the log; `None` when the group
/// does not know the job.
pub(crate) async fn correct(
    state: &AppState,
    g: &Group,
    id: &str,
    req: rma_proto::job::CorrectionRequest,
) -> Option<Result<rma_proto::job::JobView, ApiError>> {
    let before = view(state, g, id).await?;
    let correction = match crate::jobs::correction_of(&before, req) {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    let text = match serde_json::to_string(&correction) {
        Ok(t) => t,
        Err(e) => {
            return Some(Err(ApiError::internal(format!(
                "encoding the correction: {e}"
            ))));
        }
    };
    let cmd = Command::Correct {
        job: id.to_owned(),
        correction: text,
    };
    match g.write(cmd).await {
        Ok(a) if a.ok => {
            tracing::info!(job = %id, field = %correction.field, "a fact of a replicated job corrected by a person");
        }
        Ok(a) => {
            return Some(Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!("job {id}: {}", a.reason),
            )));
        }
        Err(e) => return Some(Err(e)),
    }
    view(state, g, id).await.map(Ok)
}

/// A group job's result: `None` when the group does not know the job, `Some(None)` while it
/// has no answer (not done, or no member can give it).
pub(crate) async fn result(g: &Group, id: &str) -> Option<Option<(Vec<u8>, Option<String>)>> {
    let (hash, content_type) = g.sm.read(|j| {
        let job = j.jobs.get(id)?;
        Some(match (&job.outcome, job.state) {
            (Some(o), rma_replica::State::Done) => (Some(o.body.clone()), o.content_type.clone()),
            _ => (None, None),
        })
    })?;
    let Some(hash) = hash else {
        return Some(None);
    };
    Some(g.fetch(&hash).await.map(|b| (b.to_vec(), content_type)))
}

/// Runs the jobs the log gives this member, up to `max_concurrent` at once; and, while this
/// member leads, moves the jobs of silent members to living ones.
pub(crate) async fn run(state: AppState, g: Arc<Group>, max_concurrent: usize) {
    let mut shutdown = state.shutdown();
    let mut applied = g.sm.subscribe();
    let in_hand: Arc<Mutex<HashSet<String>>> = Arc::default();
    let limit = Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1)));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                publish_placement(&state, &g).await;
                if g.leads() {
                    lead(&state, &g, &mut seen).await;
                } else {
                    seen.clear();
                }
            }
            r = applied.changed() => { if r.is_err() { return; } }
            _ = shutdown.wait() => return,
        }
        // This member's unfinished jobs that no task here holds.
        let mine: Vec<(String, rma_replica::Job)> = g.sm.read(|j| {
            j.unfinished_of(g.id)
                .into_iter()
                .map(|(id, job)| (id.clone(), job.clone()))
                .collect()
        });
        for (id, job) in mine {
            if in_hand
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
            {
                continue;
            }
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                break;
            };
            in_hand
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone());
            let (state, g, in_hand) = (state.clone(), g.clone(), in_hand.clone());
            tokio::spawn(async move {
                run_one(&state, g.clone(), &id, job).await;
                in_hand
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                drop(permit);
            });
        }
    }
}

/// Writes where this member's workers are and what they are sent, when it changed.
async fn publish_placement(state: &AppState, g: &Group) {
    let now = Instant::now();
    let workers = state.registry().lock().assignments(now);
    let held =
        g.sm.read(|j| j.placements.get(&g.id).map(|p| p.workers.clone()))
            .unwrap_or_default();
    if held == workers {
        return;
    }
    let cmd = Command::Placement {
        coordinator: g.id,
        workers,
        at_ms: crate::jobs::now_ms(),
    };
    if let Err(e) = g.write(cmd).await {
        tracing::debug!(error = %e.message, "could not record this member's placement");
    }
}

/// Whether run `run` of job `id` is still this member's.
fn still_mine(g: &Group, id: &str, run: u32) -> bool {
    g.sm.read(|j| {
        j.jobs
            .get(id)
            .is_some_and(|job| job.runner == g.id && job.run == run && !job.state.finished())
    })
}

async fn run_one(state: &AppState, g: Arc<Group>, id: &str, job: rma_replica::Job) {
    let g = &g;
    let run = job.run;
    // A queued run is started first; a running one (this process restarted) is run again: only
    // one finish of the run can be recorded, whoever sends it.
    if job.state == rma_replica::State::Queued {
        let start = Command::Start {
            job: id.to_owned(),
            runner: g.id,
            run,
            at_ms: crate::jobs::now_ms(),
        };
        match g.write(start).await {
            Ok(a) if a.ok => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(job = id, error = %e.message, "could not start the job; trying later");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        }
    }
    let Some(body) = g.fetch(&job.input).await else {
        tracing::warn!(
            job = id,
            "no member could give the job's document yet; trying later"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    };
    let call = ServiceCall {
        service: job.call.service.clone(),
        method: job.call.method.clone(),
        path: job.call.path.clone(),
        query: job.call.query.clone(),
        content_type: job.call.content_type.clone(),
        request_id: job.call.request_id.clone(),
        body,
        traceparent: job.call.traceparent.clone(),
    };
    // Pages done go to the log at most about once a second, so any member shows them.
    let latest: Arc<Mutex<Option<(u32, u32)>>> = Arc::default();
    let progress: crate::link::ProgressFn = {
        let latest = latest.clone();
        Arc::new(move |done, total| {
            *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((done, total));
        })
    };
    let reporter = {
        let (g, latest, job) = (g.clone(), latest.clone(), id.to_owned());
        tokio::spawn(async move {
            let mut written = None;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = *latest.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((done, total)) = now.filter(|p| Some(*p) != written) {
                    let cmd = Command::Progress {
                        job: job.clone(),
                        runner: g.id,
                        run,
                        done,
                        total,
                    };
                    if g.write(cmd).await.is_ok() {
                        written = now;
                    }
                }
            }
        })
    };
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _reporter = Abort(reporter);
    let (status, content_type, answer, worker) = loop {
        if !still_mine(g, id, run) {
            tracing::info!(
                job = id,
                run,
                "the job was moved to another member; dropping this run"
            );
            return;
        }
        match crate::jobs::runner::run_call(state, &call, Some(progress.clone())).await {
            Some(o) => break o,
            // No worker for it anywhere yet: keep the run and look again.
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    // The answer is kept on two members before the entry naming it is written.
    let size = answer.len() as u64;
    let kept = while_mine(g, id, run, "keep the answer on a second member", || {
        g.keep(answer.clone())
    });
    let Some(body) = kept.await else { return };
    let outcome = rma_replica::Outcome {
        status,
        content_type,
        body,
        size,
        worker,
    };
    let finish = Command::Finish {
        job: id.to_owned(),
        runner: g.id,
        run,
        outcome,
        at_ms: crate::jobs::now_ms(),
    };
    // Recorded once the group can commit; a run taken from us meanwhile is refused by the log.
    let recorded = while_mine(g, id, run, "record the result", || g.write(finish.clone())).await;
    if let Some(a) = recorded
        && !a.ok
    {
        tracing::info!(job = id, run, reason = %a.reason, "the run's result was not recorded");
    }
}

/// Tries `attempt` until it succeeds — waiting 200 ms after a failure, doubling up to 5 s — as
/// long as run `run` of job `id` is still this member's; `None` once it is not.
async fn while_mine<T, Fut>(
    g: &Group,
    id: &str,
    run: u32,
    what: &str,
    mut attempt: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut wait = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(job = id, error = %e.message, "could not {what}; retrying");
                if !still_mine(g, id, run) {
                    return None;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The leader's round: ping the members, and move the unfinished jobs of one silent for
/// [`DEAD_AFTER`] (or no longer a member) to living voters, in turn.
async fn lead(state: &AppState, g: &Group, seen: &mut HashMap<NodeId, Instant>) {
    let now = Instant::now();
    let nodes = g.nodes();
    let voters: BTreeSet<NodeId> = g
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let pings = nodes.iter().map(|(id, addr)| {
        let http = g.http.clone();
        let url = rma_replica::split_addr(addr).map(|(_, u)| u.to_owned());
        let me = *id == g.id;
        async move {
            let alive = me
                || match url {
                    Some(u) => http
                        .get(format!("{u}/health"))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok(),
                    None => false,
                };
            (*id, alive)
        }
    });
    for (id, alive) in futures_util::future::join_all(pings).await {
        if alive {
            seen.insert(id, now);
        } else {
            // A member first seen silent gets its full grace from now.
            seen.entry(id).or_insert(now);
        }
    }
    let living: Vec<NodeId> = voters
        .iter()
        .copied()
        .filter(|id| {
            seen.get(id)
                .is_some_and(|t| now.saturating_duration_since(*t) < DEAD_AFTER)
        })
        .collect();
    if living.is_empty() {
        return;
    }
    // No longer a member, or silent for `DEAD_AFTER`.
    let gone = |id: &NodeId| {
        !nodes.contains_key(id)
            || seen
                .get(id)
                .is_some_and(|t| now.saturating_duration_since(*t) >= DEAD_AFTER)
    };
    // A silent member's workers re-home: its placement is emptied.
    let dead: Vec<NodeId> = g.sm.read(|j| {
        j.placements
            .iter()
            .filter(|(id, p)| !p.workers.is_empty() && gone(id))
            .map(|(id, _)| *id)
            .collect()
    });
    for member in dead {
        let cmd = Command::Placement {
            coordinator: member,
            workers: BTreeMap::new(),
            at_ms: crate::jobs::now_ms(),
        };
        if g.write(cmd).await.is_err() {
            return;
        }
    }
    let orphans: Vec<(String, NodeId)> = g.sm.read(|j| {
        j.jobs
            .iter()
            .filter(|(_, job)| !job.state.finished() && gone(&job.runner))
            .map(|(id, job)| (id.clone(), job.runner))
            .collect()
    });
    // Finished jobs past the retention time leave the log (and so every snapshot).
    let cutoff = crate::jobs::now_ms()
        - i64::try_from(state.config().job_retention.as_millis()).unwrap_or(i64::MAX);
    let expired: Vec<String> = g.sm.read(|j| {
        j.jobs
            .iter()
            .filter(|(_, job)| job.finished_ms.is_some_and(|t| t < cutoff))
            .take(100)
            .map(|(id, _)| id.clone())
            .collect()
    });
    for job in expired {
        if g.write(Command::Delete { job }).await.is_err() {
            return;
        }
    }
    for (i, (job, from)) in orphans.into_iter().enumerate() {
        let to = living[i % living.len()];
        match g
            .write(Command::Reassign {
                job: job.clone(),
                from,
                to,
            })
            .await
        {
            Ok(a) if a.ok => {
                tracing::warn!(%job, from, to, "member silent: its job moves to another");
                metrics::counter!("rma_coordinator_jobs_reassigned_total").increment(1);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%job, error = %e.message, "could not reassign the job");
                return;
            }
        }
    }
}
