//! AIGate provider plugin for OpenAI and any server that speaks its Chat
//! Completions API (DeepSeek, vLLM, Ollama, LiteLLM, …): the operator points
//! the base URL at it.
//!
//! The translation is the SDK's `openai_compat` with OpenAI's own rules
//! (`insufficient_quota` means the credit is spent: not retryable), plus one
//! choice made from the base URL: OpenAI itself gets `max_completion_tokens`
//! (its reasoning models reject `max_tokens`) and the `developer` role, while
//! other servers get `max_tokens` and `system`, which every compatible server
//! understands and many do not know the newer names.

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// OpenAI's own API.
const OPENAI: Dialect = Dialect { max_tokens_key: "max_completion_tokens", ..Dialect::OPENAI };

/// Other OpenAI-compatible servers: the lowest common denominator.
const COMPATIBLE: Dialect = Dialect { developer_as_system: true, ..Dialect::OPENAI };

fn dialect_for(base_url: &str) -> &'static Dialect {
    let after_scheme = base_url.split_once("://").map_or(base_url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = host.split(':').next().unwrap_or_default();
    if host.eq_ignore_ascii_case("api.openai.com") { &OPENAI } else { &COMPATIBLE }
}

struct OpenAi;

impl Provider for OpenAi {
    type Decoder = StreamDecoder;

    fn describe() -> PluginInfo {
        let model = |id: &str, context_window: u32, max_output_tokens: u32| ModelInfo {
            id: id.to_string(),
            context_window: Some(context_window),
            max_output_tokens: Some(max_output_tokens),
        };
        PluginInfo {
            name: "openai".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: DEFAULT_BASE_URL.to_string(),
            auth: AuthScheme::Bearer,
            models: vec![
                model("gpt-4o", 128_000, 16_384),
                model("gpt-4o-mini", 128_000, 16_384),
                model("gpt-4.1", 1_047_576, 32_768),
                model("gpt-4.1-mini", 1_047_576, 32_768),
            ],
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        dialect_for(base_url).build_chat_request(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        Dialect::OPENAI.parse_chat_response(&response)
    }

    fn build_models_request(base_url: &str) -> Option<HttpRequest> {
        Some(Dialect::OPENAI.build_models_request(base_url))
    }

    fn parse_models(response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        Dialect::OPENAI.parse_models(&response, &Self::describe().models)
    }

    fn stream_decoder(model: String) -> StreamDecoder {
        Dialect::OPENAI.stream_decoder(model)
    }
}

export_plugin!(OpenAi);

#[cfg(test)]
mod tests {
    use aigate_plugin_sdk::ChunkDecoder;
    use aigate_plugin_sdk::types::{FinishReason, Message, Role, SseEvent};

    use super::*;

    fn body(base_url: &str, request: ChatRequest) -> String {
        match OpenAi::build_request(base_url, request) {
            Ok(http) => String::from_utf8_lossy(&http.body).into_owned(),
            Err(error) => unreachable!("{error:?}"),
        }
    }

    #[test]
    fn describe() {
        let info = OpenAi::describe();
        assert_eq!((info.name.as_str(), info.contract_version.as_str()), ("openai", "0.2.0"));
        assert_eq!(info.default_base_url, "https://api.openai.com/v1");
        assert_eq!(info.auth, AuthScheme::Bearer);
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"]);
    }

    #[test]
    fn request_depends_on_the_server() {
        let mut request =
            ChatRequest::new("gpt-4o", vec![Message::text(Role::Developer, "d"), Message::text(Role::User, "u")]);
        request.max_tokens = Some(100);
        request.stream = true;

        let openai = body("https://api.openai.com/v1", request.clone());
        assert!(openai.contains(r#""max_completion_tokens":100"#), "{openai}");
        assert!(openai.contains(r#""role":"developer""#), "{openai}");
        assert!(openai.contains(r#""stream_options":{"include_usage":true}"#), "{openai}");

        let ollama = body("http://localhost:11434/v1", request.clone());
        assert!(ollama.contains(r#""max_tokens":100"#), "{ollama}");
        assert!(ollama.contains(r#""role":"system""#), "{ollama}");
        assert!(ollama.contains(r#""stream_options":{"include_usage":true}"#), "{ollama}");

        let key = |base_url| dialect_for(base_url).max_tokens_key;
        assert_eq!(key("https://user@API.openai.com:443/v1"), "max_completion_tokens");
        assert_eq!(key("https://api.openai.com.example/v1"), "max_tokens");
        assert_eq!(key("https://api.deepseek.com"), "max_tokens");
    }

    #[test]
    fn insufficient_quota_is_final() {
        let response = HttpResponse {
            status: 429,
            headers: vec![],
            body: br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#.to_vec(),
        };
        let error = OpenAi::parse_response(response);
        assert!(matches!(error, Err(ref e) if e.status == 429 && !e.retryable), "{error:?}");
    }

    #[test]
    fn openai_stream() {
        let mut decoder = OpenAi::stream_decoder("gpt-4o-mini".to_string());
        let events = [
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"obfuscation":"x"}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
            "[DONE]",
        ];
        let mut chunks = Vec::new();
        for data in events {
            match decoder.push(SseEvent { event: None, data: data.to_string() }) {
                Ok(more) => chunks.extend(more),
                Err(error) => unreachable!("{error:?}"),
            }
        }
        assert!(matches!(decoder.finish(), Ok(ref rest) if rest.is_empty()));
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[1].choices[0].content.as_deref(), Some("Hello"));
        assert_eq!(chunks[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(chunks[3].usage.as_ref().map(|u| u.total_tokens), Some(21));
        assert!(chunks.iter().all(|c| c.id == "chatcmpl-123" && c.created == 1694268190));
    }
}
