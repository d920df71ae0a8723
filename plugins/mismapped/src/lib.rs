//! A deliberately broken copy of the openai plugin, for the conformance checker's own tests: it
//! names itself `openai` so that `fixtures/openai` runs against it, and sends the canonical
//! `max_tokens` as `max_token`, a typo the provider would silently ignore (the answer would just
//! not be capped). `aigate plugin check` must fail it with a report naming the missing key.

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

/// The bug under test.
const WRONG: Dialect = Dialect { max_tokens_key: "max_token", ..Dialect::OPENAI };

struct Mismapped;

impl Provider for Mismapped {
    type Decoder = StreamDecoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "openai".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: "https://api.openai.com/v1".to_string(),
            auth: AuthScheme::Bearer,
            models: vec![ModelInfo { id: "gpt-4o".to_string(), context_window: None, max_output_tokens: None }],
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        WRONG.build_chat_request(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        WRONG.parse_chat_response(&response)
    }

    fn stream_decoder(model: String) -> StreamDecoder {
        WRONG.stream_decoder(model)
    }
}

export_plugin!(Mismapped);
