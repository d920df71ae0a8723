//! Integration tests of the plugin runtime against real components.
//!
//! They use the artifacts of `cargo xtask build-plugins` (`plugins/dist/`): `qwen.wasm`,
//! `openai.wasm`, `test/faulty.wasm` (the request's model picks a fault) and
//! `test/qwen-next.wasm` (qwen at version 0.1.1-next). `AIGATE_PLUGINS_DIST` points elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod calls;
mod compiler;
mod faults;
mod load;
mod registry;
mod stream_properties;
mod support;
mod trust;
mod versions;
