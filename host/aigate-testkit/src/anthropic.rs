//! [`MockAnthropic`]: a per-test fake of Anthropic's Messages API
//! (`/work/shared/reference/wire-formats.md` section 5), the second upstream the gateway's tests
//! drive, so the canonical contract is proven against a format that is not OpenAI's.
//!
//! ```no_run
//! # async fn demo() {
//! use aigate_testkit::{AnthropicError, AnthropicScenario, MockAnthropic};
//!
//! let upstream = MockAnthropic::start().await;
//! // configure [providers.anthropic] base_url = upstream.base_url(), ANTHROPIC_API_KEY = MockAnthropic::API_KEY
//! upstream.enqueue(AnthropicError::overloaded()); // the next call gets a 529...
//! upstream.enqueue(AnthropicScenario::ToolCall); // ...the one after it a tool_use answer
//! # }
//! ```
//!
//! Answers are deterministic and use the same formulas as the DashScope mock ([`crate::answer`]),
//! so one OpenAI-format request sent through both providers gets the same token counts:
//!
//! - text: `Hello from {model}!`, then ` You said: {text}` when the last user turn has text
//!   blocks (a turn of only `tool_result` blocks has none);
//! - `input_tokens` = ⌈C / 4⌉, minimum 1, C = characters of `system` plus the text of every
//!   message (string content, or the `text` of text blocks);
//! - `output_tokens` = whitespace-separated words generated (thinking + text + tool input JSON);
//! - ids: `msg_…`, `toolu_…`, `req_…` from a seeded counter.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::RecordedRequest;
use crate::answer;
use crate::server::{base62_id, serve_router};
use crate::wire::{js, obj};

/// Path prefix of the API: the base URL is `http://127.0.0.1:PORT/v1`.
pub const ANTHROPIC_PREFIX: &str = "/v1";

/// The `anthropic-version` the mock requires (any value is accepted; absence is a 400).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const JSON_CONTENT_TYPE: &str = "application/json";
const SSE_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The signature the mock puts on its thinking blocks.
pub const THINKING_SIGNATURE: &str = "EqQBCkgIARABGAIiQMockSignature";

/// The text before the call in [`AnthropicScenario::ToolCall`]: Claude usually says what it is
/// about to do, so the `tool_use` block is block 1 while being tool call 0.
pub const TOOL_PREAMBLE: &str = "Let me check that.";

/// Models `GET /v1/models` lists: dated snapshots, as the real list has them.
pub const LISTED_MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5"),
];

/// How the mock answers one `POST /v1/messages` that passed the built-in checks.
#[derive(Clone, Debug, PartialEq)]
pub enum AnthropicScenario {
    /// One text block (see the module doc), `stop_reason: "end_turn"`, or `"max_tokens"` with
    /// the text cut to `max_tokens` words when it is longer. Stream: `message_start`,
    /// `content_block_start`, `ping`, one `text_delta` per word ([`answer::pieces`]),
    /// `content_block_stop`, `message_delta` (stop reason, cumulative `output_tokens`),
    /// `message_stop`.
    Normal,
    /// A `thinking` block ([`answer::REASONING`], with a signature; in a stream
    /// `thinking_delta`s then a `signature_delta`) before the text.
    Thinking,
    /// A text block ([`TOOL_PREAMBLE`]) and a `tool_use` block calling the request's first tool
    /// (default [`answer::DEFAULT_TOOL_NAME`]) with input [`answer::TOOL_ARGUMENTS`],
    /// `stop_reason: "tool_use"`. Stream: the input as `input_json_delta` pieces.
    ToolCall,
    /// Like [`AnthropicScenario::Normal`] with prompt caching: `cache_read_input_tokens` =
    /// [`answer::cached_tokens`] and `input_tokens` the rest of the prompt.
    CachedUsage,
    /// This status and body (JSON), stream or not: Anthropic answers a stream request that
    /// fails before streaming with its JSON error. [`AnthropicError`] has the standard ones.
    Error { status: u16, body: Value },
    /// HTTP 200, `message_start`, a text block with two deltas, then
    /// `event: error` / `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
    /// and the end of the body (reference 5). A non-stream request gets the 529 instead.
    MidStreamError,
    /// Waits before answering as `then`.
    Delay { before_headers: Duration, then: Box<AnthropicScenario> },
    /// Never answers: timeout tests.
    Hang,
}

