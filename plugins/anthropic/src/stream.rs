//! The Messages API's named-event stream → canonical chunks.
//!
//! ```text
//! message_start        → a chunk with role assistant (and empty content)
//! content_block_start  → text: its text, if any; tool_use: the call's id and name
//! content_block_delta  → text_delta: content; input_json_delta: arguments;
//!                        thinking_delta: reasoning; signature_delta: nothing
//! content_block_stop   → nothing
//! message_delta        → a chunk with the finish reason; usage is remembered
//! message_stop         → the usage-only chunk (no choices)
//! ping                 → nothing
//! error                → the provider's error (status 200)
//! ```
//!
//! Tool calls are numbered by their order among the message's tool calls, not
//! by the block index (a text block usually comes first), because OpenAI
//! clients index the `tool_calls` array with it.

use aigate_plugin_sdk::ChunkDecoder;
use aigate_plugin_sdk::types::{ChoiceDelta, ProviderError, Role, SseEvent, StreamChunk, ToolCallDelta, Usage};
use serde_json::Value;

use crate::error::{RULES, error_from_json};
use crate::response::{UsageCounts, finish_reason};

/// Decodes one Messages API stream. Holds the message id and model from
/// `message_start`, which block index is which tool call, and the usage
/// counts until `message_stop`.
#[derive(Debug, Clone)]
pub struct MessagesStreamDecoder {
    id: String,
    model: String,
    usage: Option<UsageCounts>,
    usage_sent: bool,
    /// (block index, tool-call ordinal) of each `tool_use` block so far.
    tool_blocks: Vec<(u64, u32)>,
}

impl MessagesStreamDecoder {
    /// A decoder for a stream whose request asked for `model`.
    pub fn new(model: String) -> Self {
        Self { id: String::new(), model, usage: None, usage_sent: false, tool_blocks: Vec::new() }
    }

    fn chunk(&self, choices: Vec<ChoiceDelta>, usage: Option<Usage>) -> StreamChunk {
        StreamChunk { id: self.id.clone(), created: 0, model: self.model.clone(), choices, usage, raw_cost: None }
    }

    fn delta_chunk(&self, delta: ChoiceDelta) -> Vec<StreamChunk> {
        vec![self.chunk(vec![delta], None)]
    }

    fn usage_chunk(&mut self) -> Vec<StreamChunk> {
        match self.usage {
            Some(counts) if !self.usage_sent => {
                self.usage_sent = true;
                vec![self.chunk(Vec::new(), Some(counts.usage()))]
            }
            _ => Vec::new(),
        }
    }

    fn update_usage(&mut self, usage: Option<&Value>) {
        if let Some(usage) = usage.filter(|u| u.is_object()) {
            self.usage = Some(self.usage.unwrap_or_default().update(usage));
        }
    }

    fn tool_ordinal(&self, block: u64) -> Option<u32> {
        self.tool_blocks.iter().find(|(index, _)| *index == block).map(|(_, ordinal)| *ordinal)
    }

    fn block_start(&mut self, value: &Value) -> Vec<StreamChunk> {
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(block) = value.get("content_block") else {
            return Vec::new();
        };
        match block.get("type").and_then(Value::as_str) {
            Some("text") => match text(block, "text") {
                Some(text) => self.delta_chunk(ChoiceDelta { content: Some(text), ..empty_delta() }),
                None => Vec::new(),
            },
            Some("thinking") => match text(block, "thinking") {
                Some(text) => self.delta_chunk(ChoiceDelta { reasoning_content: Some(text), ..empty_delta() }),
                None => Vec::new(),
            },
            Some("tool_use") => {
                let ordinal = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                self.tool_blocks.push((index, ordinal));
                // The start block's `input` is `{}` in practice; arguments come
                // as `input_json_delta` pieces. A non-empty one is sent whole.
                let arguments = block
                    .get("input")
                    .filter(|input| input.as_object().is_some_and(|o| !o.is_empty()))
                    .map_or_else(String::new, Value::to_string);
                let call = ToolCallDelta {
                    index: ordinal,
                    id: text(block, "id"),
                    name: text(block, "name"),
                    arguments: Some(arguments),
                };
                self.delta_chunk(ChoiceDelta { tool_calls: vec![call], ..empty_delta() })
            }
            _ => Vec::new(),
        }
    }

    fn block_delta(&mut self, value: &Value) -> Vec<StreamChunk> {
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        let Some(delta) = value.get("delta") else {
            return Vec::new();
        };
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => match text(delta, "text") {
                Some(text) => self.delta_chunk(ChoiceDelta { content: Some(text), ..empty_delta() }),
                None => Vec::new(),
            },
            Some("thinking_delta") => match text(delta, "thinking") {
                Some(text) => self.delta_chunk(ChoiceDelta { reasoning_content: Some(text), ..empty_delta() }),
                None => Vec::new(),
            },
            Some("input_json_delta") => match (self.tool_ordinal(index), text(delta, "partial_json")) {
                (Some(ordinal), Some(piece)) => {
                    let call = ToolCallDelta { index: ordinal, id: None, name: None, arguments: Some(piece) };
                    self.delta_chunk(ChoiceDelta { tool_calls: vec![call], ..empty_delta() })
                }
                _ => Vec::new(),
            },
            // `signature_delta` authenticates thinking the canonical format
            // does not send back; `citations_delta` has no canonical field.
            _ => Vec::new(),
        }
    }
}

impl ChunkDecoder for MessagesStreamDecoder {
    fn push(&mut self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        let data = event.data.trim();
        let named_error = event.event.as_deref().is_some_and(|name| name.trim() == "error");
        if data.is_empty() && !named_error {
            return Ok(Vec::new());
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(value) => value,
            Err(_) if named_error => return Err(ProviderError::upstream(&RULES, 200, "", None, data)),
            Err(e) => {
                return Err(ProviderError::invalid_response(
                    200,
                    &format!("a stream event from the provider is not JSON ({e})"),
                    data,
                ));
            }
        };
        // The data's `type` names the event; the `event:` line is the fallback.
        let kind = value.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or_default();
        match kind {
            "message_start" => {
                let message = value.get("message");
                if let Some(id) = message.and_then(|m| text(m, "id")) {
                    self.id = id;
                }
                if let Some(model) = message.and_then(|m| text(m, "model")) {
                    self.model = model;
                }
                self.update_usage(message.and_then(|m| m.get("usage")));
                Ok(self.delta_chunk(ChoiceDelta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..empty_delta()
                }))
            }
            "content_block_start" => Ok(self.block_start(&value)),
            "content_block_delta" => Ok(self.block_delta(&value)),
            "message_delta" => {
                self.update_usage(value.get("usage"));
                let reason = value.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
                Ok(match reason {
                    Some(reason) => {
                        self.delta_chunk(ChoiceDelta { finish_reason: Some(finish_reason(reason)), ..empty_delta() })
                    }
                    None => Vec::new(),
                })
            }
            "message_stop" => Ok(self.usage_chunk()),
            "error" => {
                Err(error_from_json(200, &value)
                    .unwrap_or_else(|| ProviderError::upstream(&RULES, 200, "", None, data)))
            }
            // `ping`, `content_block_stop`, and event types newer than this plugin.
            _ => Ok(Vec::new()),
        }
    }

    /// A stream cut before `message_stop` still reports the usage it had, so
    /// the host can meter the call.
    fn finish(&mut self) -> Result<Vec<StreamChunk>, ProviderError> {
        Ok(self.usage_chunk())
    }
}

fn empty_delta() -> ChoiceDelta {
    ChoiceDelta::default()
}

/// A non-empty string field.
fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}
