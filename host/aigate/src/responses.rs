//! OpenAI's Responses API as an inbound API: `POST /v1/responses`, stateless.
//!
//! A [`Codec`] in front of the one pipeline (`chat.rs`). `input` (a string, or message,
//! `function_call` and `function_call_output` items), `instructions`, function `tools`,
//! `tool_choice`, `max_output_tokens`, `temperature`, `top_p` and `text.format` become the
//! canonical request; the answer is a `response` object (`message` items with `output_text`,
//! `function_call` items, usage), or the Responses event sequence when streamed
//! (`response.created`, `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta` / `.done`,
//! `response.function_call_arguments.delta` / `.done`, `response.output_item.done`,
//! `response.completed` with usage; `error`), each with an increasing `sequence_number`.
//!
//! Nothing is stored: `previous_response_id` is refused with a 400 that says to send the whole
//! conversation in `input`, and `store` is accepted but stores nothing.

use std::sync::Arc;

use aigate_plugins::canonical as c;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::Authed;
use crate::codec::{Codec, Decoded, StreamEncoder, json};
use crate::error::ApiError;
use crate::openai::ClientOptions;
use crate::server::AppState;

/// `POST /v1/responses`.
pub async fn responses(
    State(state): State<Arc<AppState>>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    crate::chat::serve(state, &OpenAiResponses, tenant, headers, body).await
}

/// The Responses API wire format.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiResponses;

impl Codec for OpenAiResponses {
    fn name(&self) -> &'static str {
        "responses"
    }

    fn endpoint(&self) -> (&'static str, &'static str) {
        ("POST", "/v1/responses")
    }

    fn decode(&self, body: &str) -> Result<Decoded, ApiError> {
        decode(body)
    }

    fn response(&self, answer: &c::ChatResponse, model: &str) -> Vec<u8> {
        let mut output = Vec::new();
        let choice = answer.choices.first();
        if let Some(ch) = choice {
            if let Some(text) = ch.message.content.as_deref().filter(|t| !t.is_empty()) {
                output.push(message_item(&answer.id, text, "completed"));
            }
            for call in &ch.message.tool_calls {
                output.push(call_item(&call.id, &call.name, &call.arguments, "completed"));
            }
        }
        let finish = choice.and_then(|ch| ch.finish_reason.as_ref());
        let body = response_object(&answer.id, answer.created, model, output, finish, answer.usage.as_ref());
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn stream(&self, model: String, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(Events { model, ..Events::default() })
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": format!("msg_{id}"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

fn call_item(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call",
        "id": format!("fc_{call_id}"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

fn usage(u: Option<&c::Usage>) -> Value {
    let u = u.copied().unwrap_or(c::Usage {
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        cached_tokens: None,
        reasoning_tokens: None,
    });
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens.unwrap_or(0), "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": u.total_tokens,
    })
}

/// The `response` object: `completed`, or `incomplete` when the answer hit `max_output_tokens`.
fn response_object(
    id: &str,
    created: u64,
    model: &str,
    output: Vec<Value>,
    finish: Option<&c::FinishReason>,
    u: Option<&c::Usage>,
) -> Value {
    let (status, incomplete) = match finish {
        Some(c::FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(c::FinishReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    };
    json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "store": false,
        "usage": usage(u),
        "error": null,
        "incomplete_details": incomplete,
        "text": {"format": {"type": "text"}},
    })
}

// ---- decoding -------------------------------------------------------------------------------

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

fn message(role: c::Role, content: Option<c::MessageContent>) -> c::Message {
    c::Message { role, content, name: None, tool_calls: vec![], tool_call_id: None, reasoning_content: None }
}

/// A message item's content: a string, or `input_text` / `output_text` / `input_image` parts.
fn content(value: &Value, param: &str) -> Result<c::MessageContent, ApiError> {
    let parts = match value {
        Value::String(s) => return Ok(c::MessageContent::Text(s.clone())),
        Value::Array(parts) => parts,
        _ => return Err(invalid(param, format!("`{param}` must be a string or content parts."))),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let pp = format!("{param}[{i}]");
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(c::ContentPart::Text(p.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()));
            }
            Some("input_image") => {
                let url = p.get("image_url").and_then(Value::as_str).unwrap_or_default();
                if url.is_empty() {
                    return Err(invalid(&pp, format!("`{pp}` needs an `image_url` (a URL or a data: URL).")));
                }
                let detail = p.get("detail").and_then(Value::as_str).map(str::to_owned);
                out.push(c::ContentPart::Image(c::ImageUrl { url: url.to_owned(), detail }));
            }
            other => {
                return Err(invalid(
                    &pp,
                    format!("`{pp}` has type {other:?}; this gateway takes input_text and input_image."),
                ));
            }
        }
    }
    Ok(match out.as_slice() {
        [c::ContentPart::Text(t)] => c::MessageContent::Text(t.clone()),
        _ => c::MessageContent::Parts(out),
    })
}

