//! [`MockGemini`]: a per-test fake of Google's Gemini API (`generativelanguage.googleapis.com`,
//! `v1beta`), the wire format the `google-genai` SDK's types describe: camelCase JSON,
//! `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` (SSE events
//! of whole `GenerateContentResponse`s, `\r\n\r\n`-framed, no `[DONE]`; without `alt=sse` one JSON
//! array), the key in `x-goog-api-key`, errors as `{"error": {"code", "message", "status",
//! "details"}}`.
//!
//! ```no_run
//! # async fn demo() {
//! use aigate_testkit::{GeminiError, GeminiScenario, MockGemini};
//!
//! let upstream = MockGemini::start().await;
//! // configure [providers.gemini] base_url = upstream.base_url(), GEMINI_API_KEY = MockGemini::API_KEY
//! upstream.enqueue(GeminiError::overloaded()); // the next call gets a 503...
//! upstream.enqueue(GeminiScenario::ToolCall); // ...the one after it a functionCall
//! # }
//! ```
//!
//! Answers and token counts use the DashScope mock's formulas ([`crate::answer`]) over the
//! request's text (`systemInstruction` first, then every text part of `contents`), so one
//! OpenAI-format request through qwen, anthropic or gemini gets the same numbers:
//! `promptTokenCount` = ⌈C / 4⌉, `candidatesTokenCount` = words of the answer (thoughts are
//! `thoughtsTokenCount`, apart, as Google counts them), `totalTokenCount` their sum.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::RecordedRequest;
use crate::answer;
use crate::server::{base62_id, serve_router};
use crate::wire::{js, obj};

/// Path prefix of the API: the base URL is `http://127.0.0.1:PORT/v1beta`.
pub const GEMINI_PREFIX: &str = "/v1beta";

const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";
const SSE_CONTENT_TYPE: &str = "text/event-stream";
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Models `GET /v1beta/models` lists (name, input and output token limits).
pub const LISTED_MODELS: &[(&str, u64, u64)] = &[
    ("gemini-2.5-pro", 1_048_576, 65_536),
    ("gemini-2.5-flash", 1_048_576, 65_536),
    ("gemini-2.0-flash", 1_048_576, 8_192),
    ("text-embedding-004", 2_048, 1),
];

/// Top-level request fields the API knows: any other is a 400, as Google's JSON parser is strict
/// (`Unknown name "max_tokens": Cannot find field.`).
const REQUEST_FIELDS: &[&str] =
    &["contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent"];

/// `generationConfig` fields the mock knows.
const GENERATION_FIELDS: &[&str] = &[
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "seed",
    "candidateCount",
    "presencePenalty",
    "frequencyPenalty",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "thinkingConfig",
    "responseLogprobs",
    "logprobs",
];

/// How the mock answers one generate call that passed the built-in checks.
#[derive(Clone, Debug, PartialEq)]
pub enum GeminiScenario {
    /// One text part (see the module doc), `finishReason: "STOP"`, or `"MAX_TOKENS"` with the text
    /// cut to `maxOutputTokens` words. Stream: one event per word ([`answer::pieces`]), each with
    /// the usage so far; the last carries `finishReason` and `candidatesTokenCount`.
    Normal,
    /// A `thought: true` part ([`answer::REASONING`]) before the text, counted in
    /// `thoughtsTokenCount`.
    Thinking,
    /// A `functionCall` of the request's first declared function (default
    /// [`answer::DEFAULT_TOOL_NAME`]) with args [`answer::TOOL_ARGUMENTS`], no id (as the Gemini
    /// API sends it), `finishReason: "STOP"`.
    ToolCall,
    /// The prompt is blocked: no candidates, `promptFeedback.blockReason: "SAFETY"`.
    BlockedPrompt,
    /// This status and JSON body, stream or not. [`GeminiError`] has the standard ones.
    Error { status: u16, body: Value },
    /// HTTP 200, the first word of the answer, then an event holding a 500 `INTERNAL` error, and
    /// the end of the body. A non-stream request gets the 500 instead.
    MidStreamError,
}

/// An error as Google sends it: `{"error": {"code", "message", "status", "details"?}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct GeminiError {
    pub status: u16,
    pub body: Value,
}

impl GeminiError {
    /// Any canonical code (`status`) with this HTTP status and message.
    pub fn new(status: u16, canonical: &str, message: &str) -> Self {
        Self { status, body: json!({"error": {"code": status, "message": message, "status": canonical}}) }
    }

