//! AIGate provider plugin for Alibaba Cloud DashScope (Model Studio, Qwen) in
//! its OpenAI-compatible mode.
//!
//! The wire format is OpenAI's, so the translation is the SDK's
//! `openai_compat`; this crate holds what DashScope does differently:
//! - `insufficient_quota` (429) is its TPM limit and clears within a minute,
//!   so it is retryable; its billing states have codes of their own.
//! - Content moderation fails a request (or cuts a stream) with
//!   `data_inspection_failed` instead of finishing with `content_filter`; a
//!   context overflow is a generic `invalid_parameter_error`. Both get the
//!   code OpenAI clients look for.
//! - It predates OpenAI's `developer` role.
//! - It has no `reasoning_effort`: its hybrid-thinking models have a switch,
//!   `enable_thinking`, which the effort sets ([`map_reasoning_effort`]).
//! - Its models list mixes chat models with embedding, image and speech ones;
//!   of the embedding models, the compatible mode serves `text-embedding-v3`
//!   and `text-embedding-v4` at `POST /embeddings`, in OpenAI's shape, so
//!   embeddings are the SDK's `openai_compat` too.

use aigate_plugin_sdk::json::{ReasoningEffort, extra_object, take_reasoning_effort};
use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder, same_code};
use aigate_plugin_sdk::serde_json::Value;
use aigate_plugin_sdk::types::{
    AuthScheme, Capabilities, ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, HttpRequest,
    HttpResponse, ModelInfo, PluginInfo, ProviderError, ResponseFormat,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

/// The international (Singapore) endpoint: keys are per region, so operators
/// with a Beijing key configure `https://dashscope.aliyuncs.com/compatible-mode/v1`.
const DEFAULT_BASE_URL: &str = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1";

const DASHSCOPE: Dialect = Dialect {
    developer_as_system: true,
    // DashScope itself answers tool calls with `"content": ""`, so that is
    // the form it certainly accepts back.
    missing_content_as_empty: true,
    echo_reasoning_content: false,
    max_tokens_key: "max_tokens",
    billing_codes: &[
        "PrepaidBillOverdue",
        "PostpaidBillOverdue",
        "CommodityNotPurchased",
        "Arrearage",
        "AllocationQuota.FreeTierOnly",
        "AccessDenied.Unpurchased",
    ],
    // Needed for errors inside a stream (status 200); the HTTP statuses of
    // these already make them retryable otherwise.
    retryable_codes: &[
        "Throttling",
        "Throttling.RateQuota",
        "Throttling.BurstRate",
        "Throttling.AllocationQuota",
        "limit_requests",
        "limit_burst_rate",
        "insufficient_quota",
        "internal_error",
        "InternalError.Algo",
        "RequestTimeOut",
        "SystemError",
        "ModelServiceFailed",
        "ModelServingError",
        "ModelUnavailable",
    ],
    refine_error,
    is_chat_model: is_listed_model,
};

/// The embedding models the compatible mode serves at `POST /embeddings`.
const EMBEDDING_MODELS: &[&str] = &["text-embedding-v3", "text-embedding-v4"];

/// Gives DashScope-specific errors the codes OpenAI clients handle, keeping
/// the provider's message (it names the limit that was hit).
fn refine_error(error: &mut ProviderError) {
    let code_is = |name: &str| {
        error.code.as_deref().is_some_and(|code| same_code(name, code)) || same_code(name, &error.error_type)
    };
    if code_is("data_inspection_failed") {
        error.code = Some("content_filter".to_string());
    } else if error.message.contains("Range of input length") {
        error.code = Some("context_length_exceeded".to_string());
    }
    // The free quota of a model without a paid option is gone for good,
    // although it comes as `insufficient_quota` like the TPM limit.
    if error.message.contains("Free allocated quota exceeded") {
        error.retryable = false;
    }
}

/// DashScope's `/models` lists everything the account can call; only chat
/// models can serve `/v1/chat/completions`.
fn is_chat_model(id: &str) -> bool {
    const NOT_CHAT: &[&str] = &[
        "embed",
        "rerank",
        "wanx",
        "wan2",
        "image",
        "t2i",
        "t2v",
        "i2v",
        "tts",
        "asr",
        "paraformer",
        "sensevoice",
        "cosyvoice",
        "sambert",
        "realtime",
        "livetranslate",
        "speech",
        "flux",
        "stable-diffusion",
    ];
    let id = id.to_ascii_lowercase();
    !NOT_CHAT.iter().any(|marker| id.contains(marker))
}

/// The models of DashScope's `/models` the plugin serves: chat models, and
/// the embedding models of [`EMBEDDING_MODELS`] (not the older or multimodal
/// ones, which the compatible mode does not serve).
fn is_listed_model(id: &str) -> bool {
    is_chat_model(id) || EMBEDDING_MODELS.contains(&id)
}

/// Turns OpenAI's `reasoning_effort` in `extra` into DashScope's
/// `enable_thinking`, and removes it: DashScope does not know the key.
///
/// `minimal` switches thinking off, the other efforts on. The effort sets no
/// `thinking_budget`: its upper limit is each model's own. An
/// `enable_thinking` the client put in `extra` itself wins. The effort is a
/// hint, so it never switches thinking on where DashScope refuses it with the
/// rest of the request (wire-format reference, section 1.4): in a
/// non-streaming call or in JSON mode the key is left out and the model's
/// default applies. An effort that is not one of OpenAI's values is a 400.
fn map_reasoning_effort(request: &mut ChatRequest) -> Result<(), ProviderError> {
    let mut extra = extra_object(&request.extra)?;
    if !extra.contains_key(ReasoningEffort::KEY) {
        return Ok(());
    }
    let effort = take_reasoning_effort(&mut extra)?;
    let json_mode = matches!(request.response_format, Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema(_)));
    let enable_thinking = match effort {
        None => None,
        Some(ReasoningEffort::Minimal) => Some(false),
        Some(_) if !request.stream || json_mode => None,
        Some(_) => Some(true),
    };
    if let Some(enable) = enable_thinking {
        extra.entry("enable_thinking").or_insert(Value::Bool(enable));
    }
    request.extra = Value::Object(extra).to_string();
    Ok(())
}