/// An error as Anthropic sends it: `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct AnthropicError {
    pub status: u16,
    pub body: Value,
}

impl AnthropicError {
    /// Any error type with this status and message.
    pub fn new(status: u16, kind: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CScripted"}),
        }
    }

    /// 529 `overloaded_error` (retryable).
    pub fn overloaded() -> Self {
        Self::new(529, "overloaded_error", "Overloaded")
    }

    /// 429 `rate_limit_error` (retryable).
    pub fn rate_limited() -> Self {
        Self::new(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
        )
    }

    /// 500 `api_error` (retryable).
    pub fn api_error() -> Self {
        Self::new(500, "api_error", "Internal server error")
    }

    /// 400 `invalid_request_error`.
    pub fn invalid_request(message: &str) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    /// The `error.type`.
    pub fn kind(&self) -> Option<&str> {
        self.body.pointer("/error/type").and_then(Value::as_str)
    }
}

impl From<AnthropicError> for AnthropicScenario {
    fn from(e: AnthropicError) -> Self {
        AnthropicScenario::Error { status: e.status, body: e.body }
    }
}

/// A mock Anthropic upstream on `127.0.0.1:<random port>`; stops (closing every connection)
/// when dropped.
///
/// Built-in checks on `POST /v1/messages`, in this order, each a JSON error with Anthropic's
/// shape:
///
/// 1. `x-api-key` is not [`MockAnthropic::API_KEY`]: 401 `authentication_error`
///    (`invalid x-api-key`); an `Authorization` header does not count.
/// 2. No `anthropic-version` header: 400 `invalid_request_error`.
/// 3. The body is not a JSON object; `model` missing (400) or not `claude…` (404
///    `not_found_error`); `max_tokens` missing or not a positive integer (400).
/// 4. `messages` missing or empty; a role other than `user`/`assistant` (a `system` message
///    gets Anthropic's message about the top-level `system`); two turns of one role in a row;
///    an empty text block; a `tool_use` whose `input` is not an object; a `tool_result` that
///    answers no `tool_use` of the previous turn, or a `tool_use` not answered in the next turn.
/// 5. `system` neither a string nor a list of text blocks; a tool without `name` or
///    `input_schema`; a `tool_choice` whose `type` is not `auto`/`any`/`tool`/`none`;
///    `temperature` outside 0..=1.
///
/// Only a request that passes takes the next scripted [`AnthropicScenario`].
#[derive(Debug)]
pub struct MockAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockAnthropic {
    /// The only API key accepted.
    pub const API_KEY: &str = "sk-ant-mock-upstream-key";