    /// 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID`: Google's answer to a wrong key.
    pub fn api_key_invalid() -> Self {
        let mut e = Self::new(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
        e.body["error"]["details"] = json!([
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."}
        ]);
        e
    }

    /// 429 `RESOURCE_EXHAUSTED` with a `RetryInfo` detail.
    pub fn rate_limited() -> Self {
        let mut e = Self::new(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
        );
        e.body["error"]["details"] =
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}]);
        e
    }

    /// 503 `UNAVAILABLE`, the overloaded model.
    pub fn overloaded() -> Self {
        Self::new(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    }

    /// 400 `INVALID_ARGUMENT`.
    pub fn invalid_argument(message: &str) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    fn internal() -> Self {
        Self::new(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        )
    }
}

impl From<GeminiError> for GeminiScenario {
    fn from(e: GeminiError) -> Self {
        GeminiScenario::Error { status: e.status, body: e.body }
    }
}

/// A mock Gemini upstream on `127.0.0.1:<random port>`; stops (closing every connection) when
/// dropped.
///
/// Built-in checks on `POST /v1beta/models/{model}:generateContent` (and
/// `:streamGenerateContent`), in this order, each an error with Google's shape:
///
/// 1. No `x-goog-api-key` (a `key` query or `Authorization` does not count here): 403
///    `PERMISSION_DENIED`; a key other than [`MockGemini::API_KEY`]: 400 `INVALID_ARGUMENT` with
///    reason `API_KEY_INVALID`.
/// 2. A model not starting with `gemini`: 404 `NOT_FOUND`.
/// 3. The body is not a JSON object, or has a field the API does not know (top level or in
///    `generationConfig`): 400 `INVALID_ARGUMENT` naming it.
/// 4. `contents` missing or empty; a role other than `user`/`model`; a turn without parts; a
///    `functionResponse` whose name no `functionCall` of the previous (model) turn has.
///
/// Only a request that passes takes the next scripted [`GeminiScenario`].
#[derive(Debug)]
pub struct MockGemini {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockGemini {
    /// The only API key accepted.
    pub const API_KEY: &str = "AIzaSyMockGeminiUpstreamKey000000000000";

