//! `GenerateContentResponse` → canonical response; the pieces the stream
//! decoder shares (finish reasons, usage, tool-call ids).

use aigate_plugin_sdk::json::{arguments_text, parse_body, str_field, u32_field};
use aigate_plugin_sdk::serde_json::Value;
use aigate_plugin_sdk::types::{
    ChatResponse, Choice, FinishReason, HttpResponse, ProviderError, ResponseMessage, ToolCall, Usage,
};

use crate::error;

pub fn parse(response: &HttpResponse) -> Result<ChatResponse, ProviderError> {
    if !(200..300).contains(&response.status) {
        return Err(error::from_response(response.status, &response.body));
    }
    let value = parse_body(response.status, &response.body)?;
    if let Some(error) = error::in_json(200, &value) {
        return Err(error);
    }
    let id = str_field(&value, "responseId").unwrap_or_default();
    let mut choices = Vec::new();
    let mut calls = 0;
    for (position, candidate) in candidates(&value).iter().enumerate() {
        let index = u32_field(candidate, "index").unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
        let mut message = ResponseMessage::default();
        for part in parts(candidate) {
            match Part::of(part) {
                Part::Text(text) => push_text(&mut message.content, text),
                Part::Thought(text) => push_text(&mut message.reasoning_content, text),
                Part::Call { id: given, name, arguments } => {
                    message.tool_calls.push(ToolCall {
                        id: given.unwrap_or_else(|| call_id(&id, calls)),
                        name,
                        arguments,
                    });
                    calls += 1;
                }
                Part::Other => {}
            }
        }
        let finish_reason = finish_reason(candidate, !message.tool_calls.is_empty());
        choices.push(Choice { index, message, finish_reason });
    }
    if choices.is_empty() && block_reason(&value).is_some() {
        // The prompt was blocked before any generation: an answer with no content.
        choices.push(Choice { finish_reason: Some(FinishReason::ContentFilter), ..Default::default() });
    }
    Ok(ChatResponse {
        id,
        model: str_field(&value, "modelVersion").unwrap_or_default(),
        choices,
        usage: usage(value.get("usageMetadata")),
        ..Default::default()
    })
}

fn push_text(to: &mut Option<String>, text: String) {
    match to {
        Some(existing) => existing.push_str(&text),
        None => *to = Some(text),
    }
}

pub fn candidates(value: &Value) -> &[Value] {
    value.get("candidates").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

pub fn parts(candidate: &Value) -> &[Value] {
    candidate.pointer("/content/parts").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `promptFeedback.blockReason` (`SAFETY`, `BLOCKLIST`, …) when the prompt was blocked.
pub fn block_reason(value: &Value) -> Option<String> {
    value.get("promptFeedback").and_then(|f| str_field(f, "blockReason"))
}

/// One content part, as far as the contract cares.
pub enum Part {
    Text(String),
    /// A `thought: true` text part: the model's reasoning summary.
    Thought(String),
    Call {
        id: Option<String>,
        name: String,
        arguments: String,
    },
    Other,
}

impl Part {
    pub fn of(part: &Value) -> Part {
        if let Some(call) = part.get("functionCall") {
            return Part::Call {
                id: str_field(call, "id").filter(|id| !id.is_empty()),
                name: str_field(call, "name").unwrap_or_default(),
                arguments: arguments_text(call.get("args")).unwrap_or_else(|| "{}".to_string()),
            };
        }
        match str_field(part, "text") {
            Some(text) if part.get("thought").and_then(Value::as_bool) == Some(true) => Part::Thought(text),
            Some(text) => Part::Text(text),
            None => Part::Other,
        }
    }
}

/// Gemini gives calls no id (the API has the field, but leaves it empty): one
/// made of the response id and the call's position in the answer, so a stream
/// and a JSON answer name a call alike and ids differ between turns.
pub fn call_id(response_id: &str, position: u32) -> String {
    if response_id.is_empty() { format!("call_{position}") } else { format!("call_{response_id}_{position}") }
}

/// `finishReason` in OpenAI's terms. Gemini ends a turn that calls tools with
/// `STOP`: that is `tool_calls` for the client.
pub fn finish_reason(candidate: &Value, called_tools: bool) -> Option<FinishReason> {
    Some(match candidate.get("finishReason")?.as_str()? {
        "STOP" if called_tools => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => FinishReason::ContentFilter,
        "FINISH_REASON_UNSPECIFIED" => return None,
        other => FinishReason::Other(other.to_ascii_lowercase()),
    })
}

/// `usageMetadata` in OpenAI's terms: `prompt_tokens` is `promptTokenCount`
/// (cached tokens included) plus `toolUsePromptTokenCount`;
/// `completion_tokens` is `candidatesTokenCount` plus `thoughtsTokenCount`
/// (Gemini counts thoughts apart, OpenAI's completion includes reasoning).
pub fn usage(value: Option<&Value>) -> Option<Usage> {
    let meta = value.filter(|v| v.is_object())?;
    let prompt = u32_field(meta, "promptTokenCount")
        .unwrap_or(0)
        .saturating_add(u32_field(meta, "toolUsePromptTokenCount").unwrap_or(0));
    let thoughts = u32_field(meta, "thoughtsTokenCount");
    let completion = u32_field(meta, "candidatesTokenCount").unwrap_or(0).saturating_add(thoughts.unwrap_or(0));
    let mut usage = Usage::new(prompt, completion);
    if let Some(total) = u32_field(meta, "totalTokenCount").filter(|total| *total >= usage.total_tokens) {
        usage.total_tokens = total;
    }
    usage.cached_tokens = u32_field(meta, "cachedContentTokenCount");
    usage.reasoning_tokens = thoughts;
    Some(usage)
}
