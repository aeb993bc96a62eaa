//! rma's replicated job log. Coordinators of a *group* (3 or 5) agree, with Raft (openraft
//! 0.9), on every accepted job, its body, who runs it, and how it ended, so a job outlives the
//! coordinator that accepted it.
//!
//! - [`machine`]: the job log as data and a pure `apply` (fenced runs: each job ends once);
//! - [`store`]: one member's durable log, vote and snapshot (SQLite) and its state machine;
//! - [`network`]: Raft's RPCs between members, over the coordinators' own HTTP with their
//!   coordinator credentials;
//! - [`config`]: timeouts chosen for home uplinks, not a LAN.
//!
//! The coordinator (`rma-coordinator`) serves the RPC endpoints, accepts jobs through
//! [`openraft::Raft::client_write`] and runs the jobs the log gives it.

// openraft's error types (StorageError, RaftError) are large by design; its traits return them.
#![allow(clippy::result_large_err)]

pub mod machine;
pub mod network;
pub mod store;

use std::io::Cursor;

pub use machine::{Applied, Call, Command, Job, Jobs, Outcome, State, content_hash};

/// A member's id in the group (a small number given on the command line).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The group's Raft types: commands to the job log and what applying them did.
    pub TypeConfig:
        D = machine::Command,
        R = machine::Applied,
);

/// A member's Raft.
pub type Raft = openraft::Raft<TypeConfig>;

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// Its storage could not be opened or read.
    #[error("replica storage: {0}")]
    Storage(String),
    /// The Raft configuration is invalid.
    #[error("raft configuration: {0}")]
    Config(String),
    /// Raft failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// A member's address as the group keeps it: `coordinator-id@url`, so an RPC's sender can be
/// checked against the coordinator credential it carries.
pub fn node_addr(coordinator_id: &str, url: &str) -> String {
    format!("{coordinator_id}@{}", url.trim_end_matches('/'))
}

/// The coordinator id and URL of a member's address ([`node_addr`]).
pub fn split_addr(addr: &str) -> Option<(&str, &str)> {
    addr.split_once('@')
}

/// Raft timing for members on home uplinks (a few tens of ms, and sometimes a second, between
/// them): a heartbeat every 250 ms, an election after 1–2 s of silence. A leader that dies is
/// replaced in about 1.5–3 s.
///
/// A snapshot is taken every `snapshot_every` entries, and the log before it is dropped but for
/// a fifth of that: a member that falls further behind (or a new one) catches up by snapshot.
pub fn config(
    cluster: &str,
    snapshot_every: u64,
) -> Result<std::sync::Arc<openraft::Config>, ReplicaError> {
    let snapshot_every = snapshot_every.max(1);
    let c = openraft::Config {
        cluster_name: cluster.to_owned(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: snapshot_every / 5,
        // Entries are small (documents travel apart, by hash), but each RPC must finish within
        // a heartbeat interval: batches stay modest.
        max_payload_entries: 64,
        // A snapshot travels in 1 MB chunks, each given 30 s: a home uplink, not a LAN (the
        // default, 200 ms a chunk, never let a new member catch up).
        snapshot_max_chunk_size: 1 << 20,
        install_snapshot_timeout: 30_000,
        ..Default::default()
    };
    c.validate()
        .map(std::sync::Arc::new)
        .map_err(|e| ReplicaError::Config(e.to_string()))
}

/// Starts a member's Raft over `path` (its SQLite file), calling its peers through `network`,
/// with a snapshot every `snapshot_every` entries.
pub async fn start(
    id: NodeId,
    path: &std::path::Path,
    network: network::Network,
    snapshot_every: u64,
) -> Result<(Raft, store::StateMachine), ReplicaError> {
    let (log, sm) = store::open_storage(path)?;
    let raft = Raft::new(id, config("rma", snapshot_every)?, network, log, sm.clone())
        .await
        .map_err(|e| ReplicaError::Raft(e.to_string()))?;
    Ok((raft, sm))
}