    /// Starts a mock on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If the loopback listener cannot be bound: a test cannot run without it.
    #[expect(clippy::expect_used, reason = "test infrastructure: no listener, no test")]
    pub async fn start() -> MockGemini {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the mock Gemini listener on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address of the mock Gemini listener");
        let shared = Arc::new(Shared::default());
        let router = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let task = tokio::spawn(serve_router(listener, router));
        MockGemini { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT/v1beta`: the provider's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{GEMINI_PREFIX}", self.addr)
    }

    /// Every request received so far, in arrival order, whatever its path or outcome.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }

    /// The generate requests received (`:generateContent` and `:streamGenerateContent`).
    pub fn generate_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.method == "POST" && r.path.contains(":")).collect()
    }

    /// Scripts the next generate responses, first in first out; an empty queue answers
    /// [`GeminiScenario::Normal`]. Accepts a [`GeminiError`].
    pub fn enqueue(&self, scenario: impl Into<GeminiScenario>) {
        self.shared.script().queue.push_back(scenario.into());
    }
}

impl Drop for MockGemini {
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
    queue: VecDeque<GeminiScenario>,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body, recorded) = RecordedRequest::read(request, MAX_BODY).await;
    shared.script().requests.push(recorded);
    let key = parts.headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    let key_error = match key {
        None => Some(GeminiError::new(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
        Some(MockGemini::API_KEY) => None,
        Some(_) => Some(GeminiError::api_key_invalid()),
    };
    let route = parts.uri.path().strip_prefix(GEMINI_PREFIX).unwrap_or("");
    let sse = parts.uri.query().is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
    if let Some(e) = key_error {
        return error_response(&e);
    }
    if route == "/models" && parts.method == Method::GET {
        return respond(StatusCode::OK, JSON_CONTENT_TYPE, models_body());
    }
    let call = route.strip_prefix("/models/").and_then(|rest| rest.split_once(':'));
    match (call, &parts.method) {
        (Some((model, method @ ("generateContent" | "streamGenerateContent"))), &Method::POST) => {
            let stream = method == "streamGenerateContent";
            generate(&shared, model, &body, stream, sse)
        }
        _ => error_response(&GeminiError::new(
            404,
            "NOT_FOUND",
            &format!("The requested URL {} was not found on this server.", parts.uri.path()),
        )),
    }
}

fn models_body() -> String {
    let models: Vec<Value> = LISTED_MODELS
        .iter()
        .map(|(name, input, output)| {
            let methods = if name.starts_with("gemini") {
                json!(["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"])
            } else {
                json!(["embedContent"])
            };
            json!({"name": format!("models/{name}"), "version": "001", "displayName": name,
                   "inputTokenLimit": input, "outputTokenLimit": output, "supportedGenerationMethods": methods})
        })
        .collect();
    json!({"models": models}).to_string()
}

fn generate(shared: &Shared, model: &str, body: &[u8], stream: bool, sse: bool) -> Response {
    if !model.starts_with("gemini") {
        return error_response(&GeminiError::new(
            404,
            "NOT_FOUND",
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
            ),
        ));
    }
    let request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(request)) => request,
        _ => {
            return error_response(&GeminiError::invalid_argument(
                "Invalid JSON payload received. Expected an object.",
            ));
        }
    };
    if let Err(e) = validate(&request) {
        return error_response(&e);
    }
    let scenario = shared.script().queue.pop_front().unwrap_or(GeminiScenario::Normal);
    let response_id = base62_id("", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let chat = as_chat(model, &request);
    let mid_stream_error = scenario == GeminiScenario::MidStreamError;
    let answer = match scenario {
        GeminiScenario::Error { status, body } => return error_response(&GeminiError { status, body }),
        GeminiScenario::MidStreamError if !stream => return error_response(&GeminiError::internal()),
        GeminiScenario::Normal | GeminiScenario::MidStreamError => text_answer(&chat, &request),
        GeminiScenario::Thinking => {
            Answer { thought: Some(answer::REASONING.to_owned()), ..text_answer(&chat, &request) }
        }
        GeminiScenario::ToolCall => {
            Answer { text: None, thought: None, call: Some(tool_name(&request)), finish: "STOP" }
        }
        GeminiScenario::BlockedPrompt => Answer { text: None, thought: None, call: None, finish: "" },
    };
    let reply = Reply { model: model.to_owned(), response_id, prompt: answer::prompt_tokens(&chat), answer };
    if !stream {
        return respond(StatusCode::OK, JSON_CONTENT_TYPE, reply.whole());
    }
    let mut events = reply.events();
    if mid_stream_error {
        events.truncate(1);
        events.push(GeminiError::internal().body.to_string());
    }
    if sse {
        let body: String = events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
        respond(StatusCode::OK, SSE_CONTENT_TYPE, body)
    } else {
        // Without `alt=sse` Google streams one JSON array of responses.
        respond(StatusCode::OK, JSON_CONTENT_TYPE, format!("[{}]", events.join(",\r\n")))
    }
}

/// The built-in checks of [`MockGemini`], in its documented order (after the key and model).
fn validate(request: &Map<String, Value>) -> Result<(), GeminiError> {
    let invalid = |message: String| Err(GeminiError::invalid_argument(&message));
    if let Some(unknown) = request.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return invalid(format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."));
    }
    if let Some(config) = request.get("generationConfig").and_then(Value::as_object)
        && let Some(unknown) = config.keys().find(|k| !GENERATION_FIELDS.contains(&k.as_str()))
    {
        return invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at 'generation_config': Cannot find field."
        ));
    }
    let contents = match request.get("contents") {
        Some(Value::Array(contents)) if !contents.is_empty() => contents,
        _ => return invalid("* GenerateContentRequest.contents: contents is not specified\n".into()),
    };
    let mut previous_calls: Vec<&str> = Vec::new();
    for (i, content) in contents.iter().enumerate() {
        let role = content.get("role").and_then(Value::as_str).unwrap_or("user");
        if !matches!(role, "user" | "model") {
            return invalid("Please use a valid role: user, model.".into());
        }
        let parts = match content.get("parts") {
            Some(Value::Array(parts)) if !parts.is_empty() => parts,
            _ => {
                return invalid(format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
                ));
            }
        };
        let mut calls = Vec::new();
        for part in parts {
            if let Some(name) = part.pointer("/functionCall/name").and_then(Value::as_str) {
                calls.push(name);
            }
            if let Some(name) = part.pointer("/functionResponse/name").and_then(Value::as_str)
                && !previous_calls.contains(&name)
            {
                return invalid("Please ensure that function response turn comes immediately after a function call turn. And the number of function response parts should be equal to number of function call parts of the function call turn.".into());
            }
        }
        previous_calls = calls;
    }
    Ok(())
}

/// The request as the DashScope mock's formulas see it: `systemInstruction` as a first message,
/// then every turn's text parts (a `model` turn as `assistant`).
fn as_chat(model: &str, request: &Map<String, Value>) -> Value {
    let text = |content: &Value| -> Value {
        let texts: Vec<&str> = content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        Value::String(texts.join(" "))
    };
    let mut messages = Vec::new();
    if let Some(system) = request.get("systemInstruction") {
        messages.push(json!({"role": "system", "content": text(system)}));
    }
    for content in request.get("contents").and_then(Value::as_array).into_iter().flatten() {
        let role = match content.get("role").and_then(Value::as_str) {
            Some("model") => "assistant",
            _ => "user",
        };
        messages.push(json!({"role": role, "content": text(content)}));
    }
    json!({"model": model, "messages": messages})
}

fn tool_name(request: &Map<String, Value>) -> String {
    request
        .get("tools")
        .and_then(|t| t.pointer("/0/functionDeclarations/0/name"))
        .and_then(Value::as_str)
        .unwrap_or(answer::DEFAULT_TOOL_NAME)
        .to_owned()
}

/// What one answer holds.
#[derive(Clone, Debug)]
struct Answer {
    text: Option<String>,
    thought: Option<String>,
    /// The function called (args [`answer::TOOL_ARGUMENTS`]).
    call: Option<String>,
    /// `finishReason`; empty for a blocked prompt (no candidate at all).
    finish: &'static str,
}

fn text_answer(chat: &Value, request: &Map<String, Value>) -> Answer {
    let mut text = answer::content(chat);
    let mut finish = "STOP";
    let max = request
        .get("generationConfig")
        .and_then(|c| c.get("maxOutputTokens"))
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let pieces = answer::pieces(&text);
    if pieces.len() > max {
        text = pieces[..max].concat();
        finish = "MAX_TOKENS";
    }
    Answer { text: Some(text), thought: None, call: None, finish }
}

struct Reply {
    model: String,
    response_id: String,
    prompt: u64,
    answer: Answer,
}

impl Reply {
    fn candidates_tokens(&self) -> u64 {
        let args = self.answer.call.as_ref().map(|_| answer::TOOL_ARGUMENTS);
        let generated: Vec<&str> = self.answer.text.as_deref().into_iter().chain(args).collect();
        answer::completion_tokens(&generated)
    }

    fn thoughts_tokens(&self) -> Option<u64> {
        self.answer.thought.as_deref().map(answer::words)
    }

    /// `usageMetadata`; `done` adds the candidates' count (stream events before the last have
    /// only the prompt's, as Google sends them).
    fn usage(&self, done: bool) -> String {
        let candidates = if done { self.candidates_tokens() } else { 0 };
        let thoughts = self.thoughts_tokens().filter(|_| done);
        let total = self.prompt + candidates + thoughts.unwrap_or(0);
        let mut fields = vec![("promptTokenCount", self.prompt.to_string())];
        if done && self.answer.finish.is_empty() {
            // A blocked prompt: nothing generated.
        } else if done {
            fields.push(("candidatesTokenCount", candidates.to_string()));
        }
        fields.push(("totalTokenCount", total.to_string()));
        fields.push(("promptTokensDetails", json!([{"modality": "TEXT", "tokenCount": self.prompt}]).to_string()));
        if let Some(thoughts) = thoughts {
            fields.push(("thoughtsTokenCount", thoughts.to_string()));
        }
        obj(&fields)
    }

    /// One `GenerateContentResponse` with these parts and, when set, the finish reason.
    fn response(&self, parts: Vec<Value>, finish: Option<&str>, done: bool) -> String {
        let mut fields = Vec::new();
        if self.answer.finish.is_empty() {
            fields.push((
                "promptFeedback",
                json!({"blockReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]})
                .to_string(),
            ));
        } else {
            let mut candidate = vec![("content", json!({"parts": parts, "role": "model"}).to_string())];
            if let Some(finish) = finish {
                candidate.push(("finishReason", js(finish)));
            }
            candidate.push(("index", "0".to_owned()));
            fields.push(("candidates", format!("[{}]", obj(&candidate))));
        }
        fields.push(("usageMetadata", self.usage(done)));
        fields.push(("modelVersion", js(&self.model)));
        fields.push(("responseId", js(&self.response_id)));
        obj(&fields)
    }

    fn call_part(&self) -> Option<Value> {
        let args: Value = serde_json::from_str(answer::TOOL_ARGUMENTS).unwrap_or(Value::Null);
        self.answer.call.as_ref().map(|name| json!({"functionCall": {"name": name, "args": args}}))
    }

    fn whole(&self) -> String {
        let mut parts = Vec::new();
        if let Some(thought) = &self.answer.thought {
            parts.push(json!({"text": thought, "thought": true}));
        }
        if let Some(text) = &self.answer.text {
            parts.push(json!({"text": text}));
        }
        parts.extend(self.call_part());
        self.response(parts, Some(self.answer.finish), true)
    }

    /// The stream's events (JSON texts): the thought, one event per word of the text, the call;
    /// the last one finishes.
    fn events(&self) -> Vec<String> {
        let mut parts: Vec<Value> = Vec::new();
        if let Some(thought) = &self.answer.thought {
            parts.push(json!({"text": thought, "thought": true}));
        }
        if let Some(text) = &self.answer.text {
            parts.extend(answer::pieces(text).into_iter().map(|piece| json!({"text": piece})));
        }
        parts.extend(self.call_part());
        if parts.is_empty() {
            return vec![self.response(Vec::new(), None, true)];
        }
        let last = parts.len() - 1;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let done = i == last;
                self.response(vec![part], done.then_some(self.answer.finish), done)
            })
            .collect()
    }
}

fn error_response(e: &GeminiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, JSON_CONTENT_TYPE, e.body.to_string())
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}
