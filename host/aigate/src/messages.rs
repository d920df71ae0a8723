//! Anthropic's Messages API as an inbound API: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, for clients such as Claude Code and the Anthropic SDKs.
//!
//! A [`Codec`] in front of the one pipeline (`chat.rs`): the body is decoded to the canonical
//! request (system string or text blocks; text, image, `tool_use`, `tool_result` and `thinking`
//! blocks; tools and `tool_choice`; `stop_sequences`; `metadata.user_id`), the answer encoded
//! back as a `message` or as Anthropic's named stream events (`message_start`,
//! `content_block_start` / `_delta` / `_stop`, `message_delta` with usage, `message_stop`;
//! `error` inside a stream). Errors have Anthropic's shape and statuses (a provider overload is
//! 529 `overloaded_error`). The key is accepted as `x-api-key` or `Authorization: Bearer`.
//!
//! Any model the key may call can serve: `anthropic:…`, `qwen:qwen-plus`, an alias, a route.
//! A provider whose plugin declares `anthropic-messages` native (the anthropic plugin) gets the
//! client's body byte for byte (only `model` set to its own name, the gateway's `fallbacks`
//! removed) with the client's `anthropic-version` and `anthropic-beta`, and the client gets
//! the provider's bytes back (`chat.rs`, `Passthrough`): thinking-block signatures survive.
//! `count_tokens` answers from the gateway's estimate (about four characters a token over the
//! text), the same one limits reserve with: no provider tokenizer is called.

use std::collections::HashMap;
use std::sync::Arc;

use aigate_plugins::canonical as c;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::codec::{Codec, Decoded, StreamEncoder, json};
use crate::error::ApiError;
use crate::openai::ClientOptions;
use crate::server::AppState;

/// `POST /v1/messages`: a `message`, or with `stream: true` Anthropic's named events
/// (`message_start`, `content_block_start` / `_delta` / `_stop`, `message_delta`, `message_stop`).
#[utoipa::path(post, path = "/v1/messages", tag = "anthropic", security(("anthropic_api_key" = []), ("api_key" = [])),
    request_body = MessagesRequest,
    params(
        ("anthropic-version" = Option<String>, Header, description = "Passed to a provider that speaks Messages natively."),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this call safe: the first answer is replayed."),
    ),
    responses(
        (status = 200, description = "The message.",
            content((Message = "application/json"), (crate::openapi::MessagesEvents = "text/event-stream"))),
        crate::openapi::AnthropicErrors))]
