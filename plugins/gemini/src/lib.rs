//! AIGate provider plugin for Google's Gemini API (`generativelanguage.googleapis.com`):
//! `POST {base}/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streams (without `alt=sse` Google
//! answers one JSON array, not SSE). The key goes in `x-goog-api-key`, added by
//! the host.
//!
//! Started from `cargo xtask new-plugin gemini --format custom`; the format's
//! differences from OpenAI's, and where each is handled:
//!
//! - system and developer messages become `systemInstruction`; assistant is
//!   `model`; tool results are `functionResponse` parts of a `user` turn, named
//!   by the function (Gemini matches results by name, not id), so consecutive
//!   turns of one role are merged ([`request`]);
//! - tool calls come without ids: the plugin makes them from the response id
//!   and the call's position (`call_<responseId>_<n>`), the same in a stream
//!   and a JSON answer ([`response::call_id`]);
//! - `thought: true` parts are reasoning; `thoughtsTokenCount` is counted in
//!   `completion_tokens` (OpenAI's rule: completion includes reasoning),
//!   `cachedContentTokenCount` is part of `prompt_tokens` ([`response::usage`]);
//! - `finishReason: "STOP"` on a turn that calls tools is `tool_calls`,
//!   `MAX_TOKENS` is `length`, the safety reasons `content_filter`, and a
//!   prompt blocked before generation (`promptFeedback.blockReason`, no
//!   candidates) an answer with no content and `content_filter`;
//! - a bad key is `400 INVALID_ARGUMENT` with reason `API_KEY_INVALID`: reported
//!   as 401 so the gateway tells the operator to check `GEMINI_API_KEY`
//!   ([`error`]);
//! - a stream repeats `usageMetadata` on every event: the decoder keeps the
//!   last one and sends it as the final chunk from `finish` ([`stream`]).

mod error;
mod request;
mod response;
mod stream;

use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

pub use stream::GeminiStreamDecoder;

const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The models the plugin knows, with their input and output token limits
/// (Google's models page; `GET /v1/models` serves these).
const MODELS: &[(&str, u32, u32)] = &[
    ("gemini-2.5-pro", 1_048_576, 65_536),
    ("gemini-2.5-flash", 1_048_576, 65_536),
    ("gemini-2.5-flash-lite", 1_048_576, 65_536),
    ("gemini-2.0-flash", 1_048_576, 8_192),
];

struct Gemini;

impl Provider for Gemini {
    type Decoder = GeminiStreamDecoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "gemini".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: DEFAULT_BASE_URL.to_string(),
            auth: AuthScheme::Header("x-goog-api-key".to_string()),
            models: MODELS
                .iter()
                .map(|(id, context, output)| ModelInfo {
                    id: (*id).to_string(),
                    context_window: Some(*context),
                    max_output_tokens: Some(*output),
                })
                .collect(),
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        request::build(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        response::parse(&response)
    }

    fn stream_decoder(model: String) -> GeminiStreamDecoder {
        GeminiStreamDecoder::new(model)
    }
}

export_plugin!(Gemini);

#[cfg(test)]
mod tests;
