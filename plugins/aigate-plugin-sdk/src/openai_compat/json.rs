//! Lenient readers over `serde_json::Value`.
//!
//! Walking a `Value` instead of deriving `Deserialize` structs keeps one wrong
//! type in an unimportant field (a number sent as a string, an object where a
//! string was documented) from failing a whole response, and keeps the
//! component small.

use serde_json::Value;

use crate::types::{FinishReason, ToolCall, Usage};

/// A string field; `None` when absent, `null` or not a string.
pub fn str_field(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A string field that may also be sent as a number (vLLM's error `code`).
pub fn code_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A token count; floats are truncated and huge values saturate, because a
/// count off by a fraction is better than a failed response.
pub fn u32_of(value: &Value) -> Option<u32> {
    if let Some(n) = value.as_u64() {
        return Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    value.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f.min(u32::MAX as f64) as u32)
}

/// A token count field (see [`u32_of`]).
pub fn u32_field(value: &Value, key: &str) -> Option<u32> {
    value.get(key).and_then(u32_of)
}

/// Unix seconds; 0 when the provider gave none (a plugin has no clock).
pub fn created_field(value: &Value) -> Option<u64> {
    let created = value.get("created")?;
    created.as_u64().or_else(|| created.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

/// Message text: normally a string, but some compatible servers answer with
/// a list of text parts, which are concatenated.
pub fn text_content(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| match part {
                    Value::String(s) => Some(s.as_str()),
                    other => other.get("text").and_then(Value::as_str),
                })
                .collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

/// A finish reason (`stop`, `length`, `tool_calls`, `content_filter`; anything else as
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

/// Tool-call arguments are JSON text on the wire, but a few servers send the
/// object itself; re-serialising it gives the text the contract expects.
pub fn arguments_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The tool calls of a non-stream message. DashScope adds an `index` to each;
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

/// The `usage` object, when present and not `null`.
///
/// `cached_tokens` comes from OpenAI's `prompt_tokens_details`, or DeepSeek's
/// `prompt_cache_hit_tokens`; `reasoning_tokens` from
/// `completion_tokens_details`. A missing total is the sum, so metering never
/// sees a zero total for a call that used tokens.
pub fn usage(value: Option<&Value>) -> Option<Usage> {
    let usage = value.filter(|v| v.is_object())?;
    let prompt_tokens = u32_field(usage, "prompt_tokens").unwrap_or(0);
    let completion_tokens = u32_field(usage, "completion_tokens").unwrap_or(0);
    let total_tokens = u32_field(usage, "total_tokens")
        .unwrap_or_else(|| prompt_tokens.saturating_add(completion_tokens));
    let cached_tokens = usage
        .get("prompt_tokens_details")
        .and_then(|d| u32_field(d, "cached_tokens"))
        .or_else(|| u32_field(usage, "prompt_cache_hit_tokens"));
    let reasoning_tokens = usage.get("completion_tokens_details").and_then(|d| u32_field(d, "reasoning_tokens"));
    Some(Usage { prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens })
}

pub(crate) use crate::errors::truncate;
