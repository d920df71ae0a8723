//! Integration tests: the real gateway on an ephemeral port, real plugins
//! built from plugins/ (`cargo xtask build-plugins`), and a mock DashScope
//! upstream that speaks the provider's wire format.

mod bad_input;
mod chat;
mod contract;
mod faults;
mod harness;
mod hot_reload;
mod models;
mod sdk;
mod streaming;
