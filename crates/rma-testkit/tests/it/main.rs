//! Integration tests: real routers, coordinators and workers on loopback sockets, port 0.
//! One test binary with a module per area.

mod contract;
mod errors;
mod federation;
mod group;
mod observability;
mod placement;
mod routers;
mod security;
mod services;
