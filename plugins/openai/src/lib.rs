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
//!
//! Embeddings (`POST /embeddings`) are the SDK's `openai_compat` as well; the
//! same request suits every server, and the models list keeps embedding
//! models next to the chat ones.

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder, openai_is_chat_model};
use aigate_plugin_sdk::types::{
    AuthScheme, Capabilities, ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, HttpRequest,
    HttpResponse, ModelInfo, PluginInfo, ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// OpenAI's own API.
const OPENAI: Dialect = Dialect { max_tokens_key: "max_completion_tokens", ..Dialect::OPENAI };

/// OpenAI's rules for reading a models list, keeping embedding models too.
const MODELS_LIST: Dialect = Dialect { is_chat_model: is_listed_model, ..Dialect::OPENAI };

/// The models of a `/models` list the plugin serves: chat models, and
/// embedding models (`text-embedding-3-small`, vLLM's and Ollama's
/// `…-embed-…`), which `/embeddings` serves.
fn is_listed_model(id: &str) -> bool {
    openai_is_chat_model(id) || id.to_ascii_lowercase().contains("embed")
}

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
        // The context window of an embedding model is its limit per text; it
        // has no output tokens.
        let embedding =
            |id: &str| ModelInfo { id: id.to_string(), context_window: Some(8_191), max_output_tokens: None };
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
                embedding("text-embedding-3-small"),
                embedding("text-embedding-3-large"),
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
        MODELS_LIST.parse_models(&response, &Self::describe().models)
    }

    fn stream_decoder(model: String) -> StreamDecoder {
        Dialect::OPENAI.stream_decoder(model)
    }

    fn capabilities() -> Capabilities {
        Capabilities { embeddings: true, ..Capabilities::default() }
    }

    fn build_embeddings_request(base_url: &str, request: EmbeddingsRequest) -> Result<HttpRequest, ProviderError> {
        Dialect::OPENAI.build_embeddings_request(base_url, &request)
    }

    fn parse_embeddings_response(response: HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
        Dialect::OPENAI.parse_embeddings_response(&response)
    }
}

export_plugin!(OpenAi);

#[cfg(test)]
mod tests {
    use aigate_plugin_sdk::ChunkDecoder;
    use aigate_plugin_sdk::serde_json::{self, Value, json};
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
        assert_eq!((info.name.as_str(), info.contract_version.as_str()), ("openai", "0.3.0"));
        assert_eq!(info.default_base_url, "https://api.openai.com/v1");
        assert_eq!(info.auth, AuthScheme::Bearer);
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small", "text-embedding-3-large"]
        );
        assert_eq!(OpenAi::capabilities(), Capabilities { embeddings: true, native_apis: vec![] });
    }

    #[test]
    fn models_list_keeps_embedding_models() {
        let response = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"text-embedding-3-large","object":"model"},{"id":"text-embedding-ada-002"},{"id":"whisper-1"},{"id":"dall-e-3"},{"id":"nomic-embed-text"}]}"#.to_vec(),
        };
        let models = match OpenAi::parse_models(response) {
            Ok(models) => models,
            Err(error) => unreachable!("{error:?}"),
        };
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["gpt-4o", "text-embedding-3-large", "text-embedding-ada-002", "nomic-embed-text"]);
        assert_eq!(models[1].context_window, Some(8_191), "limits come from the plugin's table");
    }

    /// The same request for OpenAI and for a compatible server; `dimensions`
    /// and `user` only when set.
    #[test]
    fn embeddings_request() {
        let mut request = EmbeddingsRequest::new("text-embedding-3-small", vec!["The food was delicious".to_string()]);
        for base_url in ["https://api.openai.com/v1", "http://localhost:11434/v1/"] {
            let http = match OpenAi::build_embeddings_request(base_url, request.clone()) {
                Ok(http) => http,
                Err(error) => unreachable!("{error:?}"),
            };
            assert_eq!(http.url, format!("{}/embeddings", base_url.trim_end_matches('/')));
            assert_eq!(
                String::from_utf8_lossy(&http.body),
                r#"{"encoding_format":"float","input":["The food was delicious"],"model":"text-embedding-3-small"}"#
            );
        }
        request.dimensions = Some(512);
        request.user = Some("user-1234".to_string());
        let body = match OpenAi::build_embeddings_request(DEFAULT_BASE_URL, request) {
            Ok(http) => serde_json::from_slice::<Value>(&http.body).ok(),
            Err(error) => unreachable!("{error:?}"),
        };
        assert_eq!(
            body,
            Some(json!({"model": "text-embedding-3-small", "input": ["The food was delicious"], "dimensions": 512,
                   "encoding_format": "float", "user": "user-1234"}))
        );
    }

    /// OpenAI's documented response shape.
    #[test]
    fn embeddings_response() {
        let response = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"object":"list","data":[{"object":"embedding","embedding":[0.0023064255,-0.009327292,-0.0028842222],"index":0}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#.to_vec(),
        };
        let parsed = match OpenAi::parse_embeddings_response(response) {
            Ok(parsed) => parsed,
            Err(error) => unreachable!("{error:?}"),
        };
        assert_eq!(parsed.model, "text-embedding-3-small");
        assert_eq!(parsed.embeddings, [vec![0.0023064255_f32, -0.009327292, -0.0028842222]]);
        assert_eq!(parsed.usage.map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens)), Some((8, 0, 8)));
    }

    #[test]
    fn embeddings_errors() {
        let error = |status: u16, body: &[u8]| match OpenAi::parse_embeddings_response(HttpResponse {
            status,
            headers: vec![],
            body: body.to_vec(),
        }) {
            Ok(parsed) => unreachable!("expected an error, got {parsed:?}"),
            Err(error) => error,
        };
        let quota = error(429, br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#);
        assert_eq!((quota.status, quota.retryable), (429, false), "the credit is spent");
        let too_long = error(400, br#"{"error":{"message":"This model's maximum context length is 8192 tokens, however you requested 9000 tokens.","type":"invalid_request_error","param":null,"code":null}}"#);
        assert_eq!(
            (too_long.status, too_long.error_type.as_str(), too_long.retryable),
            (400, "invalid_request_error", false)
        );
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
