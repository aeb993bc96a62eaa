//! The contract of rma, in one low-dependency crate (serde, bytes, url): every type that crosses a
//! process boundary, and the pure rules both ends of a boundary share.
//!
//! Layout:
//! - [`ids`]: validation of worker, coordinator and job ids.
//! - [`capability`]: what a machine can do, and the pure assignment of services from it.
//! - [`service`]: the names of the services and the path of a service request.
//! - [`call`]: [`ServiceCall`] / [`ServiceReply`], one request and its answer on every hop.
//! - [`api`]: the JSON bodies of the HTTP contract (router and coordinator).
//! - [`job`]: async jobs: accepted, state, view, steps, progress.
//! - [`results`]: the JSON answers of every service and of `process`.
//! - [`link`]: the messages of the worker ⇄ coordinator link, their framing, and the session
//!   state machine both ends run.
//! - [`media`]: document kinds from magic bytes.
//! - [`urls`]: the one check of the URLs nodes give each other.
//! - [`headers`]: header names used across the federation.
//! - [`error_code`]: the `error` field of every JSON error body, and the one status → code map.
//!
//! With the `ts` feature every type the web UI reads derives `ts_rs::TS`; the TypeScript in
//! `web/src/contract.ts` is generated from them (`scripts/gen-contract`) and checked by a test.
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod call;
pub mod capability;
pub mod error_code;
pub mod headers;
pub mod ids;
pub mod job;
pub mod link;
pub mod media;
pub mod membership;
pub mod results;
pub mod service;
pub mod urls;

pub use api::ErrorBody;
pub use call::{ServiceCall, ServiceReply};
pub use capability::{Capabilities, GpuInfo, WorkerType};
