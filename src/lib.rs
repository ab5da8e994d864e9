//! snapreg: a registry service for LXC snapshot images used by CI systems.
//!
//! Layers, one way: `api` (HTTP) → `registry` (one function per use case,
//! one transaction each) → `db`. Decisions live apart, as pure functions:
//! statuses in `status`, the current pointer in `pointer_rules`, deletion and
//! retention in `retention_rules`.

pub mod api;
pub mod app;
pub mod auth;
pub mod background;
pub mod blobs;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod input;
pub mod logging;
pub mod lxc;
pub mod metrics;
pub mod pointer_rules;
pub mod registry;
pub mod retention_rules;
pub mod status;
pub mod tls;
pub mod ui;
pub mod wake;
