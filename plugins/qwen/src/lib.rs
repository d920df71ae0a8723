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
//! - Its models list mixes chat models with embedding, image and speech ones.

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder, same_code};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError,
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
    is_chat_model,
};

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

struct Qwen;

impl Provider for Qwen {
    type Decoder = StreamDecoder;

    fn describe() -> PluginInfo {
        let model = |id: &str, context_window: u32, max_output_tokens: u32| ModelInfo {
            id: id.to_string(),
            context_window: Some(context_window),
            max_output_tokens: Some(max_output_tokens),
        };
        PluginInfo {
            name: "qwen".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: DEFAULT_BASE_URL.to_string(),
            auth: AuthScheme::Bearer,
            models: vec![
                // Non-thinking context; thinking mode allows 131,072.
                model("qwen-turbo", 1_000_000, 16_384),
                model("qwen-plus", 1_000_000, 32_768),
                model("qwen-max", 32_768, 8_192),
            ],
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
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
}

export_plugin!(Qwen);

#[cfg(test)]
mod tests;