pub async fn messages(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let tenant = match authenticate(&state, &headers).await {
        Ok(t) => t,
        Err(e) => return AnthropicMessages.error_response(e),
    };
    crate::chat::serve(state, &AnthropicMessages, tenant, headers, body).await
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` from the gateway's estimate.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic", security(("anthropic_api_key" = []), ("api_key" = [])),
    request_body = CountTokensRequest,
    responses((status = 200, description = "The estimate (about four characters a token).", body = TokenCount),
        crate::openapi::AnthropicErrors))]
pub async fn count_tokens(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let counted = async {
        let tenant = authenticate(&state, &headers).await?;
        let bytes = crate::chat::read_body(&headers, body, state.config.max_body_bytes).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::invalid_json("The request body is not valid UTF-8. Send UTF-8 JSON."))?;
        let decoded = decode(text, false)?;
        if !tenant.may_call(&decoded.model) {
            return Err(tenant.not_allowed(&decoded.model));
        }
        Ok(crate::chat::estimate_prompt_tokens(&decoded.canonical))
    };
    match counted.await {
        Ok(input_tokens) => axum::Json(TokenCount { input_tokens }).into_response(),
        Err(e) => AnthropicMessages.error_response(e),
    }
}

/// The gateway key as Anthropic clients send it: `x-api-key`, or `Authorization: Bearer`.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<crate::auth::Tenant>, ApiError> {
    match headers.get("x-api-key") {
        Some(key) if !headers.contains_key(header::AUTHORIZATION) => {
            state.auth.authenticate_key(key.to_str().unwrap_or_default()).await
        }
        _ => state.auth.authenticate(headers).await,
    }
}

/// The Messages API wire format.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicMessages;

impl Codec for AnthropicMessages {
    fn name(&self) -> &'static str {
        "messages"
    }

    fn endpoint(&self) -> (&'static str, &'static str) {
        ("POST", "/v1/messages")
    }

    fn decode(&self, body: &str) -> Result<Decoded, ApiError> {
        decode(body, true)
    }

    fn response(&self, answer: &c::ChatResponse, model: &str) -> Vec<u8> {
        let choice = answer.choices.first();
        let mut content = Vec::new();
        if let Some(ch) = choice {
            if let Some(thinking) = ch.message.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                content.push(ResponseBlock::Thinking { thinking, signature: "" });
            }
            if let Some(text) = ch.message.content.as_deref().filter(|t| !t.is_empty()) {
                content.push(ResponseBlock::Text { text });
            }
            for call in &ch.message.tool_calls {
                let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                content.push(ResponseBlock::ToolUse { id: &call.id, name: &call.name, input });
            }
        }
        let body = Message {
            id: message_id(&answer.id),
            r#type: "message",
            role: "assistant",
            model,
            content,
            stop_reason: choice.and_then(|ch| ch.finish_reason.as_ref()).map(stop_reason),
            stop_sequence: None,
            usage: usage(answer.usage.as_ref()),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn stream(&self, model: String, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(Events { model, ..Events::default() })
    }

    fn error_response(&self, err: ApiError) -> Response {
        let (status, kind) = error_type(&err);
        let body = serde_json::to_string(&error_body(kind, &err.message)).unwrap_or_default();
        err.into_response_with(status, body)
    }

    fn native_api(&self) -> Option<&'static str> {
        Some(NATIVE_API)
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &["anthropic-version", "anthropic-beta"]
    }
}

/// What a plugin whose provider speaks this API declares in `capabilities.native-apis`.
pub const NATIVE_API: &str = "anthropic-messages";

/// `msg_` and the provider's id (Anthropic's SDKs show it; any text is accepted).
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") { id.to_owned() } else { format!("msg_{id}") }
}

fn stop_reason(f: &c::FinishReason) -> &'static str {
    match f {
        c::FinishReason::Stop => "end_turn",
        c::FinishReason::Length => "max_tokens",
        c::FinishReason::ToolCalls => "tool_use",
        c::FinishReason::ContentFilter => "refusal",
        c::FinishReason::Other(_) => "end_turn",
    }
}

/// Anthropic's usage: input tokens without the cached ones, which are reported apart.
fn usage(u: Option<&c::Usage>) -> MessagesUsage {
    let Some(u) = u else {
        return MessagesUsage {
            input_tokens: 0,
            output_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
        };
    };
    let cached = u.cached_tokens.unwrap_or(0);
    MessagesUsage {
        input_tokens: u.prompt_tokens.saturating_sub(cached),
        output_tokens: u.completion_tokens,
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
    }
}

/// The status and Anthropic error type of an error on this API.
fn error_type(err: &ApiError) -> (StatusCode, &'static str) {
    let status = err.status;
    match status.as_u16() {
        400 | 422 => (status, "invalid_request_error"),
        401 => (status, "authentication_error"),
        403 => (status, "permission_error"),
        404 => (status, "not_found_error"),
        413 => (status, "request_too_large"),
        429 => (status, "rate_limit_error"),
        // A provider's overload (its 503/529) is Anthropic's 529, which its SDKs retry.
        503 if err.code.as_deref() != Some("gateway_shutting_down") => {
            (StatusCode::from_u16(529).unwrap_or(status), "overloaded_error")
        }
        _ => (status, "api_error"),
    }
}

fn error_body<'a>(kind: &'a str, message: &'a str) -> ErrorBody<'a> {
    ErrorBody { r#type: "error", error: ErrorDetail { r#type: kind, message } }
}

// ---- decoding -------------------------------------------------------------------------------

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

fn text_of(blocks: &[Value], param: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for (i, b) in blocks.iter().enumerate() {
        match (b.get("type").and_then(Value::as_str), b.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(t)) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            _ => return Err(invalid(&format!("{param}[{i}]"), format!("`{param}[{i}]` must be a text block."))),
        }
    }
    Ok(text)
}

fn image_part(block: &Value, param: &str) -> Result<c::ContentPart, ApiError> {
    let source = block.get("source").ok_or_else(|| invalid(param, format!("`{param}` has no `source`.")))?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str).unwrap_or("image/png");
            let data = source.get("data").and_then(Value::as_str).unwrap_or_default();
            format!("data:{media};base64,{data}")
        }
        Some("url") => source.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
        _ => return Err(invalid(param, format!("`{param}.source.type` must be `base64` or `url`."))),
    };
    Ok(c::ContentPart::Image(c::ImageUrl { url, detail: None }))
}

/// A `tool_result`'s content: a string or text (and image) blocks, as text.
fn tool_result_text(block: &Value, param: &str) -> Result<String, ApiError> {
    match block.get("content") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            Ok(texts.join("\n"))
        }
        Some(_) => Err(invalid(&format!("{param}.content"), "A tool result's content is a string or blocks.")),
    }
}

fn user_message(content: Option<c::MessageContent>) -> c::Message {
    c::Message {
        role: c::Role::User,
        content,
        name: None,
        tool_calls: vec![],
        tool_call_id: None,
        reasoning_content: None,
    }
}

/// One Anthropic message → canonical messages (tool results become `tool` messages, first).
fn convert_message(
    i: usize,
    m: &Value,
    out: &mut Vec<c::Message>,
    untranslatable: &mut Option<String>,
) -> Result<(), ApiError> {
    let param = format!("messages[{i}]");
    let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
    let blocks: Vec<Value> = match m.get("content") {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(a)) => a.clone(),
        _ => {
            return Err(invalid(&format!("{param}.content"), format!("`{param}.content` must be a string or blocks.")));
        }
    };
    match role {
        "user" => {
            let mut parts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                let bp = format!("{param}.content[{j}]");
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => parts.push(c::ContentPart::Text(
                        b.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    )),
                    Some("image") => parts.push(image_part(b, &bp)?),
                    Some("tool_result") => {
                        let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
                        if id.is_empty() {
                            return Err(invalid(&bp, format!("`{bp}` has no `tool_use_id`.")));
                        }
                        let mut text = tool_result_text(b, &bp)?;
                        if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                            text = format!("Error: {text}");
                        }
                        out.push(c::Message {
                            role: c::Role::Tool,
                            content: Some(c::MessageContent::Text(text)),
                            name: None,
                            tool_calls: vec![],
                            tool_call_id: Some(id.to_owned()),
                            reasoning_content: None,
                        });
                    }
                    // A block the canonical format has no place for (`document`, search results,
                    // …): left out, and only a provider that speaks Messages may serve it.
                    Some(other) => {
                        untranslatable.get_or_insert_with(|| format!("`{bp}` (a `{other}` block)"));
                    }
                    None => return Err(invalid(&bp, format!("`{bp}` has no `type`."))),
                }
            }
            if !parts.is_empty() {
                let content = match parts.as_slice() {
                    [c::ContentPart::Text(t)] => c::MessageContent::Text(t.clone()),
                    _ => c::MessageContent::Parts(parts),
                };
                out.push(user_message(Some(content)));
            }
        }
        "assistant" => {
            let (mut text, mut thinking, mut calls) = (String::new(), String::new(), Vec::new());
            for (j, b) in blocks.iter().enumerate() {
                let bp = format!("{param}.content[{j}]");
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
                    Some("thinking") => {
                        thinking.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("redacted_thinking") => {}
                    Some("tool_use") => calls.push(c::ToolCall {
                        id: b.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        name: b.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        arguments: b.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                    }),
                    Some(other) => {
                        untranslatable.get_or_insert_with(|| format!("`{bp}` (a `{other}` block)"));
                    }
                    None => return Err(invalid(&bp, format!("`{bp}` has no `type`."))),
                }
            }
            out.push(c::Message {
                role: c::Role::Assistant,
                content: (!text.is_empty()).then_some(c::MessageContent::Text(text)),
                name: None,
                tool_calls: calls,
                tool_call_id: None,
                reasoning_content: (!thinking.is_empty()).then_some(thinking),
            });
        }
        other => {
            return Err(invalid(
                &format!("{param}.role"),
                format!(
                    "`{param}.role` is `{other}`; the Messages API takes `user` and `assistant` (system is top-level)."
                ),
            ));
        }
    }
    Ok(())
}

/// Parses a Messages body; `max_tokens` is required on `/v1/messages`, not on `count_tokens`.
fn decode(body: &str, require_max_tokens: bool) -> Result<Decoded, ApiError> {
    // `MessagesRequest` is `CountTokensRequest` with `max_tokens` required, which
    // `decode_object` already enforces (a whole number from 1 to 2^32-1) when
    // `require_max_tokens`: checking the common type is checking either, without the copy of
    // the whole body that `#[serde(flatten)]` deserialisation makes.
    json::decode_conforming(
        body,
        |map| decode_object(map, require_max_tokens),
        |value| json::conforms::<CountTokensRequest>(value),
    )
}

