//! JSON bodies of the HTTP contract. Field names are snake_case.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::capability::{Capabilities, WorkerType};

/// Every error answer: `{error, message}`. `error` is one of [`crate::error_code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// What went wrong, in words a person can act on.
    pub message: String,
}

/// `POST /api/edge/register`: a coordinator announces itself to the router.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CoordinatorRegister {
    /// Stable id; the router makes one up when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_id: Option<String>,
    /// The URL the router reaches the coordinator at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Same as `url`, the name the specification uses for tunnels; `url` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_url: Option<String>,
    /// Free text: where the coordinator runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Services the coordinator can serve now (also carried by heartbeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
}

/// Answer to [`CoordinatorRegister`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CoordinatorRegistered {
    /// Always `registered`.
    pub status: String,
    /// Always `edge_coordinator`.
    pub role: String,
    /// The id the coordinator is known by.
    pub coordinator_id: String,
    /// Coordinators in the registry after this one.
    pub total_coordinators: usize,
    /// Human-readable confirmation.
    pub message: String,
    /// How often the router wants heartbeats, in ms; absent: the coordinator's own interval.
    /// A router that pays per request (the edge) asks for fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
}

/// One worker as a coordinator reports it to the router (heartbeats) and the router shows it
/// in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WorkerSummary {
    /// Worker id.
    pub id: String,
    /// Primary type.
    #[serde(rename = "type")]
    pub worker_type: WorkerType,
    /// Assigned services.
    pub services: Vec<String>,
    /// `active` or `stale`.
    pub status: WorkerStatus,
    /// Requests the coordinator has in flight on it.
    pub active_requests: u32,
    /// Load the worker reported (0.0–1.0 per core, averaged).
    pub load: f64,
    /// Requests sent to it over the last minute.
    #[serde(default)]
    pub requests_last_minute: u64,
    /// Its last heartbeat, RFC 3339.
    #[serde(default)]
    pub last_seen: String,
    /// The URL it can also be called at, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_url: Option<String>,
    /// p99 of the coordinator's round trips to it over the last minute or two, per service, ms.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_p99_ms: BTreeMap<String, f64>,
    /// Calls to it that failed (lost, 5xx) over the last minute.
    #[serde(default)]
    pub failures_last_minute: u64,
    /// Of its services, those its coordinator assigned live because their queue grew; they are
    /// taken back when it drains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<String>,
}

/// `POST /api/edge/heartbeat`: a coordinator is alive; carries load and inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CoordinatorHeartbeat {
    /// Who is beating.
    pub coordinator_id: String,
    /// Requests in flight at the coordinator.
    #[serde(default)]
    pub active_requests: u32,
    /// Mean load of its active workers.
    #[serde(default)]
    pub load: f64,
    /// Service type → number of active workers offering it.
    #[serde(default)]
    pub services: BTreeMap<String, u32>,
    /// Its workers.
    #[serde(default)]
    pub workers: Vec<WorkerSummary>,
}

/// `{status:"ok"}`: the answer to heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Ack {
    /// `ok`, `deregistered`…
    pub status: String,
}

impl Ack {
    /// `{status:"ok"}`.
    pub fn ok() -> Self {
        Ack {
            status: "ok".into(),
        }
    }
}

/// Router view of a coordinator's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CoordinatorStatus {
    /// Fresh and answering.
    Healthy,
    /// Fresh, but the last request to it failed to connect.
    Unreachable,
    /// Not heard from for `stale_after`: out of routing, removed later.
    Stale,
}

/// `GET /api/admin/coordinators`: one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CoordinatorInfo {
    /// Id.
    pub coordinator_id: String,
    /// Where the router reaches it.
    pub url: String,
    /// Free text from its registration.
    pub location: Option<String>,
    /// RFC 3339.
    pub registered_at: String,
    /// RFC 3339.
    pub last_seen: String,
    /// Health as the router sees it.
    pub status: CoordinatorStatus,
}

