//! Write AIGate provider plugins in Rust.
//!
//! A provider plugin is a WebAssembly component (`wasm32-wasip2`) that
//! implements the `aigate:provider@0.3.0` contract (`wit/provider@0.3.0/` in
//! the AIGate repository): it translates the gateway's canonical chat format
//! (and, where the provider has them, embeddings) to one provider's HTTP wire
//! format and back. It does no I/O; the host sends every request, adds every
//! credential, applies every timeout and retry.
//!
//! A plugin crate is a `cdylib` that implements one trait, [`Provider`], and
//! invokes one macro, [`export_plugin!`]:
//!
//! ```
//! use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder};
//! use aigate_plugin_sdk::types::*;
//! use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};
//!
//! /// OpenAI's rules, except that this server predates the `developer` role.
//! const DIALECT: Dialect = Dialect { developer_as_system: true, ..Dialect::OPENAI };
//!
//! struct MyProvider;
//!
//! impl Provider for MyProvider {
//!     type Decoder = StreamDecoder;
//!
//!     fn describe() -> PluginInfo {
//!         PluginInfo {
//!             name: "my-provider".to_string(),
//!             version: plugin_version!().to_string(),
//!             contract_version: CONTRACT_VERSION.to_string(),
//!             default_base_url: "https://api.example.com/v1".to_string(),
//!             auth: AuthScheme::Bearer,
//!             models: vec![ModelInfo {
//!                 id: "my-model".to_string(),
//!                 context_window: Some(128_000),
//!                 max_output_tokens: None,
//!             }],
//!         }
//!     }
//!
//!     fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
//!         DIALECT.build_chat_request(base_url, &request)
//!     }
//!
//!     fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
//!         DIALECT.parse_chat_response(&response)
//!     }
//!
//!     fn stream_decoder(model: String) -> StreamDecoder {
//!         DIALECT.stream_decoder(model)
//!     }
//!
//!     // Optional (contract 0.3.0): this server also has `POST /embeddings`.
//!     fn capabilities() -> Capabilities {
//!         Capabilities { embeddings: true, ..Capabilities::default() }
//!     }
//!
//!     fn build_embeddings_request(base_url: &str, request: EmbeddingsRequest) -> Result<HttpRequest, ProviderError> {
//!         DIALECT.build_embeddings_request(base_url, &request)
//!     }
//!
//!     fn parse_embeddings_response(response: HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
//!         DIALECT.parse_embeddings_response(&response)
//!     }
//! }
//!
//! export_plugin!(MyProvider);
//! # fn main() {}
//! ```
//!
//! Every other function has a default, so a chat-only plugin implements just
//! the four above:
//! - `build_models_request` and `parse_models`: no models endpoint, the host
//!   serves the models of `describe`.
//! - `capabilities`: nothing beyond chat ([`types::Capabilities::default`]).
//! - `build_embeddings_request` and `parse_embeddings_response`: a 400
//!   `invalid_request_error` saying the provider serves no embeddings
//!   ([`types::ProviderError::embeddings_unsupported`]). A plugin that
//!   implements them must also declare `embeddings: true` in `capabilities`,
//!   since the host only calls them for plugins that do.
//!
//! ## Contract versions
//!
//! 0.3.0 added embeddings and [`types::Capabilities`] (including the inbound
//! APIs a provider speaks natively, e.g. `anthropic-messages`, which the host
//! may pass through byte for byte). The additions are defaulted trait
//! functions, so a plugin written for the 0.2 SDK builds unchanged against
//! this one and reports contract 0.3.0. The host keeps loading components
//! built against 0.1.0 and 0.2.0; such a component has no capabilities.
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the `.wasm`
//! file is the component the gateway loads, no extra tooling needed.
//!
//! Everything except the export runs on the host target as well, so a plugin's
//! translation is unit-tested with a plain `cargo test`.
//!
//! Rules the host enforces (see the WIT): no filesystem, network, clock or
//! environment; never handle credentials; report anything the provider said
//! was wrong as a [`types::ProviderError`], because a panic fails the request
//! as a plugin fault (HTTP 502) instead of the provider's error.

#![warn(missing_docs)]

pub mod errors;
pub mod json;
pub mod media;
pub mod openai_compat;

mod constructors;
mod provider;

pub use provider::{ChunkDecoder, Provider};

/// The JSON library the SDK's helpers take and return, re-exported so a
/// plugin's `serde_json::Value` is always the SDK's (`use aigate_plugin_sdk::serde_json;`).
pub use serde_json;

/// The raw bindings `wit-bindgen` generates for the `provider` world.
///
/// Plugin authors rarely need this module: use [`types`], [`Provider`] and
/// [`export_plugin!`]. It is public because the export macro expands in the
/// plugin crate and must name these items.
#[allow(missing_docs, unsafe_code, clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/provider@0.3.0",
        world: "provider",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "aigate_plugin_sdk::bindings",
        // Lets plugin tests compare whole canonical values.
        additional_derives: [PartialEq],
    });
}

/// The canonical records and variants of the contract (`aigate:provider/types`):
/// `ChatRequest`, `ChatResponse`, `StreamChunk`, `ProviderError`,
/// `EmbeddingsRequest`, `EmbeddingsResponse`, `Capabilities`, ….
pub use bindings::aigate::provider::types;

/// The contract version this SDK implements; a plugin reports it in
/// `PluginInfo::contract_version` so the host can pick the matching adapter.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Exports a [`Provider`] implementation as the plugin's component exports.
///
/// Takes the name of a type (an identifier, not a path) in scope at the call
/// site. On targets other than `wasm32` it exports nothing, so the plugin
/// crate still builds and tests natively.
#[macro_export]
macro_rules! export_plugin {
    ($provider:ident) => {
        // Keeps the type checked (and "used") on native builds too.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::types::PluginInfo = <$provider as $crate::Provider>::describe;
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
    $crate::bindings::export!($provider with_types_in $crate::bindings);
        };
    };
}

/// Joins a base URL and a path with exactly one slash, because operators write
/// base URLs both with and without a trailing slash.
pub fn join_url(base_url: &str, path: &str) -> String {
    format!("{}/{}", base_url.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// The plugin version to report: `AIGATE_PLUGIN_VERSION` at build time if set,
/// else the crate version. The override lets a test build a second, newer
/// version of the same plugin for the hot-reload tests without editing files.
///
/// A macro, not a function, so that `env!` reads the plugin crate's version.
#[macro_export]
macro_rules! plugin_version {
    () => {
        match option_env!("AIGATE_PLUGIN_VERSION") {
            Some(version) => version,
            None => env!("CARGO_PKG_VERSION"),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_url_uses_one_slash() {
        assert_eq!(join_url("https://a/v1/", "/models"), "https://a/v1/models");
        assert_eq!(join_url("https://a/v1", "chat/completions"), "https://a/v1/chat/completions");
        assert_eq!(join_url("https://a/v1//", "models"), "https://a/v1/models");
    }
}