fn decode_object(map: &serde_json::Map<String, Value>, require_max_tokens: bool) -> Result<Decoded, ApiError> {
    let model = json::model(map)?;
    let max_tokens = json::count(map, "max_tokens", require_max_tokens)?;
    let mut messages = Vec::new();
    match map.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(system(s.clone())),
        Some(Value::Array(blocks)) => messages.push(system(text_of(blocks, "system")?)),
        Some(_) => return Err(invalid("system", "`system` must be a string or text blocks.")),
    }
    let Some(Value::Array(list)) = map.get("messages") else {
        return Err(invalid("messages", "`messages` is required: a list of user and assistant messages."));
    };
    if list.is_empty() {
        return Err(invalid("messages", "`messages` must hold at least one message."));
    }
    let mut untranslatable = None;
    for (i, m) in list.iter().enumerate() {
        convert_message(i, m, &mut messages, &mut untranslatable)?;
    }
    let stop = match map.get("stop_sequences") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(_) => return Err(invalid("stop_sequences", "`stop_sequences` must be a list of strings.")),
    };
    let mut tools = Vec::new();
    if let Some(Value::Array(list)) = map.get("tools") {
        for (i, t) in list.iter().enumerate() {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                return Err(invalid(&format!("tools[{i}].name"), "A tool needs a name."));
            }
            tools.push(c::FunctionTool {
                name: name.to_owned(),
                description: t.get("description").and_then(Value::as_str).map(str::to_owned),
                parameters: t.get("input_schema").map(Value::to_string),
                strict: None,
            });
        }
    }
    let (tool_choice, parallel_tool_calls) = match map.get("tool_choice") {
        None | Some(Value::Null) => (None, None),
        Some(choice) => {
            let parallel = choice.get("disable_parallel_tool_use").and_then(Value::as_bool).map(|d| !d);
            let kind = match choice.get("type").and_then(Value::as_str) {
                Some("auto") => c::ToolChoice::Auto,
                Some("any") => c::ToolChoice::Required,
                Some("none") => c::ToolChoice::None,
                Some("tool") => match choice.get("name").and_then(Value::as_str) {
                    Some(n) => c::ToolChoice::Function(n.to_owned()),
                    None => return Err(invalid("tool_choice.name", "`tool_choice` of type `tool` needs a `name`.")),
                },
                _ => return Err(invalid("tool_choice", "`tool_choice.type` is auto, any, tool or none.")),
            };
            (Some(kind), parallel)
        }
    };
    let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let fallbacks = json::fallbacks(map)?;
    let canonical = c::ChatRequest {
        model: String::new(),
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        temperature: json::number(map, "temperature", 0.0, 1.0)?,
        top_p: json::number(map, "top_p", 0.0, 1.0)?,
        max_tokens,
        stop,
        seed: None,
        n: None,
        presence_penalty: None,
        frequency_penalty: None,
        response_format: None,
        user: map.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str).map(str::to_owned),
        stream,
        extra: String::new(),
    };
    let options = ClientOptions { stream, include_usage: true };
    Ok(Decoded { model, fallbacks, canonical, options, untranslatable })
}

