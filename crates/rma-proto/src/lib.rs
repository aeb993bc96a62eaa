//! Every wire and API type of rma, in one low-dependency crate (serde only).
//!
//! Layout:
//! - [`ids`]: validation of worker and coordinator ids.
//! - [`capability`]: what a machine can do, and the pure assignment of services from it.
//! - [`service`]: the names of the services.
//! - [`api`]: the JSON bodies of the HTTP contract (router and coordinator).
//! - [`link`]: the messages of the worker ⇄ coordinator link and their framing.
//! - [`media`]: document kinds from magic bytes.
//! - [`headers`]: header names used across the federation.
//! - [`error_code`]: the `error` field of every JSON error body.
#![deny(clippy::unwrap_used)]

pub mod api;
pub mod capability;
pub mod error_code;
pub mod headers;
pub mod ids;
pub mod link;
pub mod media;
pub mod service;

pub use api::ErrorBody;
pub use capability::{Capabilities, GpuInfo, WorkerType};