fn input_items(items: &[Value], messages: &mut Vec<c::Message>) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("user") => c::Role::User,
                    Some("assistant") => c::Role::Assistant,
                    Some("system") => c::Role::System,
                    Some("developer") => c::Role::Developer,
                    _ => {
                        return Err(invalid(
                            &format!("{param}.role"),
                            "A message's role is user, assistant, system or developer.",
                        ));
                    }
                };
                let body = item.get("content").unwrap_or(&Value::Null);
                messages.push(message(role, Some(content(body, &format!("{param}.content"))?)));
            }
            "function_call" => {
                let call = c::ToolCall {
                    id: item.get("call_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    name: item.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    arguments: item.get("arguments").and_then(Value::as_str).unwrap_or("{}").to_owned(),
                };
                if call.id.is_empty() || call.name.is_empty() {
                    return Err(invalid(&param, "A function_call item needs `call_id` and `name`."));
                }
                // Calls made in one turn share one assistant message.
                match messages.last_mut() {
                    Some(last) if last.role == c::Role::Assistant && last.content.is_none() => {
                        last.tool_calls.push(call)
                    }
                    _ => messages.push(c::Message { tool_calls: vec![call], ..message(c::Role::Assistant, None) }),
                }
            }
            "function_call_output" => {
                let id = item.get("call_id").and_then(Value::as_str).unwrap_or_default();
                if id.is_empty() {
                    return Err(invalid(&param, "A function_call_output item needs the `call_id` it answers."));
                }
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                messages.push(c::Message {
                    tool_call_id: Some(id.to_owned()),
                    ..message(c::Role::Tool, Some(c::MessageContent::Text(output)))
                });
            }
            // The model's own reasoning from an earlier turn: not sent back to another model.
            "reasoning" => {}
            other => {
                return Err(invalid(&param, format!("Input items of type `{other}` are not supported here.")));
            }
        }
    }
    Ok(())
}

