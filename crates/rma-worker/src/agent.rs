//! The worker's agent: register (through the router or straight at a coordinator), heartbeat,
//! and keep the link — the one outbound WebSocket over which the coordinator sends work. No
//! listening port, no tunnel. When the link drops, the agent registers again and reconnects,
//! with backoff and jitter; it keeps its worker id throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::Exec as Registry;
use rma_client::{Backoff, Client};
use rma_proto::Capabilities;
use rma_proto::api::{WorkerHeartbeat, WorkerRegister};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::WorkerConfig;
use crate::session::{self, SessionEnd};

/// What the agent is doing, for `rma worker`'s log and for tests to wait on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// The coordinator holding the registration.
    pub coordinator_id: Option<String>,
    /// Whether the link is up.
    pub linked: bool,
    /// Services assigned at the last registration.
    pub assigned_services: Vec<String>,
    /// Successful registrations so far.
    pub registrations: u32,
    /// HTTP heartbeats that failed since the worker started (reported with every heartbeat).
    pub heartbeats_failed: u32,
    /// How often the coordinator pings the link (what it last said).
    pub ping_interval_ms: u64,
}

/// Runs the agent until aborted.
pub(crate) async fn run(
    config: WorkerConfig,
    caps: Capabilities,
    services: Arc<Registry>,
    status: watch::Sender<AgentStatus>,
    drain: watch::Receiver<bool>,
) {
    // Registration and heartbeats without a link are occasional: no idle connection kept.
    let clients = match config
        .coordinator_urls
        .iter()
        .map(|u| Client::occasional(u).map(|c| c.with_identity(config.identity.clone())))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            tracing::error!("no router or coordinator URL; the worker cannot start");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "bad coordinator URL; the worker cannot start");
            return;
        }
    };
    // The router (or coordinator) asked first: the one that answered last.
    let mut turn = 0usize;
    let in_flight = Arc::new(AtomicU32::new(0));
    let mut backoff = Backoff::new();
    // The coordinator the worker last registered with, called directly.
    let mut home: Option<Client> = None;
    loop {
        if *drain.borrow() {
            return;
        }
        let req = WorkerRegister {
            worker_id: config.worker_id.clone(),
            capabilities: caps.clone(),
            worker_type: config.worker_type,
            tunnel_url: config.tunnel_url.clone(),
            services: Some(services.names()),
            initial_services: config.services.clone(),
        };
        // The coordinator that held the worker last is asked first, directly: a link that
        // drops costs the router nothing. When it does not answer, the router places it.
        let direct = match home.as_ref() {
            Some(c) => match c.register_worker(&req).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::info!(error = %e, "the last coordinator did not take the worker back; asking the router");
                    home = None;
                    None
                }
            },
            None => None,
        };
        let registered = match direct {
            Some(r) => Ok(r),
            None => register_through(&clients, &mut turn, &req).await,
        };
        let reg = match registered {
            Ok(r) => r,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "registration failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        tracing::info!(coordinator = %reg.coordinator_id, r#type = %reg.worker_type, services = ?reg.assigned_services, "registered");
        status.send_modify(|s| {
            s.coordinator_id = Some(reg.coordinator_id.clone());
            s.assigned_services = reg.assigned_services.clone();
            s.registrations += 1;
            s.linked = false;
        });
        let client = &clients[turn % clients.len()];
        let link_base = reg
            .coordinator_url
            .clone()
            .unwrap_or_else(|| client.base().as_str().trim_end_matches('/').to_owned());
        // Heartbeats without a link go to the coordinator itself, never through the router
        // (at the edge every router request counts against the free tier).
        home = match reg.coordinator_url.as_deref().map(Client::occasional) {
            Some(Ok(c)) => Some(c.with_identity(config.identity.clone())),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the coordinator's URL is unusable; heartbeats go through the router");
                None
            }
            None => None,
        };
        let beat = home.as_ref().unwrap_or(client);
        let started = Instant::now();
        let end = tokio::select! {
            end = session::run(&config, &link_base, &reg.coordinator_id, services.clone(), in_flight.clone(), &status, drain.clone()), if config.use_link => end,
            _ = wait_drain(drain.clone()), if !config.use_link => SessionEnd::Drained,
            end = heartbeats(beat, &config, in_flight.clone(), &status) => end,
        };
        status.send_modify(|s| s.linked = false);
        // A link that stayed up a while earns a fresh backoff.
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        let wait = backoff.next_delay();
        match end {
            SessionEnd::Reregister(why) => {
                tracing::info!(reason = %why, retry_in_ms = wait.as_millis() as u64, "registering again")
            }
            SessionEnd::Dropped(why) => {
                tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "link lost; reconnecting")
            }
            SessionEnd::Drained => {
                tracing::info!("drained: in-flight work finished; goodbye");
                return;
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// Registers through the routers in turn, starting at `turn`; leaves `turn` at the one that
/// answered (or the last tried). An error the worker caused (a 4xx) ends the round: another
/// router would say the same.
async fn register_through(
    clients: &[Client],
    turn: &mut usize,
    req: &WorkerRegister,
) -> Result<rma_proto::api::WorkerRegistered, rma_client::ClientError> {
    let n = clients.len().max(1);
    let mut i = 0;
    loop {
        let at = (*turn + i) % n;
        *turn = at;
        let result = clients[at].register_worker(req).await;
        let retry = match &result {
            Ok(_) => false,
            Err(e) => i + 1 < n && e.status().is_none_or(|s| s.is_server_error()),
        };
        if !retry {
            return result;
        }
        if let Err(e) = &result {
            tracing::info!(router = %clients[at].base(), error = %e, "registration failed here; trying the next");
        }
        i += 1;
    }
}

/// Resolves when a drain is asked for.
async fn wait_drain(mut drain: watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Heartbeats every interval; ends when the coordinator (or router) no longer knows the worker.
async fn heartbeats(
    client: &Client,
    config: &WorkerConfig,
    in_flight: Arc<AtomicU32>,
    status: &watch::Sender<AgentStatus>,
) -> SessionEnd {
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the registration was the first sign of life
    let mut failed = 0u32;
    loop {
        tick.tick().await;
        if status.borrow().linked {
            // The link carries the heartbeat (session.rs): one frame, no request.
            continue;
        }
        let hb = WorkerHeartbeat {
            worker_id: config.worker_id.clone(),
            status: "ok".into(),
            current_load: crate::load_per_core(),
            active_requests: in_flight.load(Ordering::Relaxed),
            heartbeats_failed: failed,
        };
        match client.worker_heartbeat(&hb).await {
            Ok(_) => {
                metrics::counter!("rma_worker_heartbeats_total", "result" => "ok").increment(1);
            }
            Err(e) if e.status() == Some(rma_client::HttpStatus::NOT_FOUND) => {
                return SessionEnd::Reregister("heartbeat answered 404".into());
            }
            Err(e) => {
                failed = failed.saturating_add(1);
                status.send_modify(|s| s.heartbeats_failed = failed);
                metrics::counter!("rma_worker_heartbeats_total", "result" => "failed").increment(1);
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    }
}
