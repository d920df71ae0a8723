//! Readers of OpenAI's own keys and values (`usage`, `finish_reason`,
//! `tool_calls`), on top of the format-neutral readers of [`crate::json`].

use serde_json::Value;

pub(crate) use crate::json::{arguments_text, code_field, created_field, str_field, text_content, u32_field};
use crate::types::{FinishReason, ToolCall, Usage};

/// An OpenAI finish reason (`stop`, `length`, `tool_calls`, `content_filter`; anything else as
/// `other`); `None` when absent or `null`.
pub fn finish_reason(value: Option<&Value>) -> Option<FinishReason> {
    let reason = value?.as_str()?;
    Some(match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    })
}

/// The tool calls of a non-stream OpenAI message (`[{id, function: {name, arguments}}]`). DashScope adds an `index` to each;
/// it is ignored because the list order is the order.
pub fn tool_calls(value: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = value.and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .map(|call| {
            let function = call.get("function");
            ToolCall {
                id: str_field(call, "id").unwrap_or_default(),
                name: function.and_then(|f| str_field(f, "name")).unwrap_or_default(),
                arguments: arguments_text(function.and_then(|f| f.get("arguments"))).unwrap_or_default(),
            }
        })
        .collect()
}

/// OpenAI's `usage` object, when present and not `null`.
///
/// `cached_tokens` comes from OpenAI's `prompt_tokens_details`, or DeepSeek's
/// `prompt_cache_hit_tokens`; `reasoning_tokens` from
/// `completion_tokens_details`. A missing total is the sum, so metering never
/// sees a zero total for a call that used tokens.
pub fn usage(value: Option<&Value>) -> Option<Usage> {
    let usage = value.filter(|v| v.is_object())?;
    let prompt_tokens = u32_field(usage, "prompt_tokens").unwrap_or(0);
    let completion_tokens = u32_field(usage, "completion_tokens").unwrap_or(0);
    let total_tokens =
        u32_field(usage, "total_tokens").unwrap_or_else(|| prompt_tokens.saturating_add(completion_tokens));
    let cached_tokens = usage
        .get("prompt_tokens_details")
        .and_then(|d| u32_field(d, "cached_tokens"))
        .or_else(|| u32_field(usage, "prompt_cache_hit_tokens"));
    let reasoning_tokens = usage.get("completion_tokens_details").and_then(|d| u32_field(d, "reasoning_tokens"));
    Some(Usage { prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens })
}

pub(crate) use crate::errors::truncate;