    /// Starts a mock on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If the loopback listener cannot be bound: a test cannot run without it.
    #[expect(clippy::expect_used, reason = "test infrastructure: no listener, no test")]
    pub async fn start() -> MockAnthropic {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the mock Anthropic listener on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address of the mock Anthropic listener");
        let shared = Arc::new(Shared::default());
        let router = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let task = tokio::spawn(serve_router(listener, router));
        MockAnthropic { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT/v1`: the provider's base URL (the plugin appends `/messages`).
    pub fn base_url(&self) -> String {
        format!("{}{ANTHROPIC_PREFIX}", self.root_url())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order, whatever its path or outcome.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }

    /// The `POST /v1/messages` requests received (valid or not).
    pub fn messages_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/messages")).collect()
    }

    /// Scripts the next `/v1/messages` responses, first in first out; an empty queue answers
    /// [`AnthropicScenario::Normal`]. Accepts an [`AnthropicError`].
    pub fn enqueue(&self, scenario: impl Into<AnthropicScenario>) {
        self.shared.script().queue.push_back(scenario.into());
    }
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Default)]
struct Shared {
    script: Mutex<Script>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Script {
    requests: Vec<RecordedRequest>,
    queue: VecDeque<AnthropicScenario>,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `prefix` + 24 base-62 characters from a seeded counter: random-looking, stable run to run.
    fn next_id(&self, prefix: &str) -> String {
        base62_id(prefix, self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body, recorded) = RecordedRequest::read(request, MAX_BODY).await;
    shared.script().requests.push(recorded);
    let request_id = shared.next_id("req_011C");
    let route = parts.uri.path().strip_prefix(ANTHROPIC_PREFIX).unwrap_or("");
    let checked = check_headers(&parts.headers);
    match (route, &parts.method) {
        ("/messages", &Method::POST) => match checked {
            Err(e) => error_response(&e, &request_id),
            Ok(()) => messages(&shared, &body, &request_id).await,
        },
        ("/models", &Method::GET) => match checked {
            Err(e) => error_response(&e, &request_id),
            Ok(()) => respond(StatusCode::OK, JSON_CONTENT_TYPE, models_body(), &request_id),
        },
        _ => error_response(
            &AnthropicError::new(404, "not_found_error", &format!("Not found: {} {}", parts.method, parts.uri.path())),
            &request_id,
        ),
    }
}

fn check_headers(headers: &HeaderMap) -> Result<(), AnthropicError> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(MockAnthropic::API_KEY) {
        return Err(AnthropicError::new(401, "authentication_error", "invalid x-api-key"));
    }
    if headers.get("anthropic-version").is_none() {
        return Err(AnthropicError::invalid_request("anthropic-version: header is required"));
    }
    Ok(())
}

fn models_body() -> String {
    let data: Vec<String> = LISTED_MODELS
        .iter()
        .map(|(id, name)| {
            obj(&[
                ("type", js("model")),
                ("id", js(id)),
                ("display_name", js(name)),
                ("created_at", js("2025-09-29T00:00:00Z")),
            ])
        })
        .collect();
    obj(&[
        ("data", format!("[{}]", data.join(","))),
        ("has_more", "false".into()),
        ("first_id", js(LISTED_MODELS[0].0)),
        ("last_id", js(LISTED_MODELS[LISTED_MODELS.len() - 1].0)),
    ])
}

async fn messages(shared: &Shared, body: &[u8], request_id: &str) -> Response {
    let request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(request)) => request,
        _ => {
            return error_response(&AnthropicError::invalid_request("The request body is not valid JSON."), request_id);
        }
    };
    if let Err(e) = validate(&request) {
        return error_response(&e, request_id);
    }
    let stream = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut scenario = shared.script().queue.pop_front().unwrap_or(AnthropicScenario::Normal);
    loop {
        let answer = match scenario {
            AnthropicScenario::Delay { before_headers, then } => {
                tokio::time::sleep(before_headers).await;
                scenario = *then;
                continue;
            }
            AnthropicScenario::Hang => std::future::pending().await,
            AnthropicScenario::Error { status, body } => {
                return error_response(&AnthropicError { status, body }, request_id);
            }
            AnthropicScenario::MidStreamError if !stream => {
                return error_response(&AnthropicError::overloaded(), request_id);
            }
            AnthropicScenario::MidStreamError | AnthropicScenario::Normal => text_answer(&request, false),
            AnthropicScenario::CachedUsage => text_answer(&request, true),
            AnthropicScenario::Thinking => thinking_answer(&request),
            AnthropicScenario::ToolCall => tool_answer(&request, shared.next_id("toolu_01")),
        };
        let message = Message {
            id: shared.next_id("msg_01"),
            model: request.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            answer,
        };
        return if !stream {
            respond(StatusCode::OK, JSON_CONTENT_TYPE, message.json(), request_id)
        } else if matches!(scenario, AnthropicScenario::MidStreamError) {
            let mut events: Vec<String> = message.events().into_iter().take(5).collect();
            events.push(sse_event(
                "error",
                &obj(&[
                    ("type", js("error")),
                    ("error", obj(&[("type", js("overloaded_error")), ("message", js("Overloaded"))])),
                ]),
            ));
            respond(StatusCode::OK, SSE_CONTENT_TYPE, events.concat(), request_id)
        } else {
            respond(StatusCode::OK, SSE_CONTENT_TYPE, message.events().concat(), request_id)
        };
    }
}

/// The built-in checks of [`MockAnthropic`], in its documented order.
fn validate(request: &Map<String, Value>) -> Result<(), AnthropicError> {
    let invalid = |message: String| Err(AnthropicError::invalid_request(&message));
    match request.get("model") {
        Some(Value::String(model)) if model.starts_with("claude") => {}
        Some(Value::String(model)) => {
            return Err(AnthropicError::new(404, "not_found_error", &format!("model: {model}")));
        }
        _ => return invalid("model: Field required".into()),
    }
    if request.get("max_tokens").and_then(Value::as_u64).is_none_or(|m| m < 1) {
        return invalid("max_tokens: Field required".into());
    }
    let messages = match request.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => return invalid("messages: at least one message is required".into()),
    };
    let mut previous_role = "";
    let mut previous_tool_uses: Vec<&str> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "user" | "assistant" => {}
            "system" => {
                return invalid(format!(
                    "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
                ));
            }
            other => {
                return invalid(format!("messages.{i}.role: Input should be 'user' or 'assistant', got {other:?}"));
            }
        }
        if role == previous_role {
            return invalid(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            ));
        }
        let blocks: &[Value] = match message.get("content") {
            Some(Value::String(_)) => &[],
            Some(Value::Array(blocks)) => blocks,
            _ => return invalid(format!("messages.{i}.content: Field required")),
        };
        let mut answered: Vec<&str> = Vec::new();
        let mut tool_uses: Vec<&str> = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if block.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return invalid(format!("{at}.text: text content blocks must be non-empty"));
                    }
                }
                Some("image") => {
                    let source = block.get("source").and_then(|s| s.get("type")).and_then(Value::as_str);
                    if !matches!(source, Some("base64" | "url")) {
                        return invalid(format!("{at}.source: Input tag does not match 'base64' or 'url'"));
                    }
                }
                Some("document") if role == "user" => {
                    let source = block.get("source").and_then(|s| s.get("type")).and_then(Value::as_str);
                    if !matches!(source, Some("base64" | "text" | "url")) {
                        return invalid(format!("{at}.source: Input tag does not match 'base64', 'text' or 'url'"));
                    }
                }
                Some("tool_use") if role == "assistant" => {
                    if !block.get("input").is_some_and(Value::is_object) {
                        return invalid(format!("{at}.tool_use.input: Input should be a valid dictionary"));
                    }
                    tool_uses.push(block.get("id").and_then(Value::as_str).unwrap_or(""));
                }
                Some("tool_result") if role == "user" => {
                    let id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    if !previous_tool_uses.contains(&id) {
                        return invalid(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    answered.push(id);
                }
                // Anthropic verifies the signature of a thinking block sent back (reference
                // 7.2): one the mock did not sign is refused, as a re-serialised block would be.
                Some("thinking") if role == "assistant" => {
                    if block.get("signature").and_then(Value::as_str) != Some(THINKING_SIGNATURE) {
                        return invalid(format!("{at}.thinking.signature: Invalid `signature` in `thinking` block"));
                    }
                }
                Some("redacted_thinking") if role == "assistant" => {}
                other => {
                    return invalid(format!("{at}.type: unexpected block type {other:?} in a {role} turn"));
                }
            }
        }
        if let Some(missing) = previous_tool_uses.iter().find(|id| !answered.contains(id)) {
            return invalid(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
            ));
        }
        previous_role = role;
        previous_tool_uses = tool_uses;
    }
    match request.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) if blocks.iter().all(|b| b.get("type").and_then(Value::as_str) == Some("text")) => {}
        Some(_) => {
            return invalid("system: Input should be a valid string or a list of text blocks".into());
        }
    }
    if let Some(tools) = request.get("tools") {
        let Some(tools) = tools.as_array() else {
            return invalid("tools: Input should be a valid list".into());
        };
        for (i, tool) in tools.iter().enumerate() {
            if tool.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                return invalid(format!("tools.{i}.custom.name: Field required"));
            }
            if !tool.get("input_schema").is_some_and(Value::is_object) {
                return invalid(format!("tools.{i}.custom.input_schema: Field required"));
            }
        }
    }
    if let Some(choice) = request.get("tool_choice") {
        match choice.get("type").and_then(Value::as_str) {
            Some("auto" | "any" | "none") => {}
            Some("tool") if choice.get("name").and_then(Value::as_str).is_some() => {}
            _ => {
                return invalid("tool_choice: Input tag does not match 'auto', 'any', 'tool' or 'none'".into());
            }
        }
    }
    if let Some(temperature) = request.get("temperature").and_then(Value::as_f64)
        && !(0.0..=1.0).contains(&temperature)
    {
        return invalid("temperature: Input should be less than or equal to 1".into());
    }
    Ok(())
}

/// One content block of an answer.
#[derive(Clone, Debug)]
enum Block {
    Thinking(String),
    Text(String),
    ToolUse { id: String, name: String, input: String },
}

#[derive(Clone, Debug)]
struct Answer {
    blocks: Vec<Block>,
    stop_reason: &'static str,
    input_tokens: u64,
    cache_read: u64,
    output_tokens: u64,
}

struct Message {
    id: String,
    model: String,
    answer: Answer,
}

/// The request's text as the DashScope mock's formulas see it: `system` as a first message.
fn as_chat(request: &Map<String, Value>) -> Value {
    let mut messages =
        vec![json!({"role": "system", "content": request.get("system").cloned().unwrap_or(Value::Null)})];
    messages.extend(request.get("messages").and_then(Value::as_array).into_iter().flatten().cloned());
    json!({"model": request.get("model").cloned().unwrap_or(Value::Null), "messages": messages})
}

fn text_answer(request: &Map<String, Value>, cached: bool) -> Answer {
    let chat = as_chat(request);
    let prompt = answer::prompt_tokens(&chat);
    let mut text = answer::content(&chat);
    let mut stop_reason = "end_turn";
    let max = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let pieces = answer::pieces(&text);
    if pieces.len() > max {
        text = pieces[..max].concat();
        stop_reason = "max_tokens";
    }
    let cache_read = if cached { answer::cached_tokens(prompt) } else { 0 };
    Answer {
        output_tokens: answer::completion_tokens(&[&text]),
        blocks: vec![Block::Text(text)],
        stop_reason,
        input_tokens: prompt - cache_read,
        cache_read,
    }
}

fn thinking_answer(request: &Map<String, Value>) -> Answer {
    let chat = as_chat(request);
    let text = answer::content(&chat);
    Answer {
        output_tokens: answer::completion_tokens(&[answer::REASONING, &text]),
        blocks: vec![Block::Thinking(answer::REASONING.to_owned()), Block::Text(text)],
        stop_reason: "end_turn",
        input_tokens: answer::prompt_tokens(&chat),
        cache_read: 0,
    }
}

fn tool_answer(request: &Map<String, Value>, id: String) -> Answer {
    let name = request
        .get("tools")
        .and_then(|t| t.pointer("/0/name"))
        .and_then(Value::as_str)
        .unwrap_or(answer::DEFAULT_TOOL_NAME)
        .to_owned();
    Answer {
        output_tokens: answer::completion_tokens(&[TOOL_PREAMBLE, answer::TOOL_ARGUMENTS]),
        blocks: vec![
            Block::Text(TOOL_PREAMBLE.to_owned()),
            Block::ToolUse { id, name, input: answer::TOOL_ARGUMENTS.to_owned() },
        ],
        stop_reason: "tool_use",
        input_tokens: answer::prompt_tokens(&as_chat(request)),
        cache_read: 0,
    }
}

impl Message {
    fn usage(&self, output_tokens: u64) -> String {
        obj(&[
            ("input_tokens", self.answer.input_tokens.to_string()),
            ("cache_creation_input_tokens", "0".into()),
            ("cache_read_input_tokens", self.answer.cache_read.to_string()),
            ("output_tokens", output_tokens.to_string()),
        ])
    }

    fn envelope(&self, content: String, stop_reason: &str, output_tokens: u64) -> String {
        obj(&[
            ("id", js(&self.id)),
            ("type", js("message")),
            ("role", js("assistant")),
            ("model", js(&self.model)),
            ("content", content),
            ("stop_reason", stop_reason.to_owned()),
            ("stop_sequence", "null".into()),
            ("usage", self.usage(output_tokens)),
        ])
    }

    /// The non-stream body, in the reference's key order.
    fn json(&self) -> String {
        let blocks: Vec<String> = self
            .answer
            .blocks
            .iter()
            .map(|block| match block {
                Block::Thinking(text) => {
                    obj(&[("type", js("thinking")), ("thinking", js(text)), ("signature", js(THINKING_SIGNATURE))])
                }
                Block::Text(text) => obj(&[("type", js("text")), ("text", js(text))]),
                Block::ToolUse { id, name, input } => {
                    obj(&[("type", js("tool_use")), ("id", js(id)), ("name", js(name)), ("input", input.clone())])
                }
            })
            .collect();
        self.envelope(format!("[{}]", blocks.join(",")), &js(self.answer.stop_reason), self.answer.output_tokens)
    }

    /// The stream, one string per event.
    fn events(&self) -> Vec<String> {
        let start = obj(&[("type", js("message_start")), ("message", self.envelope("[]".into(), "null", 1))]);
        let mut events = vec![sse_event("message_start", &start)];
        for (index, block) in self.answer.blocks.iter().enumerate() {
            let at = index.to_string();
            let (start_block, deltas) = match block {
                Block::Thinking(text) => {
                    let mut deltas: Vec<String> = answer::pieces(text)
                        .into_iter()
                        .map(|piece| obj(&[("type", js("thinking_delta")), ("thinking", js(piece))]))
                        .collect();
                    deltas.push(obj(&[("type", js("signature_delta")), ("signature", js(THINKING_SIGNATURE))]));
                    (obj(&[("type", js("thinking")), ("thinking", js(""))]), deltas)
                }
                Block::Text(text) => (
                    obj(&[("type", js("text")), ("text", js(""))]),
                    answer::pieces(text)
                        .into_iter()
                        .map(|piece| obj(&[("type", js("text_delta")), ("text", js(piece))]))
                        .collect(),
                ),
                Block::ToolUse { id, name, input } => (
                    obj(&[("type", js("tool_use")), ("id", js(id)), ("name", js(name)), ("input", "{}".into())]),
                    std::iter::once("")
                        .chain(answer::pieces(input))
                        .map(|piece| obj(&[("type", js("input_json_delta")), ("partial_json", js(piece))]))
                        .collect(),
                ),
            };
            events.push(sse_event(
                "content_block_start",
                &obj(&[("type", js("content_block_start")), ("index", at.clone()), ("content_block", start_block)]),
            ));
            if index == 0 {
                events.push(sse_event("ping", &obj(&[("type", js("ping"))])));
            }
            for delta in deltas {
                events.push(sse_event(
                    "content_block_delta",
                    &obj(&[("type", js("content_block_delta")), ("index", at.clone()), ("delta", delta)]),
                ));
            }
            events.push(sse_event("content_block_stop", &obj(&[("type", js("content_block_stop")), ("index", at)])));
        }
        let delta = obj(&[
            ("type", js("message_delta")),
            ("delta", obj(&[("stop_reason", js(self.answer.stop_reason)), ("stop_sequence", "null".into())])),
            ("usage", obj(&[("output_tokens", self.answer.output_tokens.to_string())])),
        ]);
        events.push(sse_event("message_delta", &delta));
        events.push(sse_event("message_stop", &obj(&[("type", js("message_stop"))])));
        events
    }
}

fn sse_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn error_response(e: &AnthropicError, request_id: &str) -> Response {
    let mut body = e.body.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("request_id".into(), Value::String(request_id.to_owned()));
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(status, JSON_CONTENT_TYPE, body.to_string(), request_id);
    if e.status == 429
        && let Ok(v) = HeaderValue::from_str("20")
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn respond(status: StatusCode, content_type: &str, body: String, request_id: &str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => unreachable!("{other}"),
        }
    }

    #[test]
    fn tool_results_must_answer_the_previous_turn() {
        let ok = request(json!({"model": "claude-x", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]},
        ]}));
        assert_eq!(validate(&ok), Ok(()));
        let mut wrong_id = ok.clone();
        wrong_id["messages"][2]["content"][0]["tool_use_id"] = json!("toolu_2");
        assert!(validate(&wrong_id).is_err());
        let mut unanswered = ok.clone();
        unanswered["messages"][2]["content"] = json!("just text");
        assert!(validate(&unanswered).is_err_and(|e| e.body.to_string().contains("without `tool_result`")));
    }

    #[test]
    fn ids_are_stable_and_prefixed() {
        let a = Shared::default();
        let b = Shared::default();
        let id = a.next_id("msg_01");
        assert_eq!(id, b.next_id("msg_01"));
        assert_eq!(id.len(), "msg_01".len() + 24);
        assert_ne!(id, a.next_id("msg_01"));
    }
}
