//! A plugin built against the *previous* contract, `aigate:provider@0.2.0`, with `wit-bindgen`
//! directly: what a third-party plugin compiled before 0.3.0 looks like. It exports no
//! `capabilities` and no embeddings functions; the host must keep loading and serving it (as a
//! chat-only plugin) through its 0.2 adapter.
//!
//! It speaks a minimal OpenAI-compatible dialect (text messages, usage, streaming with
//! `include_usage`, and the 0.2 streamed `refusal`) under the name `legacy2`; that is enough to
//! serve a chat through the gateway against the test mock. A copy of `legacy-0-1` otherwise.

#[allow(missing_docs, unsafe_code, clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/provider@0.2.0",
        world: "provider",
    });
}

use std::cell::RefCell;

use bindings::aigate::provider::types::{
    AuthScheme, ChatRequest, ChatResponse, Choice, ChoiceDelta, FinishReason, HttpRequest, HttpResponse,
    MessageContent, ModelInfo, PluginInfo, ProviderError, ResponseMessage, Role, SseEvent, StreamChunk, Usage,
};
use bindings::exports::aigate::provider::adapter::{Guest, GuestStreamDecoder};
use serde_json::{Value, json};

struct Legacy;

fn error(status: u16, message: String) -> ProviderError {
    ProviderError {
        status,
        error_type: if status >= 500 { "server_error" } else { "invalid_request_error" }.to_string(),
        code: None,
        message,
        retryable: status == 429 || status >= 500,
    }
}

fn role(role: &Role) -> &'static str {
    match role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn finish(value: &Value) -> Option<FinishReason> {
    Some(match value.as_str()? {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    })
}

fn usage(value: &Value) -> Option<Usage> {
    let number = |key: &str| value.get(key).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    value.is_object().then(|| Usage {
        prompt_tokens: number("prompt_tokens"),
        completion_tokens: number("completion_tokens"),
        total_tokens: number("total_tokens"),
        cached_tokens: None,
        reasoning_tokens: None,
    })
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl Guest for Legacy {
    type StreamDecoder = Decoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "legacy2".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            contract_version: "0.2.0".to_string(),
            default_base_url: "http://localhost:8000/v1".to_string(),
            auth: AuthScheme::Bearer,
            models: vec![ModelInfo { id: "qwen-turbo".to_string(), context_window: None, max_output_tokens: None }],
        }
    }

    fn build_request(base_url: String, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    Some(MessageContent::Text(text)) => json!(text),
                    Some(MessageContent::Parts(_)) => return Err(error(400, "legacy2: text messages only".into())),
                    None => Value::Null,
                };
                Ok(json!({"role": role(&m.role), "content": content}))
            })
            .collect::<Result<_, _>>()?;
        let mut body = json!({"model": request.model, "messages": messages, "stream": request.stream});
        if let Some(max_tokens) = request.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if request.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        Ok(HttpRequest {
            method: "POST".to_string(),
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        let value: Value = serde_json::from_slice(&response.body).map_err(|e| {
            error(if response.status >= 400 { response.status } else { 502 }, format!("legacy2: unreadable body: {e}"))
        })?;
        if response.status >= 400 || value.get("error").is_some_and(|e| !e.is_null()) {
            let message = value.pointer("/error/message").and_then(Value::as_str).unwrap_or("provider error");
            return Err(error(response.status.max(400), message.to_string()));
        }
        let choices = value.get("choices").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(ChatResponse {
            id: text(&value, "id"),
            created: value.get("created").and_then(Value::as_u64).unwrap_or(0),
            model: text(&value, "model"),
            choices: choices
                .iter()
                .enumerate()
                .map(|(i, c)| Choice {
                    index: u32::try_from(i).unwrap_or(0),
                    message: ResponseMessage {
                        content: c.pointer("/message/content").and_then(Value::as_str).map(str::to_string),
                        reasoning_content: None,
                        tool_calls: vec![],
                        refusal: c.pointer("/message/refusal").and_then(Value::as_str).map(str::to_string),
                    },
                    finish_reason: finish(c.get("finish_reason").unwrap_or(&Value::Null)),
                })
                .collect(),
            usage: value.get("usage").and_then(usage),
            raw_cost: None,
            system_fingerprint: None,
        })
    }

    fn build_models_request(_base_url: String) -> Option<HttpRequest> {
        None
    }

    fn parse_models(_response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(Self::describe().models)
    }
}

/// Keeps the id and creation time of the first chunk for the rest of the stream.
struct Decoder {
    model: String,
    first: RefCell<Option<(String, u64)>>,
}

impl GuestStreamDecoder for Decoder {
    fn new(model: String) -> Self {
        Decoder { model, first: RefCell::new(None) }
    }

    fn push(&self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        if event.data.trim() == "[DONE]" {
            return Ok(vec![]);
        }
        let value: Value =
            serde_json::from_str(&event.data).map_err(|e| error(502, format!("legacy2: bad chunk: {e}")))?;
        if let Some(message) = value.pointer("/error/message").and_then(Value::as_str) {
            return Err(error(200, message.to_string()));
        }
        let mut first = self.first.borrow_mut();
        let (id, created) = first
            .get_or_insert_with(|| (text(&value, "id"), value.get("created").and_then(Value::as_u64).unwrap_or(0)))
            .clone();
        let choices = value.get("choices").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(vec![StreamChunk {
            id,
            created,
            model: self.model.clone(),
            choices: choices
                .iter()
                .enumerate()
                .map(|(i, c)| ChoiceDelta {
                    index: u32::try_from(i).unwrap_or(0),
                    role: c.pointer("/delta/role").and_then(Value::as_str).map(|_| Role::Assistant),
                    content: c.pointer("/delta/content").and_then(Value::as_str).map(str::to_string),
                    reasoning_content: None,
                    tool_calls: vec![],
                    finish_reason: finish(c.get("finish_reason").unwrap_or(&Value::Null)),
                    refusal: c.pointer("/delta/refusal").and_then(Value::as_str).map(str::to_string),
                })
                .collect(),
            usage: value.get("usage").and_then(usage),
            raw_cost: None,
        }])
    }

    fn finish(&self) -> Result<Vec<StreamChunk>, ProviderError> {
        Ok(vec![])
    }
}

bindings::export!(Legacy with_types_in bindings);