/// `POST /api/worker/register`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerRegister {
    /// Stable id, `worker-{hostname}` by default.
    pub worker_id: String,
    /// What the probe found.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// `WORKER_TYPE` when not `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_type: Option<WorkerType>,
    /// A URL the worker can also be called at over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_url: Option<String>,
    /// Services this worker implements; assignment never goes beyond them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Of them, the ones it starts serving (`rma worker --services`); the rest are standby,
    /// which its coordinator assigns live while their queue grows and takes back when it
    /// drains. Absent: it serves everything it is assigned from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_services: Option<Vec<String>>,
}

/// Answer to [`WorkerRegister`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRegistered {
    /// Always `registered`.
    pub status: String,
    /// The id registered.
    pub worker_id: String,
    /// Primary type.
    pub worker_type: WorkerType,
    /// What the worker will be sent.
    pub assigned_services: Vec<String>,
    /// Which coordinator holds the registration.
    pub coordinator_id: String,
    /// Where to dial the link (`{coordinator_url}/api/worker/link`); absent when the
    /// coordinator does not know its public URL, then the worker uses the URL it registered at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_url: Option<String>,
    /// How often to send heartbeats.
    pub heartbeat_interval_s: u64,
}

/// `POST /api/worker/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WorkerHeartbeat {
    /// Who is beating.
    pub worker_id: String,
    /// Free text from the worker: `ok`, `busy`, `draining`.
    #[serde(default = "default_ok")]
    pub status: String,
    /// Load average per core (0.0 = idle, 1.0 = every core busy).
    #[serde(default)]
    pub current_load: f64,
    /// Service requests running on the worker now.
    #[serde(default)]
    pub active_requests: u32,
    /// Heartbeats it failed to deliver since it started (for the success rate).
    #[serde(default)]
    pub heartbeats_failed: u32,
}

fn default_ok() -> String {
    "ok".into()
}

/// Coordinator view of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum WorkerStatus {
    /// Heartbeats fresh and reachable (link up, or a tunnel URL).
    Active,
    /// Heartbeats late, or no way to reach it: out of rotation.
    Stale,
    /// Its answers disagreed with other workers' in spot checks too often: no new work.
    Quarantined,
}

/// `rma probe --json`: what a machine's worker would detect and be assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The id it would register with.
    pub worker_id: String,
    /// What the probe found.
    pub capabilities: Capabilities,
    /// Its primary type.
    pub worker_type: WorkerType,
    /// Every capability detected.
    pub detected: Vec<WorkerType>,
    /// The services it would be sent (those this build implements).
    pub assigned_services: Vec<String>,
    /// The services its capabilities allow, implemented here or not.
    pub services_by_capability: Vec<String>,
}

/// `GET /health` at the router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RouterHealth {
    /// `healthy` when at least one coordinator is fresh and today's usage is projected under
    /// 80 % of the free tier; else `degraded` (503 when no coordinator is fresh; 200 when only
    /// the usage is high).
    pub status: String,
    /// Fresh coordinators.
    pub coordinators: usize,
    /// In words.
    pub message: String,
}

/// One counter of `GET /api/admin/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UsageCounter {
    /// `requests` (every HTTP request the router answered), `registry_requests` (calls that
    /// reach the registry: coordinator register / heartbeat / deregister and worker calls
    /// passed on) or `rows_written` (registry rows written).
    pub name: String,
    /// Counted today (UTC) since the router started.
    pub used: u64,
    /// `used` plus today's rate so far over the rest of the UTC day.
    pub projected: u64,
    /// What the Cloudflare free plan allows a day for the same thing.
    pub free_tier_limit: u64,
    /// `100 × (1 − projected / limit)`: negative once the projection is over the limit.
    pub headroom_percent: f64,
}

/// `GET /api/admin/usage`: what the router did today against the free tier of the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Usage {
    /// The UTC day counted, `YYYY-MM-DD`.
    pub day: String,
    /// Seconds of the day counted so far (since midnight UTC or the router's start).
    pub counted_s: u64,
    /// The counters.
    pub counters: Vec<UsageCounter>,
    /// Set when a projection passes 80 % of its limit: what and by how much.
    pub warning: Option<String>,
}

