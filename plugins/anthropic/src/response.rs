//! Messages API response → canonical response, and the models list.

use aigate_plugin_sdk::types::{
    ChatResponse, Choice, FinishReason, HttpResponse, ModelInfo, ProviderError, ResponseMessage, ToolCall, Usage,
};
use serde_json::Value;

use crate::error::{error_from_json, parse_error};

pub(crate) fn parse(response: &HttpResponse) -> Result<ChatResponse, ProviderError> {
    if !(200..300).contains(&response.status) {
        return Err(parse_error(response.status, &response.body));
    }
    let value = json_body(response, "the provider's response is not JSON")?;
    if value.get("type").and_then(Value::as_str) == Some("error")
        && let Some(error) = error_from_json(response.status, &value)
    {
        return Err(error);
    }

    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in value.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.get_or_insert_default().push_str(str_field(block, "text")),
            Some("thinking") => reasoning.get_or_insert_default().push_str(str_field(block, "thinking")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: str_field(block, "id").to_string(),
                name: str_field(block, "name").to_string(),
                arguments: block.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            // `redacted_thinking`, server tool blocks: nothing the canonical
            // format can carry.
            _ => {}
        }
    }
    let finish_reason = value.get("stop_reason").and_then(Value::as_str).map(finish_reason);
    let refusal = matches!(finish_reason, Some(FinishReason::ContentFilter)).then(|| text.clone()).flatten();
    Ok(ChatResponse {
        id: str_field(&value, "id").to_string(),
        // The API sends no creation time and a plugin has no clock.
        created: 0,
        model: str_field(&value, "model").to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage { content: text, reasoning_content: reasoning, tool_calls, refusal },
            finish_reason,
        }],
        usage: value.get("usage").filter(|u| u.is_object()).map(|u| UsageCounts::default().update(u).usage()),
        raw_cost: None,
        system_fingerprint: None,
    })
}

/// `end_turn`/`stop_sequence` → stop, `max_tokens` → length, `tool_use` →
/// tool calls, `refusal` → content filter; `pause_turn` and anything newer
/// keep their name.
pub(crate) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// The usage counts as Anthropic reports them. `input_tokens` excludes the
/// cached prompt, so the canonical prompt count (OpenAI's meaning: every
/// prompt token) adds cache reads and cache writes back in.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UsageCounts {
    input: u32,
    output: u32,
    cache_read: Option<u32>,
    cache_creation: u32,
}

impl UsageCounts {
    /// Takes every count `usage` has; a stream's `message_delta` repeats only
    /// some of them (cumulative), so absent keys keep their value.
    pub(crate) fn update(mut self, usage: &Value) -> Self {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        if let Some(n) = count("input_tokens") {
            self.input = n;
        }
        if let Some(n) = count("output_tokens") {
            self.output = n;
        }
        if let Some(n) = count("cache_read_input_tokens") {
            self.cache_read = Some(n);
        }
        if let Some(n) = count("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
        self
    }

    pub(crate) fn usage(&self) -> Usage {
        let prompt_tokens = self.input.saturating_add(self.cache_read.unwrap_or(0)).saturating_add(self.cache_creation);
        Usage {
            prompt_tokens,
            completion_tokens: self.output,
            total_tokens: prompt_tokens.saturating_add(self.output),
            cached_tokens: self.cache_read,
            reasoning_tokens: None,
        }
    }
}

/// Anthropic's list, `{"data":[{"type":"model","id",…}],"has_more",…}`: every
/// listed model is a chat model. It names dated snapshots
/// (`claude-sonnet-4-5-20250929`) while clients mostly use the aliases, so a
/// known alias is listed too when a snapshot of it is.
pub(crate) fn parse_models(response: &HttpResponse, known: &[ModelInfo]) -> Result<Vec<ModelInfo>, ProviderError> {
    if !(200..300).contains(&response.status) {
        return Err(parse_error(response.status, &response.body));
    }
    let value = json_body(response, "the provider's models list is not JSON")?;
    let ids: Vec<&str> = value
        .get("data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry.get("id").and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .collect();
    let limits_of = |id: &str| known.iter().find(|m| id == m.id || snapshot_of(id, &m.id));
    let mut models: Vec<ModelInfo> = Vec::new();
    for alias in known {
        if ids.iter().any(|id| *id == alias.id || snapshot_of(id, &alias.id)) {
            models.push(alias.clone());
        }
    }
    for id in ids {
        if models.iter().any(|m| m.id == id) {
            continue;
        }
        models.push(match limits_of(id) {
            Some(known) => ModelInfo { id: id.to_string(), ..known.clone() },
            None => ModelInfo { id: id.to_string(), context_window: None, max_output_tokens: None },
        });
    }
    Ok(models)
}

/// `claude-sonnet-4-5-20250929` is a snapshot of `claude-sonnet-4-5`.
fn snapshot_of(id: &str, alias: &str) -> bool {
    id.strip_prefix(alias)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|date| date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()))
}

fn json_body(response: &HttpResponse, what: &str) -> Result<Value, ProviderError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        ProviderError::invalid_response(
            response.status,
            &format!("{what} ({e})"),
            &String::from_utf8_lossy(&response.body),
        )
    })
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}