struct Qwen;

impl Provider for Qwen {
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
            |id: &&str| ModelInfo { id: id.to_string(), context_window: Some(8_192), max_output_tokens: None };
        let mut models = vec![
            // Non-thinking context; thinking mode allows 131,072.
            model("qwen-turbo", 1_000_000, 16_384),
            model("qwen-plus", 1_000_000, 32_768),
            model("qwen-max", 32_768, 8_192),
        ];
        models.extend(EMBEDDING_MODELS.iter().map(embedding));
        PluginInfo {
            name: "qwen".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: DEFAULT_BASE_URL.to_string(),
            auth: AuthScheme::Bearer,
            models,
        }
    }

    fn build_request(base_url: &str, mut request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        map_reasoning_effort(&mut request)?;
        DASHSCOPE.build_chat_request(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        DASHSCOPE.parse_chat_response(&response)
    }

    fn build_models_request(base_url: &str) -> Option<HttpRequest> {
        Some(DASHSCOPE.build_models_request(base_url))
    }

    fn parse_models(response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        DASHSCOPE.parse_models(&response, &Self::describe().models)
    }

    fn stream_decoder(model: String) -> StreamDecoder {
        DASHSCOPE.stream_decoder(model)
    }

    fn capabilities() -> Capabilities {
        Capabilities { embeddings: true, ..Capabilities::default() }
    }

    fn build_embeddings_request(base_url: &str, request: EmbeddingsRequest) -> Result<HttpRequest, ProviderError> {
        DASHSCOPE.build_embeddings_request(base_url, &request)
    }

    fn parse_embeddings_response(response: HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
        DASHSCOPE.parse_embeddings_response(&response)
    }
}

export_plugin!(Qwen);

#[cfg(test)]
mod tests;
