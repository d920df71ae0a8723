//! OpenAI Chat Completions response → canonical chat response.

use serde_json::Value;

use super::Dialect;
use super::json::{created_field, finish_reason, str_field, text_content, tool_calls, truncate, u32_field, usage};
use crate::types::{ChatResponse, Choice, HttpResponse, ProviderError, ResponseMessage};

impl Dialect {
    /// The canonical response for a provider response, or the provider's error.
    ///
    /// Any non-2xx status is an error (see [`Dialect::parse_error`]); so is a
    /// 2xx body holding an `error` object, which some proxies send. A 2xx body
    /// that is not JSON is reported as a provider error with the real status
    /// rather than a plugin fault: the provider, not the plugin, misbehaved.
    pub fn parse_chat_response(&self, response: &HttpResponse) -> Result<ChatResponse, ProviderError> {
        if !(200..300).contains(&response.status) {
            return Err(self.parse_error(response.status, &response.body));
        }
        let value: Value = serde_json::from_slice(&response.body).map_err(|e| {
            let text = String::from_utf8_lossy(&response.body);
            ProviderError {
                status: response.status,
                error_type: crate::errors::INVALID_RESPONSE.to_string(),
                code: None,
                message: format!("the provider's response is not JSON ({e}): {}", truncate(text.trim(), 512)),
                retryable: false,
            }
        })?;
        if value.get("choices").is_none()
            && let Some(error) = self.error_in_json(response.status, &value)
        {
            return Err(error);
        }
        Ok(chat_response(&value))
    }
}

fn chat_response(value: &Value) -> ChatResponse {
    let choices = value
        .get("choices")
        .and_then(Value::as_array)
        .map(|choices| choices.iter().enumerate().map(|(i, c)| choice(i, c)).collect())
        .unwrap_or_default();
    ChatResponse {
        id: str_field(value, "id").unwrap_or_default(),
        created: created_field(value).unwrap_or(0),
        model: str_field(value, "model").unwrap_or_default(),
        choices,
        usage: usage(value.get("usage")),
        raw_cost: None,
        system_fingerprint: str_field(value, "system_fingerprint"),
    }
}

fn choice(position: usize, value: &Value) -> Choice {
    let message = value.get("message");
    let field = |key: &str| message.and_then(|m| m.get(key));
    Choice {
        index: u32_field(value, "index").unwrap_or(u32::try_from(position).unwrap_or(u32::MAX)),
        message: ResponseMessage {
            content: text_content(field("content")),
            // `reasoning` is the key Ollama and OpenRouter use for the same text.
            reasoning_content: field("reasoning_content")
                .or_else(|| field("reasoning"))
                .and_then(Value::as_str)
                .map(str::to_string),
            tool_calls: tool_calls(field("tool_calls")),
            refusal: field("refusal").and_then(Value::as_str).map(str::to_string),
        },
        finish_reason: finish_reason(value.get("finish_reason")),
    }
}