fn decode(body: &str) -> Result<Decoded, ApiError> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        ApiError::invalid_json(format!("The request body is not valid JSON ({e}). Send a JSON object."))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid_json("The request body must be a JSON object."));
    };
    if map.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "previous_response_id",
            "This gateway does not store responses: send the whole conversation in `input` instead of `previous_response_id`.",
        ));
    }
    let model = json::model(&map)?;
    let mut messages = Vec::new();
    match map.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(message(c::Role::System, Some(c::MessageContent::Text(s.clone())))),
        Some(_) => return Err(invalid("instructions", "`instructions` must be a string.")),
    }
    match map.get("input") {
        Some(Value::String(s)) => messages.push(message(c::Role::User, Some(c::MessageContent::Text(s.clone())))),
        Some(Value::Array(items)) if !items.is_empty() => input_items(items, &mut messages)?,
        _ => return Err(invalid("input", "`input` is required: a string or a list of items.")),
    }
    let mut tools = Vec::new();
    if let Some(Value::Array(list)) = map.get("tools") {
        for (i, t) in list.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid(&format!("tools[{i}].type"), "Only `function` tools are supported here."));
            }
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                return Err(invalid(&format!("tools[{i}].name"), "A tool needs a name."));
            }
            tools.push(c::FunctionTool {
                name: name.to_owned(),
                description: t.get("description").and_then(Value::as_str).map(str::to_owned),
                parameters: t.get("parameters").filter(|p| !p.is_null()).map(Value::to_string),
                strict: t.get("strict").and_then(Value::as_bool),
            });
        }
    }
    let tool_choice = match map.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => c::ToolChoice::Auto,
            "none" => c::ToolChoice::None,
            "required" => c::ToolChoice::Required,
            _ => return Err(invalid("tool_choice", "`tool_choice` is auto, none, required or a function.")),
        }),
        Some(v) => match v.get("name").and_then(Value::as_str) {
            Some(name) => Some(c::ToolChoice::Function(name.to_owned())),
            None => return Err(invalid("tool_choice", "`tool_choice` naming a function needs its `name`.")),
        },
    };
    let response_format = match map.get("text").and_then(|t| t.get("format")) {
        None | Some(Value::Null) => None,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => Some(c::ResponseFormat::Text),
            Some("json_object") => Some(c::ResponseFormat::JsonObject),
            Some("json_schema") => {
                let schema = json!({"name": f.get("name"), "schema": f.get("schema"), "strict": f.get("strict")});
                Some(c::ResponseFormat::JsonSchema(schema.to_string()))
            }
            _ => return Err(invalid("text.format", "`text.format.type` is text, json_object or json_schema.")),
        },
    };
    let max_tokens = json::count(&map, "max_output_tokens", false)?;
    let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let fallbacks = json::fallbacks(&map)?;
    let extra = reasoning_effort(&map)?.map(|effort| json!({"reasoning_effort": effort}).to_string());
    let canonical = c::ChatRequest {
        model: String::new(),
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: map.get("parallel_tool_calls").and_then(Value::as_bool),
        temperature: json::number(&map, "temperature", 0.0, 2.0)?,
        top_p: json::number(&map, "top_p", 0.0, 1.0)?,
        max_tokens,
        stop: vec![],
        seed: None,
        n: None,
        presence_penalty: None,
        frequency_penalty: None,
        response_format,
        user: map.get("user").and_then(Value::as_str).map(str::to_owned),
        stream,
        extra: extra.unwrap_or_default(),
    };
    let options = ClientOptions { stream, include_usage: true };
    Ok(Decoded { model, fallbacks, canonical, options, untranslatable: None })
}

/// The efforts `reasoning.effort` takes (OpenAI's).
const EFFORTS: [&str; 4] = ["minimal", "low", "medium", "high"];

/// `reasoning.effort`, passed to plugins as `reasoning_effort` in `extra` (Chat Completions' own
/// name for it): the openai plugin sends it as is, the qwen plugin turns it into
/// `enable_thinking`, the anthropic plugin into a `thinking` budget.
fn reasoning_effort(map: &serde_json::Map<String, Value>) -> Result<Option<&str>, ApiError> {
    match map.get("reasoning").and_then(|r| r.get("effort")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(effort)) if EFFORTS.contains(&effort.as_str()) => Ok(Some(effort)),
        Some(_) => Err(invalid("reasoning.effort", format!("`reasoning.effort` is one of {}.", EFFORTS.join(", ")))),
    }
}

// ---- streaming ------------------------------------------------------------------------------

/// One output item being streamed.
#[derive(Debug)]
enum Item {
    Message { id: String, text: String },
    Call { tool_index: u32, call_id: String, name: String, arguments: String },
}

