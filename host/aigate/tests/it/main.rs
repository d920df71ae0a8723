#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup must stop the test"
)]

//! Integration tests: the real gateway on an ephemeral port, real plugins
//! built from plugins/ (`cargo xtask build-plugins`), and a mock DashScope
//! upstream that speaks the provider's wire format.

mod admission;
mod anthropic;
mod bad_input;
mod billing;
mod bounded;
mod browser;
mod chat;
mod codemap;
mod console;
mod console_data;
mod contract;
mod contract_versions;
mod credentials;
mod deploy;
mod docker;
mod embeddings;
mod faults;
mod harness;
mod hot_reload;
mod messages;
mod metrics;
mod models;
mod openapi;
mod passthrough;
mod plugin_check;
mod responses;
mod routing;
mod sdk;
mod streaming;
mod tenancy;
mod trusted;
