//! Translation for OpenAI-compatible Chat Completions APIs, and for the
//! Embeddings API (`POST /embeddings`) the same servers offer.
//!
//! OpenAI, DashScope's compatible mode, DeepSeek, vLLM, Ollama and many others
//! speak nearly the same wire format; they differ in small ways (which error
//! codes mean "stop retrying", whether `developer` is a known role, how they
//! name a context overflow). This module holds the common translation, and a
//! [`Dialect`] value holds one provider's differences, so each plugin is a few
//! lines of configuration.
//!
//! Parsing is lenient on purpose: providers add, omit, reorder and `null` keys
//! freely, and a gateway that rejects a response the client would have accepted
//! is worse than useless. Unknown keys are ignored, missing numbers become 0,
//! missing strings become empty. The one strict place is the numbering of
//! embeddings ([`Dialect::parse_embeddings_response`]): a vector handed to the
//! wrong text is worse than an error.

mod embeddings;
mod error;
mod json;
mod models;
mod request;
mod response;
mod stream;

pub use json::{finish_reason, tool_calls, usage};
pub use stream::StreamDecoder;

use crate::errors::RetryRules;
pub use crate::errors::same_code;
use crate::types::ProviderError;

/// One OpenAI-compatible provider's differences from OpenAI itself.
///
/// A `const` value in the plugin; every field is plain data or a `fn` pointer
/// so it is `Copy` and can be built at compile time.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Send `developer` messages as `system`, for providers that predate
    /// OpenAI's rename and reject the unknown role.
    pub developer_as_system: bool,
    /// Send an absent message `content` as `""` rather than `null`, for
    /// providers that reject `null` on assistant tool-call messages.
    pub missing_content_as_empty: bool,
    /// Send an assistant message's `reasoning_content` back upstream. Off for
    /// OpenAI-style APIs, which reject the unknown key in input messages.
    pub echo_reasoning_content: bool,
    /// The request key for the canonical `max_tokens` (`max_tokens` or
    /// `max_completion_tokens`).
    pub max_tokens_key: &'static str,
    /// Error codes or types that mean the account cannot pay or is not allowed
    /// to use the service: never retryable, whatever the status (providers send
    /// some of them with 429). Compared ignoring ASCII case and `_`, so one
    /// entry matches both `PrepaidBillOverdue` and `prepaid_bill_overdue`.
    pub billing_codes: &'static [&'static str],
    /// Error codes or types that are retryable whatever the status. Needed for
    /// errors inside a stream, which arrive with status 200.
    pub retryable_codes: &'static [&'static str],
    /// Rewrites a provider error after the generic parsing, e.g. to give a
    /// provider-specific code its OpenAI name. Runs after `retryable` is set.
    pub refine_error: fn(&mut ProviderError),
    /// Whether a model id from the provider's models list is a chat model
    /// (lists mix in embedding, image, audio models).
    pub is_chat_model: fn(&str) -> bool,
}

impl Dialect {
    /// OpenAI's own API; also the right start for vLLM, Ollama and DeepSeek.
    pub const OPENAI: Dialect = Dialect {
        developer_as_system: false,
        missing_content_as_empty: false,
        echo_reasoning_content: false,
        max_tokens_key: "max_tokens",
        // OpenAI's 429 `insufficient_quota` means the credit is spent: retrying
        // cannot help until someone pays.
        billing_codes: &[
            "insufficient_quota",
            "billing_hard_limit_reached",
            "billing_not_active",
            "account_deactivated",
        ],
        retryable_codes: &[
            "rate_limit_exceeded",
            "server_error",
            "internal_error",
            "overloaded_error",
            "service_unavailable",
            "timeout",
        ],
        refine_error: keep_error,
        is_chat_model: openai_is_chat_model,
    };

    /// Whether the same request may succeed if sent again: billing states
    /// never; timeouts, throttling and server errors yes; other client errors
    /// no. `status` is 200 for an error inside a stream, where only the code
    /// can tell.
    pub fn is_retryable(&self, status: u16, error_type: &str, code: Option<&str>) -> bool {
        self.retry_rules().is_retryable(status, error_type, code)
    }

    /// The dialect's code lists as the SDK's generic [`RetryRules`].
    pub fn retry_rules(&self) -> RetryRules {
        RetryRules { billing_codes: self.billing_codes, retryable_codes: self.retryable_codes }
    }
}

/// The default [`Dialect::refine_error`]: leaves the error as parsed.
pub fn keep_error(_: &mut ProviderError) {}

/// Keeps OpenAI's chat-capable models: drops embeddings, audio-only, image,
/// moderation and legacy completion models, and realtime models, which need a
/// WebSocket rather than Chat Completions.
pub fn openai_is_chat_model(id: &str) -> bool {
    const NOT_CHAT: &[&str] = &[
        "embed",
        "tts",
        "whisper",
        "transcribe",
        "dall-e",
        "image",
        "moderation",
        "davinci",
        "babbage",
        "realtime",
        "sora",
        "rerank",
    ];
    let id = id.to_ascii_lowercase();
    !NOT_CHAT.iter().any(|marker| id.contains(marker))
}

#[cfg(test)]
mod tests;