/// Worker counts in [`CoordinatorHealth`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WorkerCounts {
    /// All registered.
    pub total: usize,
    /// In rotation.
    pub active: usize,
    /// Out of rotation.
    pub stale: usize,
}

/// `GET /health` at a coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CoordinatorHealth {
    /// `healthy` when at least one worker is active, else `degraded` (still HTTP 200: the
    /// coordinator itself is up).
    pub status: String,
    /// Its id.
    pub coordinator: String,
    /// Its workers.
    pub workers: WorkerCounts,
}

/// A coordinator in [`Topology`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TopologyCoordinator {
    /// Id.
    pub id: String,
    /// URL.
    pub url: String,
    /// Number of workers it reported.
    pub workers: usize,
    /// Mean load it reported.
    pub load: f64,
    /// Health.
    pub status: CoordinatorStatus,
    /// Requests the router sent it over the last minute.
    #[serde(default)]
    pub requests_last_minute: u64,
    /// Its last heartbeat, RFC 3339.
    #[serde(default)]
    pub last_seen: String,
    /// Free text from its registration.
    #[serde(default)]
    pub location: Option<String>,
    /// Requests the router has in flight there.
    #[serde(default)]
    pub active_requests: u32,
    /// Forwards to it that failed (no connection, 502, 503, timeout) over the last minute.
    #[serde(default)]
    pub failures_last_minute: u64,
    /// p99 of the router's round trips to it over the last minute or two, per service, ms.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_p99_ms: BTreeMap<String, f64>,
}

/// A worker in [`Topology`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TopologyWorker {
    /// Id.
    pub id: String,
    /// Primary type.
    #[serde(rename = "type")]
    pub worker_type: WorkerType,
    /// The coordinator holding it.
    pub coordinator: String,
    /// Assigned services.
    pub services: Vec<String>,
    /// `active` or `stale`.
    pub status: WorkerStatus,
    /// Load it reported.
    pub load: f64,
    /// Requests in flight on it.
    #[serde(default)]
    pub active_requests: u32,
    /// Requests sent to it over the last minute.
    #[serde(default)]
    pub requests_last_minute: u64,
    /// Its last heartbeat, RFC 3339.
    #[serde(default)]
    pub last_seen: String,
    /// p99 of its coordinator's round trips to it, per service, ms.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_p99_ms: BTreeMap<String, f64>,
    /// Calls to it that failed over the last minute.
    #[serde(default)]
    pub failures_last_minute: u64,
    /// Of its services, those its coordinator lent it because their queue grew.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<String>,
}

/// `GET /api/topology`. Without the admin token it is [`Topology::redacted`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Topology {
    /// Every registered coordinator.
    pub coordinators: Vec<TopologyCoordinator>,
    /// Every worker the coordinators reported.
    pub workers: Vec<TopologyWorker>,
}

impl Topology {
    /// The public view: no coordinator URLs or locations, so the page shows the network's shape
    /// without telling an outsider where its machines are.
    pub fn redacted(mut self) -> Topology {
        for c in &mut self.coordinators {
            c.url = String::new();
            c.location = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_summary_uses_type_on_the_wire() {
        let w = WorkerSummary {
            id: "w".into(),
            worker_type: WorkerType::Gpu,
            services: vec![],
            status: WorkerStatus::Active,
            active_requests: 0,
            load: 0.0,
            requests_last_minute: 0,
            last_seen: String::new(),
            tunnel_url: None,
            latency_p99_ms: Default::default(),
            failures_last_minute: 0,
            placed: vec![],
        };
        let v = serde_json::to_value(&w).expect("serialise");
        assert_eq!(v["type"], "gpu");
        assert_eq!(v["status"], "active");
    }

    #[test]
    fn heartbeat_defaults() {
        let hb: WorkerHeartbeat =
            serde_json::from_str(r#"{"worker_id":"w1"}"#).expect("minimal heartbeat parses");
        assert_eq!(hb.status, "ok");
        assert_eq!(hb.active_requests, 0);
    }
}