/// Canonical chunks → the Responses event sequence, for one stream.
#[derive(Debug, Default)]
struct Events {
    model: String,
    id: String,
    created: u64,
    sequence: u64,
    started: bool,
    /// Output items in order; the open message (if any) is the last `Message`.
    items: Vec<Item>,
    /// Index in `items` of the message taking text deltas.
    open_message: Option<usize>,
    finish: Option<c::FinishReason>,
    usage: Option<c::Usage>,
}

impl Events {
    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), json!(kind));
            obj.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        crate::codec::sse_event(out, kind, &data);
    }

    fn skeleton(&self, status: &str) -> Value {
        let mut r = response_object(&self.id, self.created, &self.model, vec![], None, None);
        r["status"] = json!(status);
        r["usage"] = Value::Null;
        r
    }

    fn start(&mut self, out: &mut Vec<u8>, chunk: &c::StreamChunk) {
        if self.started {
            return;
        }
        self.started = true;
        self.id.clone_from(&chunk.id);
        self.created = chunk.created;
        let created = self.skeleton("in_progress");
        self.event(out, "response.created", json!({"response": created}));
        let progress = self.skeleton("in_progress");
        self.event(out, "response.in_progress", json!({"response": progress}));
    }

    fn item_json(&self, index: usize, status: &str) -> Value {
        match &self.items[index] {
            Item::Message { id, text } => {
                let mut m = message_item("", text, status);
                m["id"] = json!(id);
                m
            }
            Item::Call { call_id, name, arguments, .. } => call_item(call_id, name, arguments, status),
        }
    }

    fn item_id(&self, index: usize) -> String {
        match &self.items[index] {
            Item::Message { id, .. } => id.clone(),
            Item::Call { call_id, .. } => format!("fc_{call_id}"),
        }
    }

    /// Closes the open message: its text, part and item are done.
    fn close_message(&mut self, out: &mut Vec<u8>) {
        let Some(index) = self.open_message.take() else { return };
        let item_id = self.item_id(index);
        let text = match &self.items[index] {
            Item::Message { text, .. } => text.clone(),
            Item::Call { .. } => String::new(),
        };
        let base = json!({"item_id": item_id, "output_index": index, "content_index": 0});
        let mut done = base.clone();
        done["text"] = json!(text);
        done["logprobs"] = json!([]);
        self.event(out, "response.output_text.done", done);
        let mut part = base;
        part["part"] = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        self.event(out, "response.content_part.done", part);
        let item = self.item_json(index, "completed");
        self.event(out, "response.output_item.done", json!({"item": item, "output_index": index}));
    }

    fn text(&mut self, out: &mut Vec<u8>, delta: &str) {
        let index = match self.open_message {
            Some(i) => i,
            None => {
                let index = self.items.len();
                self.items.push(Item::Message { id: format!("msg_{}_{index}", self.id), text: String::new() });
                self.open_message = Some(index);
                let item = self.item_json(index, "in_progress");
                self.event(out, "response.output_item.added", json!({"item": item, "output_index": index}));
                let item_id = self.item_id(index);
                let part = json!({
                    "item_id": item_id, "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                });
                self.event(out, "response.content_part.added", part);
                index
            }
        };
        if let Some(Item::Message { text, .. }) = self.items.get_mut(index) {
            text.push_str(delta);
        }
        let item_id = self.item_id(index);
        let data =
            json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []});
        self.event(out, "response.output_text.delta", data);
    }

    fn call(&mut self, out: &mut Vec<u8>, d: &c::ToolCallDelta) {
        let found =
            self.items.iter().position(|it| matches!(it, Item::Call { tool_index, .. } if *tool_index == d.index));
        let index = match found {
            Some(i) => i,
            None => {
                self.close_message(out);
                let index = self.items.len();
                self.items.push(Item::Call {
                    tool_index: d.index,
                    call_id: d.id.clone().unwrap_or_else(|| format!("call_{index}")),
                    name: d.name.clone().unwrap_or_default(),
                    arguments: String::new(),
                });
                let item = self.item_json(index, "in_progress");
                self.event(out, "response.output_item.added", json!({"item": item, "output_index": index}));
                index
            }
        };
        if let Some(piece) = d.arguments.as_deref().filter(|a| !a.is_empty()) {
            if let Some(Item::Call { arguments, .. }) = self.items.get_mut(index) {
                arguments.push_str(piece);
            }
            let item_id = self.item_id(index);
            let data = json!({"item_id": item_id, "output_index": index, "delta": piece});
            self.event(out, "response.function_call_arguments.delta", data);
        }
    }
}

