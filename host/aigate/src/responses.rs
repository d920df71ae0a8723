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
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::codec::{Codec, Decoded, StreamEncoder, json};
use crate::error::ApiError;
use crate::openai::ClientOptions;
use crate::server::AppState;

/// `POST /v1/responses`: a `response` object, or with `stream: true` the Responses events
/// (`response.created` … `response.completed`), each with its `sequence_number`. Stateless.
#[utoipa::path(post, path = "/v1/responses", tag = "openai", security(("api_key" = [])),
    request_body = ResponsesRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this call safe: the first answer is replayed.")),
    responses(
        (status = 200, description = "The response.",
            content((ResponseObject = "application/json"), (crate::openapi::ResponsesEvents = "text/event-stream"))),
        crate::openapi::OpenAiErrors))]
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
                output.push(message_item(format!("msg_{}", answer.id), text, "completed"));
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

fn message_item<'a>(id: String, text: &'a str, status: &'a str) -> OutputItem<'a> {
    let content = vec![OutputText { r#type: "output_text", text, annotations: [], logprobs: [] }];
    OutputItem::Message { id, status, role: "assistant", content }
}

fn call_item<'a>(call_id: &'a str, name: &'a str, arguments: &'a str, status: &'a str) -> OutputItem<'a> {
    OutputItem::FunctionCall { id: format!("fc_{call_id}"), call_id, name, arguments, status }
}

fn usage(u: Option<&c::Usage>) -> ResponsesUsage {
    let u = u.copied().unwrap_or(c::Usage {
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        cached_tokens: None,
        reasoning_tokens: None,
    });
    ResponsesUsage {
        input_tokens: u.prompt_tokens,
        input_tokens_details: InputTokensDetails { cached_tokens: u.cached_tokens.unwrap_or(0), cache_write_tokens: 0 },
        output_tokens: u.completion_tokens,
        output_tokens_details: OutputTokensDetails { reasoning_tokens: u.reasoning_tokens.unwrap_or(0) },
        total_tokens: u.total_tokens,
    }
}

/// The `response` object: `completed`, or `incomplete` when the answer hit `max_output_tokens`.
fn response_object<'a>(
    id: &str,
    created: u64,
    model: &'a str,
    output: Vec<OutputItem<'a>>,
    finish: Option<&c::FinishReason>,
    u: Option<&c::Usage>,
) -> ResponseObject<'a> {
    let (status, incomplete_details) = match finish {
        Some(c::FinishReason::Length) => ("incomplete", Some(IncompleteDetails { reason: "max_output_tokens" })),
        Some(c::FinishReason::ContentFilter) => ("incomplete", Some(IncompleteDetails { reason: "content_filter" })),
        _ => ("completed", None),
    };
    ResponseObject {
        id: format!("resp_{id}"),
        object: "response",
        created_at: created,
        status,
        model,
        output,
        parallel_tool_calls: true,
        tool_choice: "auto",
        tools: [],
        store: false,
        usage: Some(usage(u)),
        error: None,
        incomplete_details,
        text: TextConfig { format: TextFormat { r#type: "text" } },
    }
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
    json::decode_conforming(body, decode_object, |value| json::conforms::<ResponsesRequest>(value))
}

fn decode_object(map: &serde_json::Map<String, Value>) -> Result<Decoded, ApiError> {
    if map.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "previous_response_id",
            "This gateway does not store responses: send the whole conversation in `input` instead of `previous_response_id`.",
        ));
    }
    let model = json::model(map)?;
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
    let max_tokens = json::count(map, "max_output_tokens", false)?;
    let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let fallbacks = json::fallbacks(map)?;
    let extra = reasoning_effort(map)?.map(|effort| json!({"reasoning_effort": effort}).to_string());
    let canonical = c::ChatRequest {
        model: String::new(),
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: map.get("parallel_tool_calls").and_then(Value::as_bool),
        temperature: json::number(map, "temperature", 0.0, 2.0)?,
        top_p: json::number(map, "top_p", 0.0, 1.0)?,
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

    fn skeleton(&self, status: &'static str) -> Value {
        let mut r = response_object(&self.id, self.created, &self.model, vec![], None, None);
        r.status = status;
        r.usage = None;
        json!(r)
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
            Item::Message { id, text } => json!(message_item(id.clone(), text, status)),
            Item::Call { call_id, name, arguments, .. } => json!(call_item(call_id, name, arguments, status)),
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
        let output = self
            .items
            .iter()
            .map(|item| match item {
                Item::Message { id, text } => message_item(id.clone(), text, "completed"),
                Item::Call { call_id, name, arguments, .. } => call_item(call_id, name, arguments, "completed"),
            })
            .collect();
        let response =
            response_object(&self.id, self.created, &self.model, output, self.finish.as_ref(), self.usage.as_ref());
        let kind = if response.status == "incomplete" { "response.incomplete" } else { "response.completed" };
        let data = json!({"response": response});
        self.event(&mut out, kind, data);
        out
    }
}