fn system(text: String) -> c::Message {
    c::Message {
        role: c::Role::System,
        content: Some(c::MessageContent::Text(text)),
        name: None,
        tool_calls: vec![],
        tool_call_id: None,
        reasoning_content: None,
    }
}

// ---- streaming ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call: the canonical tool-call index.
    Tool(u32),
}

/// Canonical chunks → Anthropic's named events, for one stream.
#[derive(Debug, Default)]
struct Events {
    model: String,
    started: bool,
    /// The open content block and its index.
    open: Option<(usize, Block)>,
    next_index: usize,
    /// Tool-call index → its block index, for argument pieces arriving later.
    tools: HashMap<u32, usize>,
    stop_reason: Option<&'static str>,
    usage: Option<c::Usage>,
}

use crate::codec::sse_event as event;

impl Events {
    fn start(&mut self, out: &mut Vec<u8>, id: &str) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": message_id(id), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        event(out, "message_start", &json!({"type": "message_start", "message": message}));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            event(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
        }
    }

    /// Makes `block` the open one (closing another), starting it with `start` when new.
    fn open(&mut self, out: &mut Vec<u8>, block: Block, start: Value) -> usize {
        if let Some((index, open)) = self.open
            && open == block
        {
            return index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        self.open = Some((index, block));
        index
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Value) {
        event(out, "content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }
}

impl StreamEncoder for Events {
    fn chunk(&mut self, chunk: &c::StreamChunk) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.start(&mut out, &chunk.id);
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for d in chunk.choices.iter().filter(|d| d.index == 0) {
            if let Some(t) = d.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                let i = self.open(&mut out, Block::Thinking, json!({"type": "thinking", "thinking": ""}));
                Self::delta(&mut out, i, json!({"type": "thinking_delta", "thinking": t}));
            }
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                let i = self.open(&mut out, Block::Text, json!({"type": "text", "text": ""}));
                Self::delta(&mut out, i, json!({"type": "text_delta", "text": t}));
            }
            for call in &d.tool_calls {
                let index = match self.tools.get(&call.index) {
                    Some(&i) if self.open == Some((i, Block::Tool(call.index))) => i,
                    Some(_) => continue, // a late piece of a block already closed: Anthropic cannot reopen it
                    None => {
                        let start = json!({
                            "type": "tool_use",
                            "id": call.id.clone().unwrap_or_default(),
                            "name": call.name.clone().unwrap_or_default(),
                            "input": {},
                        });
                        let i = self.open(&mut out, Block::Tool(call.index), start);
                        self.tools.insert(call.index, i);
                        i
                    }
                };
                if let Some(args) = call.arguments.as_deref().filter(|a| !a.is_empty()) {
                    Self::delta(&mut out, index, json!({"type": "input_json_delta", "partial_json": args}));
                }
            }
            if let Some(f) = &d.finish_reason {
                self.stop_reason = Some(stop_reason(f));
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn error(&mut self, err: &ApiError) -> Vec<u8> {
        let (_, kind) = error_type(err);
        let mut out = Vec::new();
        event(&mut out, "error", &error_body(kind, &err.message));
        out
    }

    fn end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.start(&mut out, "");
        self.close(&mut out);
        let u = usage(self.usage.as_ref());
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": u,
        });
        event(&mut out, "message_delta", &delta);
        event(&mut out, "message_stop", &json!({"type": "message_stop"}));
        out
    }
}