impl StreamEncoder for Events {
    fn chunk(&mut self, chunk: &c::StreamChunk) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.start(&mut out, chunk);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for d in chunk.choices.iter().filter(|d| d.index == 0) {
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(&mut out, t);
            }
            for call in &d.tool_calls {
                self.call(&mut out, call);
            }
            if let Some(f) = &d.finish_reason {
                self.finish = Some(f.clone());
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn error(&mut self, err: &ApiError) -> Vec<u8> {
        let mut out = Vec::new();
        let data = json!({"code": err.code, "message": err.message, "param": err.param});
        self.event(&mut out, "error", data);
        out
    }

    fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.started {
            let empty = c::StreamChunk {
                id: String::new(),
                created: 0,
                model: String::new(),
                choices: vec![],
                usage: None,
                raw_cost: None,
            };
            self.start(&mut out, &empty);
        }
        self.close_message(&mut out);
        for index in 0..self.items.len() {
            if let Item::Call { name, arguments, .. } = &self.items[index] {
                let (name, arguments) = (name.clone(), arguments.clone());
                let item_id = self.item_id(index);
                let data = json!({"item_id": item_id, "output_index": index, "name": name, "arguments": arguments});
                self.event(&mut out, "response.function_call_arguments.done", data);
                let item = self.item_json(index, "completed");
                self.event(&mut out, "response.output_item.done", json!({"item": item, "output_index": index}));
            }
        }
        let output: Vec<Value> = (0..self.items.len()).map(|i| self.item_json(i, "completed")).collect();
        let response =
            response_object(&self.id, self.created, &self.model, output, self.finish.as_ref(), self.usage.as_ref());
        let kind = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.event(&mut out, kind, json!({"response": response}));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_effort_reaches_the_plugin_as_chat_completions_names_it() {
        let body = |effort: Value| json!({"model": "m:x", "input": "hi", "reasoning": {"effort": effort}}).to_string();
        for effort in EFFORTS {
            let d = decode(&body(json!(effort))).unwrap();
            assert_eq!(d.canonical.extra, json!({"reasoning_effort": effort}).to_string());
        }
        assert_eq!(decode(&json!({"model": "m:x", "input": "hi"}).to_string()).unwrap().canonical.extra, "");
        for bad in [json!("extreme"), json!(3)] {
            let err = decode(&body(bad)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("reasoning.effort"));
        }
    }

    #[test]
    fn input_items_become_one_conversation() {
        let body = json!({
            "model": "qwen:qwen-plus",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "max_output_tokens": 100
        })
        .to_string();
        let d = decode(&body).unwrap();
        let roles: Vec<c::Role> = d.canonical.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [c::Role::System, c::Role::User, c::Role::Assistant, c::Role::Tool]);
        assert_eq!(d.canonical.messages[2].tool_calls[0].name, "weather");
        assert_eq!(d.canonical.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(d.canonical.max_tokens, Some(100));
        assert_eq!(d.canonical.tools[0].parameters.as_deref(), Some(r#"{"type":"object"}"#));
    }

    #[test]
    fn previous_response_id_and_other_tools_are_refused_with_the_field() {
        for (body, param) in [
            (json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}), "previous_response_id"),
            (json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}), "tools[0].type"),
            (json!({"model": "m"}), "input"),
        ] {
            let err = decode(&body.to_string()).unwrap_err();
            assert_eq!((err.status.as_u16(), err.param.as_deref()), (400, Some(param)), "{body}");
        }
    }
}