// ---- the published wire types -----------------------------------------------------------------
//
// What the OpenAPI document (`openapi.rs`) says this API takes and answers. The decoder checks
// every body it accepts against `ResponsesRequest` (`json::conforms`), and the answer (and the
// `response` inside stream events) is written from `ResponseObject`.

/// The body of `POST /v1/responses` (OpenAI's Responses API, stateless). Fields not listed are
/// accepted and ignored.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // read by serde and the schema only
pub struct ResponsesRequest<'a> {
    /// A model the key may call: `provider:model`, an alias or a route.
    #[schema(example = "qwen:qwen-plus", min_length = 1)]
    model: &'a str,
    /// The conversation: a user message as a string, or items.
    #[serde(borrow)]
    input: ResponsesInput<'a>,
    /// A system message.
    instructions: Option<&'a str>,
    #[serde(borrow)]
    tools: Option<Vec<FunctionTool<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<ResponsesToolChoice<'a>>,
    parallel_tool_calls: Option<bool>,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    max_output_tokens: Option<u32>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    temperature: Option<f64>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    top_p: Option<f64>,
    stream: Option<bool>,
    #[serde(borrow)]
    text: Option<TextParam<'a>>,
    reasoning: Option<ReasoningParam>,
    user: Option<&'a str>,
    /// Accepted; nothing is stored.
    store: Option<bool>,
    /// Refused unless null: nothing is stored, send the whole conversation in `input`.
    #[schema(value_type = Option<Object>, nullable)]
    previous_response_id: Option<IgnoredAny>,
    /// The gateway's own: models to try in order when the requested one fails.
    #[schema(max_items = 8)]
    fallbacks: Option<Vec<&'a str>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ResponsesInput<'a> {
    Text(&'a str),
    #[serde(borrow)]
    Items(Vec<InputItem<'a>>),
}

/// An input item; one without `type` is a message.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum InputItem<'a> {
    #[serde(borrow)]
    Typed(TypedItem<'a>),
    #[serde(borrow)]
    Message(InputMessage<'a>),
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum TypedItem<'a> {
    Message {
        role: InputRole,
        #[serde(borrow)]
        content: InputContent<'a>,
    },
    FunctionCall {
        #[schema(min_length = 1)]
        call_id: &'a str,
        #[schema(min_length = 1)]
        name: &'a str,
        arguments: Option<&'a str>,
    },
    FunctionCallOutput {
        #[schema(min_length = 1)]
        call_id: &'a str,
        /// Text, or any JSON (sent as its text).
        #[schema(value_type = Option<Object>)]
        output: Option<IgnoredAny>,
    },
    /// The model's reasoning from an earlier turn: accepted, not sent on.
    Reasoning {},
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct InputMessage<'a> {
    role: InputRole,
    #[serde(borrow)]
    content: InputContent<'a>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum InputRole {
    User,
    Assistant,
    System,
    Developer,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum InputContent<'a> {
    Text(&'a str),
    #[serde(borrow)]
    Parts(Vec<InputPart<'a>>),
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum InputPart<'a> {
    InputText {
        text: &'a str,
    },
    OutputText {
        text: &'a str,
    },
    Text {
        text: &'a str,
    },
    InputImage {
        /// A URL or a `data:` URL.
        #[schema(min_length = 1)]
        image_url: &'a str,
        detail: Option<&'a str>,
    },
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct FunctionTool<'a> {
    #[schema(pattern = "^function$")]
    r#type: &'a str,
    #[schema(min_length = 1)]
    name: &'a str,
    description: Option<&'a str>,
    #[schema(value_type = Option<Object>)]
    parameters: Option<IgnoredAny>,
    strict: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ResponsesToolChoice<'a> {
    /// `auto`, `none` or `required`.
    Mode(ToolMode),
    #[serde(borrow)]
    Function(NamedTool<'a>),
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ToolMode {
    Auto,
    None,
    Required,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct NamedTool<'a> {
    name: &'a str,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct TextParam<'a> {
    #[serde(borrow)]
    format: Option<TextFormatParam<'a>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum TextFormatParam<'a> {
    Text,
    JsonObject,
    JsonSchema {
        name: Option<&'a str>,
        #[schema(value_type = Option<Object>)]
        schema: Option<IgnoredAny>,
        strict: Option<bool>,
    },
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct ReasoningParam {
    effort: Option<Effort>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

/// The `response` object: the answer without `stream`, and inside `response.*` stream events.
#[derive(Serialize, ToSchema)]
#[schema(as = Response)]
pub struct ResponseObject<'a> {
    /// `resp_` and the provider's id.
    id: String,
    #[schema(value_type = String, pattern = "^response$")]
    object: &'static str,
    created_at: u64,
    /// `completed`, `incomplete`, or `in_progress` in stream events.
    #[schema(value_type = String)]
    status: &'static str,
    model: &'a str,
    output: Vec<OutputItem<'a>>,
    parallel_tool_calls: bool,
    #[schema(value_type = String)]
    tool_choice: &'static str,
    #[schema(value_type = Vec<Object>)]
    tools: [(); 0],
    store: bool,
    /// Null in the `in_progress` events.
    usage: Option<ResponsesUsage>,
    #[schema(value_type = Option<Object>)]
    error: Option<()>,
    incomplete_details: Option<IncompleteDetails>,
    text: TextConfig,
}

#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem<'a> {
    Message {
        id: String,
        status: &'a str,
        #[schema(value_type = String)]
        role: &'static str,
        content: Vec<OutputText<'a>>,
    },
    FunctionCall {
        id: String,
        call_id: &'a str,
        name: &'a str,
        /// The arguments as JSON text.
        arguments: &'a str,
        status: &'a str,
    },
}

#[derive(Serialize, ToSchema)]
struct OutputText<'a> {
    #[schema(value_type = String, pattern = "^output_text$")]
    r#type: &'static str,
    text: &'a str,
    #[schema(value_type = Vec<Object>)]
    annotations: [(); 0],
    #[schema(value_type = Vec<Object>)]
    logprobs: [(); 0],
}

#[derive(Serialize, ToSchema)]
struct ResponsesUsage {
    input_tokens: u32,
    input_tokens_details: InputTokensDetails,
    output_tokens: u32,
    output_tokens_details: OutputTokensDetails,
    total_tokens: u32,
}

#[derive(Serialize, ToSchema)]
struct InputTokensDetails {
    cached_tokens: u32,
    cache_write_tokens: u32,
}

#[derive(Serialize, ToSchema)]
struct OutputTokensDetails {
    reasoning_tokens: u32,
}

#[derive(Serialize, ToSchema)]
struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    #[schema(value_type = String)]
    reason: &'static str,
}

#[derive(Serialize, ToSchema)]
struct TextConfig {
    format: TextFormat,
}

#[derive(Serialize, ToSchema)]
struct TextFormat {
    #[schema(value_type = String)]
    r#type: &'static str,
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
