//! `streamGenerateContent?alt=sse`: every event is a whole
//! `GenerateContentResponse` holding the new parts, `usageMetadata` so far,
//! and, on the last, `finishReason`. No `[DONE]`: the stream just ends.

use aigate_plugin_sdk::ChunkDecoder;
use aigate_plugin_sdk::serde_json::Value;
use aigate_plugin_sdk::types::{
    ChoiceDelta, FinishReason, ProviderError, Role, SseEvent, StreamChunk, ToolCallDelta, Usage,
};

use crate::error;
use crate::response::{Part, block_reason, call_id, candidates, finish_reason, parts, usage};

/// Decodes one Gemini stream; the usage of the last event is held until
/// [`ChunkDecoder::finish`] and sent as the final chunk (no choices).
pub struct GeminiStreamDecoder {
    model: String,
    id: String,
    started: bool,
    /// Tool calls so far (all candidates): the next call's index and id.
    calls: u32,
    called_tools: bool,
    usage: Option<Usage>,
}

impl GeminiStreamDecoder {
    pub fn new(model: String) -> Self {
        GeminiStreamDecoder { model, id: String::new(), started: false, calls: 0, called_tools: false, usage: None }
    }

    fn chunk(&self, choices: Vec<ChoiceDelta>) -> StreamChunk {
        StreamChunk::new(self.id.clone(), 0, self.model.clone(), choices)
    }
}

impl ChunkDecoder for GeminiStreamDecoder {
    fn push(&mut self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let value: Value = aigate_plugin_sdk::serde_json::from_str(data).map_err(|e| {
            ProviderError::invalid_response(200, &format!("a Gemini stream event is not JSON ({e})"), data)
        })?;
        if let Some(error) = error::in_json(200, &value) {
            return Err(error);
        }
        if self.id.is_empty()
            && let Some(id) = value.get("responseId").and_then(Value::as_str)
        {
            self.id = id.to_string();
        }
        if let Some(model) = value.get("modelVersion").and_then(Value::as_str) {
            self.model = model.to_string();
        }
        if let Some(usage) = usage(value.get("usageMetadata")) {
            self.usage = Some(usage);
        }
        let mut deltas = Vec::new();
        for (position, candidate) in candidates(&value).iter().enumerate() {
            let index = candidate
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
            let mut delta = ChoiceDelta { index, ..Default::default() };
            if !self.started {
                delta.role = Some(Role::Assistant);
            }
            for part in parts(candidate) {
                match Part::of(part) {
                    Part::Text(text) => delta.content.get_or_insert_with(String::new).push_str(&text),
                    Part::Thought(text) => delta.reasoning_content.get_or_insert_with(String::new).push_str(&text),
                    Part::Call { id, name, arguments } => {
                        delta.tool_calls.push(ToolCallDelta {
                            index: self.calls,
                            id: Some(id.unwrap_or_else(|| call_id(&self.id, self.calls))),
                            name: Some(name),
                            arguments: Some(arguments),
                        });
                        self.calls += 1;
                        self.called_tools = true;
                    }
                    Part::Other => {}
                }
            }
            delta.finish_reason = finish_reason(candidate, self.called_tools);
            let empty = delta.role.is_none()
                && delta.content.is_none()
                && delta.reasoning_content.is_none()
                && delta.tool_calls.is_empty()
                && delta.finish_reason.is_none();
            if !empty {
                deltas.push(delta);
            }
        }
        if deltas.is_empty() && candidates(&value).is_empty() && block_reason(&value).is_some() {
            deltas.push(ChoiceDelta {
                role: (!self.started).then_some(Role::Assistant),
                finish_reason: Some(FinishReason::ContentFilter),
                ..Default::default()
            });
        }
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        self.started = true;
        Ok(vec![self.chunk(deltas)])
    }

    fn finish(&mut self) -> Result<Vec<StreamChunk>, ProviderError> {
        Ok(self
            .usage
            .take()
            .map(|usage| StreamChunk { usage: Some(usage), ..self.chunk(Vec::new()) })
            .into_iter()
            .collect())
    }
}
