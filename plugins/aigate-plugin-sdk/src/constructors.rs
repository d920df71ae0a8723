//! Shorthands for building canonical values: `Default` for the output records
//! a plugin fills by hand (so `ChoiceDelta { content: Some(text), ..Default::default() }`
//! says only what matters), constructors for the common cases, and test
//! shorthands for requests.

use crate::errors::EMBEDDINGS_UNSUPPORTED;
use crate::types::{
    Capabilities, ChatRequest, ChatResponse, Choice, ChoiceDelta, ContentPart, EmbeddingsRequest, FinishReason,
    Message, MessageContent, ProviderError, ResponseMessage, Role, StreamChunk, ToolCallDelta, Usage,
};

impl ChatRequest {
    /// A request for `model` with `messages` and every option unset
    /// (non-streaming, no tools, no extras).
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            temperature: None,
            top_p: None,
            max_tokens: None,
            stop: Vec::new(),
            seed: None,
            n: None,
            presence_penalty: None,
            frequency_penalty: None,
            response_format: None,
            user: None,
            stream: false,
            extra: String::new(),
        }
    }
}

impl Message {
    /// A plain-text message from `role`.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning_content: None,
        }
    }
}

impl MessageContent {
    /// The text of the content: the string, or the text parts concatenated (image parts
    /// dropped), for formats that take plain text in places (a system prompt, a tool result).
    pub fn text_only(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|part| match part {
                    ContentPart::Text(text) => Some(text.as_str()),
                    ContentPart::Image(_) => None,
                })
                .collect(),
        }
    }
}

impl ProviderError {
    /// An error for a request the plugin cannot translate: the contract says
    /// such errors carry status 400 and are never retryable.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        ProviderError {
            status: 400,
            error_type: "invalid_request_error".to_string(),
            code: None,
            message: message.into(),
            retryable: false,
        }
    }

    /// The refusal of an embeddings call by a plugin that has none (the
    /// default of [`crate::Provider::build_embeddings_request`]): status 400,
    /// `invalid_request_error`, code [`crate::errors::EMBEDDINGS_UNSUPPORTED`], not
    /// retryable. `provider` is the plugin's name, so the client learns which
    /// provider to avoid.
    pub fn embeddings_unsupported(provider: &str) -> Self {
        ProviderError {
            code: Some(EMBEDDINGS_UNSUPPORTED.to_string()),
            ..ProviderError::invalid_request(format!("provider `{provider}` serves no embeddings"))
        }
    }
}

impl EmbeddingsRequest {
    /// A request for `model` to embed `input`, with no `dimensions` and no
    /// `user`.
    pub fn new(model: impl Into<String>, input: Vec<String>) -> Self {
        EmbeddingsRequest { model: model.into(), input, dimensions: None, user: None }
    }
}

/// Nothing beyond chat: no embeddings, no native inbound APIs (what a 0.1 or
/// 0.2 plugin has, and the default of [`crate::Provider::capabilities`]).
impl Default for Capabilities {
    fn default() -> Self {
        Capabilities { embeddings: false, native_apis: Vec::new() }
    }
}

/// Index 0, no role, no content, no tool calls, no finish reason.
impl Default for ChoiceDelta {
    fn default() -> Self {
        ChoiceDelta {
            index: 0,
            role: None,
            content: None,
            reasoning_content: None,
            tool_calls: Vec::new(),
            finish_reason: None,
            refusal: None,
        }
    }
}

impl ChoiceDelta {
    /// Text for choice 0.
    pub fn content(text: impl Into<String>) -> Self {
        ChoiceDelta { content: Some(text.into()), ..Default::default() }
    }

    /// Reasoning ("thinking") text for choice 0.
    pub fn reasoning(text: impl Into<String>) -> Self {
        ChoiceDelta { reasoning_content: Some(text.into()), ..Default::default() }
    }

    /// Choice 0 ends for `reason`.
    pub fn finish(reason: FinishReason) -> Self {
        ChoiceDelta { finish_reason: Some(reason), ..Default::default() }
    }

    /// One tool-call delta for choice 0.
    pub fn tool_call(call: ToolCallDelta) -> Self {
        ChoiceDelta { tool_calls: vec![call], ..Default::default() }
    }
}

/// Empty id and model, `created` 0, no choices, no usage.
impl Default for StreamChunk {
    fn default() -> Self {
        StreamChunk {
            id: String::new(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            raw_cost: None,
        }
    }
}

impl StreamChunk {
    /// A chunk of `choices`, no usage.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>, choices: Vec<ChoiceDelta>) -> Self {
        StreamChunk { id: id.into(), created, model: model.into(), choices, ..Default::default() }
    }

    /// The usage chunk: no choices, only `usage`, as OpenAI's
    /// `stream_options.include_usage` ends a stream. The host meters a stream by
    /// the last usage it sees: a decoder should send it once, at the end.
    pub fn usage(id: impl Into<String>, created: u64, model: impl Into<String>, usage: Usage) -> Self {
        StreamChunk { id: id.into(), created, model: model.into(), usage: Some(usage), ..Default::default() }
    }
}

/// All counts 0, no details.
impl Default for Usage {
    fn default() -> Self {
        Usage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cached_tokens: None, reasoning_tokens: None }
    }
}

impl Usage {
    /// `prompt` and `completion` tokens, total their sum (saturating). The
    /// fields mean what OpenAI's do: `prompt_tokens` includes `cached_tokens`,
    /// `completion_tokens` includes `reasoning_tokens`.
    pub fn new(prompt: u32, completion: u32) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            ..Default::default()
        }
    }
}

/// No content, reasoning, tool calls or refusal.
impl Default for ResponseMessage {
    fn default() -> Self {
        ResponseMessage { content: None, reasoning_content: None, tool_calls: Vec::new(), refusal: None }
    }
}

/// Index 0, an empty message, no finish reason.
impl Default for Choice {
    fn default() -> Self {
        Choice { index: 0, message: ResponseMessage::default(), finish_reason: None }
    }
}

/// Empty id and model, `created` 0, no choices, no usage.
impl Default for ChatResponse {
    fn default() -> Self {
        ChatResponse {
            id: String::new(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            raw_cost: None,
            system_fingerprint: None,
        }
    }
}