// ---- the published wire types -----------------------------------------------------------------
//
// What the OpenAPI document (`openapi.rs`) says this API takes and answers. The decoder checks
// every body it accepts against `CountTokensRequest` (`json::conforms`; `MessagesRequest` adds
// only the `max_tokens` the decoder requires itself), and `response` writes the `Message`
// type, so the document cannot describe another API than the one served.

/// The body of `POST /v1/messages` (Anthropic's Messages API). Fields not listed are accepted
/// and, on a provider that speaks Messages natively, passed through.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // read by the schema (and serde, for its `flatten` and `borrow` attributes)
pub struct MessagesRequest<'a> {
    /// The most tokens to generate.
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    max_tokens: u32,
    #[serde(flatten, borrow)]
    params: CountTokensRequest<'a>,
}

/// The body of `POST /v1/messages/count_tokens`: a Messages request, `max_tokens` optional.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CountTokensRequest<'a> {
    /// A model the key may call: `provider:model`, an alias or a route.
    #[schema(example = "qwen:qwen-plus", min_length = 1)]
    model: &'a str,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    max_tokens: Option<u32>,
    #[serde(borrow)]
    system: Option<SystemPrompt<'a>>,
    #[serde(borrow)]
    #[schema(min_items = 1)]
    messages: Vec<MessageParam<'a>>,
    stop_sequences: Option<Vec<&'a str>>,
    stream: Option<bool>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    temperature: Option<f64>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    top_p: Option<f64>,
    #[serde(borrow)]
    tools: Option<Vec<ToolParam<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<ToolChoiceParam<'a>>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
    /// The gateway's own: models to try in order when the requested one fails.
    #[schema(max_items = 8)]
    fallbacks: Option<Vec<&'a str>>,
}

