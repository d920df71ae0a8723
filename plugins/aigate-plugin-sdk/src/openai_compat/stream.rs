//! OpenAI Chat Completions SSE stream → canonical stream chunks.

use serde_json::Value;

use super::Dialect;
use super::json::{arguments_text, created_field, finish_reason, str_field, truncate, u32_field, usage};
use crate::ChunkDecoder;
use crate::types::{ChoiceDelta, ProviderError, Role, SseEvent, StreamChunk, ToolCallDelta, Usage};

/// Decodes one OpenAI-compatible SSE stream.
///
/// Holds what later chunks need: the id, creation time and model of the
/// stream (so every canonical chunk has them, even when a provider sends them
/// once), which tool calls already sent their id and name, and a usage that
/// arrived together with choices, which is reported on its own at
/// [`ChunkDecoder::finish`] because the contract wants usage in a chunk
/// without choices.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    dialect: Dialect,
    id: String,
    created: u64,
    model: String,
    pending_usage: Option<Usage>,
    tool_calls: Vec<ToolCallState>,
}

#[derive(Debug, Clone)]
struct ToolCallState {
    choice: u32,
    index: u32,
    id_sent: bool,
    name_sent: bool,
}

impl Dialect {
    /// A decoder for a stream whose request asked for `model`.
    pub fn stream_decoder(&self, model: String) -> StreamDecoder {
        StreamDecoder {
            dialect: *self,
            id: String::new(),
            created: 0,
            model,
            pending_usage: None,
            tool_calls: Vec::new(),
        }
    }
}

impl ChunkDecoder for StreamDecoder {
    /// Decodes one event: at most one canonical chunk per provider chunk.
    ///
    /// Errors come back as the provider's error with status 200, whether sent
    /// as `event: error` (DashScope's flat `{"code","message"}`) or as a data
    /// event holding an `error` object (moderation cutting a stream short).
    fn push(&mut self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        let data = event.data.trim();
        let error_event = event.event.as_deref().is_some_and(|name| name.trim().eq_ignore_ascii_case("error"));
        if error_event {
            return Err(self.dialect.parse_error(200, data.as_bytes()));
        }
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| ProviderError {
            status: 200,
            error_type: crate::errors::INVALID_RESPONSE.to_string(),
            code: None,
            message: format!("a stream event from the provider is not JSON ({e}): {}", truncate(data, 512)),
            retryable: false,
        })?;
        if let Some(error) = self.dialect.error_in_json(200, &value) {
            return Err(error);
        }

        if let Some(id) = str_field(&value, "id").filter(|id| !id.is_empty()) {
            self.id = id;
        }
        if let Some(created) = created_field(&value) {
            self.created = created;
        }
        if let Some(model) = str_field(&value, "model").filter(|m| !m.is_empty()) {
            self.model = model;
        }
        let choices: Vec<ChoiceDelta> = value
            .get("choices")
            .and_then(Value::as_array)
            .map(|choices| choices.iter().enumerate().map(|(i, c)| self.choice(i, c)).collect())
            .unwrap_or_default();
        let usage = usage(value.get("usage"));

        if !choices.is_empty() {
            if usage.is_some() {
                self.pending_usage = usage;
            }
            Ok(vec![self.chunk(choices, None)])
        } else if let Some(usage) = usage {
            self.pending_usage = None;
            Ok(vec![self.chunk(Vec::new(), Some(usage))])
        } else {
            Ok(Vec::new())
        }
    }

    /// Reports a usage that came only inside a chunk with choices.
    fn finish(&mut self) -> Result<Vec<StreamChunk>, ProviderError> {
        Ok(self.pending_usage.take().map(|usage| self.chunk(Vec::new(), Some(usage))).into_iter().collect())
    }
}

impl StreamDecoder {
    fn chunk(&self, choices: Vec<ChoiceDelta>, usage: Option<Usage>) -> StreamChunk {
        StreamChunk {
            id: self.id.clone(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            raw_cost: None,
        }
    }

    fn choice(&mut self, position: usize, value: &Value) -> ChoiceDelta {
        let index = u32_field(value, "index").unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
        let delta = value.get("delta");
        let field = |key: &str| delta.and_then(|d| d.get(key)).and_then(Value::as_str).map(str::to_string);
        let tool_calls = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .map(|calls| calls.iter().map(|call| self.tool_call(index, call)).collect())
            .unwrap_or_default();
        ChoiceDelta {
            index,
            role: field("role").and_then(|role| role_of(&role)),
            content: field("content"),
            // `reasoning` is the key Ollama and OpenRouter use for the same text.
            reasoning_content: field("reasoning_content").or_else(|| field("reasoning")),
            tool_calls,
            finish_reason: finish_reason(value.get("finish_reason")),
            refusal: field("refusal"),
        }
    }

    /// One tool-call piece. Some servers repeat the id and name in every piece
    /// of a call; the contract (and clients that concatenate names) want them
    /// once, so repeats are dropped. A piece without `index` continues the
    /// last call of its choice, or starts the next one when it has an id.
    fn tool_call(&mut self, choice: u32, value: &Value) -> ToolCallDelta {
        let function = value.get("function");
        let id = str_field(value, "id").filter(|id| !id.is_empty());
        let name = function.and_then(|f| str_field(f, "name")).filter(|n| !n.is_empty());
        let index = u32_field(value, "index").unwrap_or_else(|| {
            let last = self.tool_calls.iter().filter(|s| s.choice == choice).map(|s| s.index).max();
            match (last, id.is_some()) {
                (None, _) => 0,
                (Some(last), true) => last.saturating_add(1),
                (Some(last), false) => last,
            }
        });
        let position = match self.tool_calls.iter().position(|s| s.choice == choice && s.index == index) {
            Some(position) => position,
            None => {
                self.tool_calls.push(ToolCallState { choice, index, id_sent: false, name_sent: false });
                self.tool_calls.len() - 1
            }
        };
        let mut delta = ToolCallDelta {
            index,
            id: None,
            name: None,
            arguments: arguments_text(function.and_then(|f| f.get("arguments"))),
        };
        if let Some(state) = self.tool_calls.get_mut(position) {
            if !state.id_sent && id.is_some() {
                state.id_sent = true;
                delta.id = id;
            }
            if !state.name_sent && name.is_some() {
                state.name_sent = true;
                delta.name = name;
            }
        }
        delta
    }
}

fn role_of(role: &str) -> Option<Role> {
    Some(match role {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => return None,
    })
}
