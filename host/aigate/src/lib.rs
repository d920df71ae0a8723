//! AIGate: an OpenAI-compatible AI gateway whose provider adapters are
//! sandboxed WebAssembly components.
//!
//! This crate is the server and the CLI. The plugin runtime (the only code
//! that links wasmtime) is `aigate-plugins`. See ARCHITECTURE.md for the map.

#![allow(
    clippy::result_large_err,
    reason = "ApiError is built once per failed request and carries what the client needs; boxing it buys nothing measurable"
)]

pub mod admin;
pub mod auth;
pub mod billing;
pub mod chat;
pub mod cli;
pub mod codec;
pub mod config;
pub mod console;
pub mod credentials;
pub mod embeddings;
pub mod error;
pub mod idempotency;
pub mod limits;
pub mod logging;
pub mod messages;
pub mod metering;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod openapi;
pub mod pipeline;
pub mod reload;
pub mod request_id;
pub mod responses;
pub mod router;
pub mod routing;
pub mod server;
pub mod serving;
pub mod sse;
pub mod telemetry;
pub mod upstream;

pub use config::Config;
pub use server::Gateway;