/// `system`: a string or text blocks.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SystemPrompt<'a> {
    Text(&'a str),
    #[serde(borrow)]
    Blocks(Vec<TextBlock<'a>>),
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct TextBlock<'a> {
    #[schema(pattern = "^text$")]
    r#type: &'a str,
    text: &'a str,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct MessageParam<'a> {
    role: MessageRole,
    #[serde(borrow)]
    content: MessageContent<'a>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum MessageRole {
    User,
    Assistant,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum MessageContent<'a> {
    Text(&'a str),
    #[serde(borrow)]
    Blocks(Vec<ContentBlock<'a>>),
}

/// A content block. Blocks of other types (`document`, search results, …) are accepted and
/// served only by a provider that speaks Messages natively.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum ContentBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        #[serde(borrow)]
        source: ImageSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        /// The call's arguments (`{}` when absent).
        #[schema(value_type = Option<Object>)]
        input: Option<IgnoredAny>,
    },
    ToolResult {
        #[schema(min_length = 1)]
        tool_use_id: &'a str,
        #[serde(borrow)]
        content: Option<ToolResultContent<'a>>,
        is_error: Option<bool>,
    },
    Thinking {
        thinking: &'a str,
        signature: Option<&'a str>,
    },
    RedactedThinking {
        data: Option<&'a str>,
    },
    /// Any other type. Not in the document (`skip_serializing` hides it from the schema; this
    /// type is only deserialised), which lists the blocks the gateway translates.
    #[serde(other, skip_serializing)]
    Other,
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum ImageSource<'a> {
    Base64 { media_type: Option<&'a str>, data: &'a str },
    Url { url: &'a str },
}

/// A tool result's content: a string or blocks (their text is what the model sees).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ToolResultContent<'a> {
    Text(&'a str),
    #[schema(value_type = Vec<Object>)]
    Blocks(Vec<IgnoredAny>),
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct ToolParam<'a> {
    #[schema(min_length = 1)]
    name: &'a str,
    description: Option<&'a str>,
    #[schema(value_type = Option<Object>)]
    input_schema: Option<IgnoredAny>,
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum ToolChoiceParam<'a> {
    Auto { disable_parallel_tool_use: Option<bool> },
    Any { disable_parallel_tool_use: Option<bool> },
    Tool { name: &'a str, disable_parallel_tool_use: Option<bool> },
    None,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct Metadata<'a> {
    user_id: Option<&'a str>,
}

/// The answer of `POST /v1/messages` without `stream`.
#[derive(Serialize, ToSchema)]
#[schema(as = MessagesResponse)]
pub struct Message<'a> {
    /// `msg_` and the provider's id.
    id: String,
    #[schema(value_type = String, pattern = "^message$")]
    r#type: &'static str,
    #[schema(value_type = String, pattern = "^assistant$")]
    role: &'static str,
    model: &'a str,
    content: Vec<ResponseBlock<'a>>,
    /// `end_turn`, `max_tokens`, `tool_use` or `refusal`.
    #[schema(value_type = Option<String>)]
    stop_reason: Option<&'static str>,
    #[schema(value_type = Option<String>)]
    stop_sequence: Option<&'static str>,
    usage: MessagesUsage,
}

#[derive(Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        #[schema(value_type = Object)]
        input: Value,
    },
}

/// Anthropic's usage: input tokens without the cached ones, which are reported apart.
#[derive(Serialize, ToSchema)]
pub struct MessagesUsage {
    input_tokens: u32,
    output_tokens: u32,
    cache_read_input_tokens: u32,
    cache_creation_input_tokens: u32,
}

/// `POST /v1/messages/count_tokens`'s answer.
#[derive(Serialize, ToSchema)]
pub struct TokenCount {
    input_tokens: u32,
}

/// Anthropic's error body, on every error of these two routes.
#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicError)]
pub struct ErrorBody<'a> {
    #[schema(value_type = String, pattern = "^error$")]
    r#type: &'static str,
    error: ErrorDetail<'a>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AnthropicErrorDetail)]
pub struct ErrorDetail<'a> {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `overloaded_error` or `api_error`.
    r#type: &'a str,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claude_code_like_body_decodes_to_canonical() {
        let body = json!({
            "model": "qwen:qwen-plus",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}],
            "metadata": {"user_id": "user_1"},
            "messages": [
                {"role": "user", "content": "Read main.rs"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should read it.", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "main.rs"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "fn main() {}"}]},
                    {"type": "text", "text": "What does it do?"}
                ]}
            ],
            "stream": true
        })
        .to_string();
        let d = decode(&body, true).unwrap();
        assert_eq!(d.model, "qwen:qwen-plus");
        assert!(d.options.stream);
        let roles: Vec<c::Role> = d.canonical.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [c::Role::System, c::Role::User, c::Role::Assistant, c::Role::Tool, c::Role::User]);
        let assistant = &d.canonical.messages[2];
        assert_eq!(assistant.tool_calls[0].arguments, r#"{"path":"main.rs"}"#);
        assert_eq!(assistant.reasoning_content.as_deref(), Some("I should read it."));
        assert_eq!(d.canonical.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(d.canonical.user.as_deref(), Some("user_1"));
        assert_eq!(d.canonical.tools[0].parameters.as_deref(), Some(r#"{"type":"object"}"#));
    }

    #[test]
    fn bad_bodies_are_400s_naming_the_field() {
        for (body, param) in [
            (json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}), "max_tokens"),
            (json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}), "max_tokens"),
            (json!({"model": "m", "max_tokens": 5, "messages": []}), "messages"),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "x"}]}),
                "temperature",
            ),
        ] {
            let err = decode(&body.to_string(), true).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
    }

    fn chunk(content: Option<&str>, tool: Option<c::ToolCallDelta>, finish: Option<c::FinishReason>) -> c::StreamChunk {
        c::StreamChunk {
            id: "abc".into(),
            created: 0,
            model: "m".into(),
            choices: vec![c::ChoiceDelta {
                index: 0,
                role: None,
                content: content.map(str::to_owned),
                reasoning_content: None,
                tool_calls: tool.into_iter().collect(),
                finish_reason: finish,
                refusal: None,
            }],
            usage: None,
            raw_cost: None,
        }
    }

    #[test]
    fn stream_events_open_and_close_blocks_in_order() {
        let mut e = AnthropicMessages.stream("qwen:qwen-plus".into(), true);
        let mut all = Vec::new();
        for ch in [
            chunk(Some("Let me look."), None, None),
            chunk(
                None,
                Some(c::ToolCallDelta {
                    index: 0,
                    id: Some("call_1".into()),
                    name: Some("Read".into()),
                    arguments: Some("{\"pa".into()),
                }),
                None,
            ),
            chunk(
                None,
                Some(c::ToolCallDelta { index: 0, id: None, name: None, arguments: Some("th\":1}".into()) }),
                Some(c::FinishReason::ToolCalls),
            ),
        ] {
            all.extend(e.chunk(&ch).unwrap_or_default());
        }
        all.extend(e.end());
        let text = String::from_utf8(all).unwrap();
        let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""stop_reason":"tool_use""#), "{text}");
        assert!(text.contains(r#""partial_json":"th\":1}""#), "{text}");
    }
}
