//! Shorthands for building canonical values, mostly in plugin tests, where
//! spelling out every optional field of a request hides what a test is about.

use crate::types::{ChatRequest, Message, MessageContent, ProviderError, Role};

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
}
