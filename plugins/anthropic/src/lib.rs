//! AIGate provider plugin for Anthropic's Messages API (Claude).
//!
//! Unlike qwen and openai this is not an OpenAI-compatible API, so the
//! translation is written here, on the SDK's [`Provider`] trait and its generic
//! helpers ([`aigate_plugin_sdk::errors`], [`aigate_plugin_sdk::media`]).
//! The differences from the canonical (OpenAI-shaped) format that matter:
//!
//! - `system` and `developer` messages become the top-level `system` text;
//!   the Messages API has no system role.
//! - `max_tokens` is required: [`DEFAULT_MAX_TOKENS`] when the request has
//!   none (raised above a `thinking.budget_tokens` passed in `extra`).
//! - There is no `reasoning_effort` (the API refuses the key): an effort in
//!   `extra` becomes a `thinking` budget, or no thinking for `minimal`.
//! - Content is a list of blocks. Assistant tool calls become `tool_use`
//!   blocks (arguments parsed into `input`), tool messages `tool_result`
//!   blocks in a user turn; adjacent messages of one role are merged, because
//!   the API wants user and assistant turns to alternate.
//! - `temperature` ranges over 0..=1, not 0..=2: above 1 is refused (400)
//!   rather than silently clamped.
//! - The stream is named events (`message_start`, `content_block_*`,
//!   `message_delta`, `message_stop`, `ping`, `error`), decoded in
//!   [`stream`].
//! - The credential goes in `x-api-key` (declared, added by the host); the
//!   plugin adds the static `anthropic-version` header itself.
//!
//! Capabilities: the Messages API is one of the host's inbound APIs
//! ([`NATIVE_API`]), so a client speaking it can reach Claude with its body
//! passed through byte for byte (thinking signatures survive); Anthropic has
//! no embeddings API.
//!
//! Canonical fields with no Messages API equivalent: `seed`,
//! `presence_penalty` and `frequency_penalty` are dropped (sampling hints);
//! `n` above 1 and a JSON `response_format` are refused with a 400, since
//! silently ignoring them would hand the client something it did not ask for.

mod error;
mod request;
mod response;
mod stream;

use aigate_plugin_sdk::types::{
    AuthScheme, Capabilities, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo,
    ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, join_url, plugin_version};

pub use request::DEFAULT_MAX_TOKENS;
pub use stream::MessagesStreamDecoder;

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";

/// The API version every request names (reference, section 5). Static: a
/// different version is a different wire format, hence a new plugin version.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The host's name for Anthropic's `POST /v1/messages` as an inbound API,
/// which this provider speaks natively.
pub const NATIVE_API: &str = "anthropic-messages";

/// The models the plugin knows: the aliases (which follow the newest
/// snapshot) with their context window and output limit.
const MODELS: &[(&str, u32, u32)] = &[
    ("claude-sonnet-4-5", 200_000, 64_000),
    ("claude-haiku-4-5", 200_000, 64_000),
    ("claude-opus-4-1", 200_000, 32_000),
];

struct Anthropic;

impl Provider for Anthropic {
    type Decoder = MessagesStreamDecoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "anthropic".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: DEFAULT_BASE_URL.to_string(),
            auth: AuthScheme::Header("x-api-key".to_string()),
            models: known_models(),
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        request::build(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        response::parse(&response)
    }

    /// `GET {base}/models?limit=1000`: one page holds every model (the API's
    /// page limit is 1000, far above the number of Claude models).
    fn build_models_request(base_url: &str) -> Option<HttpRequest> {
        Some(HttpRequest {
            method: "GET".to_string(),
            url: join_url(base_url, "models?limit=1000"),
            headers: vec![
                ("accept".to_string(), "application/json".to_string()),
                ("anthropic-version".to_string(), ANTHROPIC_VERSION.to_string()),
            ],
            body: Vec::new(),
        })
    }

    fn parse_models(response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        response::parse_models(&response, &known_models())
    }

    fn stream_decoder(model: String) -> MessagesStreamDecoder {
        MessagesStreamDecoder::new(model)
    }

    fn capabilities() -> Capabilities {
        Capabilities { embeddings: false, native_apis: vec![NATIVE_API.into()] }
    }
}

fn known_models() -> Vec<ModelInfo> {
    MODELS
        .iter()
        .map(|&(id, context_window, max_output_tokens)| ModelInfo {
            id: id.to_string(),
            context_window: Some(context_window),
            max_output_tokens: Some(max_output_tokens),
        })
        .collect()
}

export_plugin!(Anthropic);

#[cfg(test)]
mod tests;
