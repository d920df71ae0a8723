//! The HTTP side: an accept loop owning every connection, and one handler that records each
//! request and then plays DashScope.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::answer;
use crate::errors::{self, DashScopeError};
use crate::wire::{self, Completion, Ctx, ToolCall, Usage, UsageDetails};
use crate::{COMPATIBLE_MODE_PREFIX, MockOptions, ModelsBehaviour, RecordedRequest, Scenario};

const MAX_BODY: usize = 64 * 1024 * 1024;
const SSE_CONTENT_TYPE: &str = "text/event-stream;charset=UTF-8";
const JSON_CONTENT_TYPE: &str = "application/json";
/// The captured moderation event, in its captured key order (1.7).
const MID_STREAM_ERROR: &str = r#"{"error":{"message":"Output data may contain inappropriate content.","type":"data_inspection_failed","param":null,"code":"data_inspection_failed"}}"#;
const BODY_INVALID: &str = "Required body invalid, please check the request body format.";

/// The non-chat models of the list, which the gateway should filter out (1.3).
const LISTED_MODELS: &[&str] = &[
    "qwen-turbo",
    "qwen-plus",
    "qwen-max",
    "qwen3-max",
    "qwen-flash",
    "text-embedding-v3",
    "gte-rerank",
    "wanx2.1-t2i-turbo",
];

/// State shared by the handle ([`crate::MockDashScope`]) and the server task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub options: MockOptions,
    script: Mutex<Script>,
    pub cancelled: watch::Sender<usize>,
    pub completed: watch::Sender<usize>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Script {
    requests: Vec<RecordedRequest>,
    queue: VecDeque<Scenario>,
    models: ModelsBehaviour,
}

impl Shared {
    pub fn new(options: MockOptions) -> Self {
        Self {
            options,
            script: Mutex::default(),
            cancelled: watch::Sender::new(0),
            completed: watch::Sender::new(0),
            next_id: AtomicU64::new(0),
        }
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock must not hide its own failure behind ours.
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.script().requests.clone()
    }

    pub fn enqueue(&self, scenario: Scenario) {
        self.script().queue.push_back(scenario);
    }

    pub fn set_models_behaviour(&self, behaviour: ModelsBehaviour) {
        self.script().models = behaviour;
    }

    /// 128 bits from a seeded counter (splitmix64), so ids look random yet repeat run to run.
    fn next_bits(&self) -> (u64, u64) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let base = self.options.id_seed.wrapping_add(n.wrapping_mul(2));
        (splitmix64(base), splitmix64(base.wrapping_add(1)))
    }

    /// A UUID-shaped id, as DashScope's `request_id` (the `chatcmpl-` id reuses it).
    fn next_uuid(&self) -> String {
        let (a, b) = self.next_bits();
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    fn next_call_id(&self) -> String {
        let (a, b) = self.next_bits();
        format!("call_{a:016x}{:08x}", b >> 32)
    }
}

/// `prefix` + 24 base-62 characters derived from `n`: random-looking ids that are the same for
/// the same counter value, run to run.
pub(crate) fn base62_id(prefix: &str, n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bits = (splitmix64(n.wrapping_mul(2)), splitmix64(n.wrapping_mul(2).wrapping_add(1)));
    let mut out = String::from(prefix);
    for i in 0..24 {
        let word = if i < 12 { &mut bits.0 } else { &mut bits.1 };
        out.push(char::from(ALPHABET[(*word % 62) as usize]));
        *word /= 62;
    }
    out
}

pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Accepts until aborted. Connections live in a `JoinSet` owned by this future, so aborting
/// it (dropping the mock) closes them all, hanging requests included.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_router(listener, Router::new().fallback(handle).with_state(shared)).await;
}

/// The accept loop of every mock: serves `router` until aborted.
pub(crate) async fn serve_router(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // Out of file descriptors under a benchmark, say: back off, don't spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // Each SSE event must leave as soon as it is written (tests check forwarding).
                tcp.set_nodelay(true).ok();
                let router = router.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| router.clone().oneshot(req));
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await
                        .ok();
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// The lean server of [`crate::serve_lean`]: nothing recorded, normal answers only, a stream's
/// events in one body.
pub(crate) async fn serve_lean(listener: TcpListener, shared: Arc<Shared>) {
    serve_router(listener, Router::new().fallback(lean).with_state(shared)).await;
}

async fn lean(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let request_id = shared.next_uuid();
    let chat_path =
        parts.uri.path().strip_prefix(COMPATIBLE_MODE_PREFIX).is_some_and(|route| route == "/chat/completions");
    if !chat_path || parts.method != Method::POST {
        return plain(StatusCode::NOT_FOUND, &request_id);
    }
    match check_chat(&shared, &parts.headers, &body, &request_id) {
        Err(response) => *response,
        Ok(c) => {
            let completion = plain_completion(&c.req, c.stream, false);
            if c.stream {
                let events = wire::stream_events(&c.ctx, &completion, c.include_usage);
                respond(StatusCode::OK, SSE_CONTENT_TYPE, events.concat(), &request_id)
            } else {
                let body = wire::completion_body(&c.ctx, &completion);
                respond(StatusCode::OK, JSON_CONTENT_TYPE, body, &request_id)
            }
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body, recorded) = RecordedRequest::read(request, MAX_BODY).await;
    shared.script().requests.push(recorded);
    let request_id = shared.next_uuid();
    let Some(route) = parts.uri.path().strip_prefix(COMPATIBLE_MODE_PREFIX) else {
        return plain(StatusCode::NOT_FOUND, &request_id);
    };
    match (route, &parts.method) {
        ("/chat/completions", &Method::POST) => chat(&shared, &parts.headers, &body, request_id).await,
        ("/models", &Method::GET) => models(&shared, &parts.headers, &request_id).await,
        ("/embeddings", &Method::POST) => embeddings(&shared, &parts.headers, &body, &request_id),
        ("/chat/completions" | "/models" | "/embeddings", _) => plain(StatusCode::METHOD_NOT_ALLOWED, &request_id),
        _ => plain(StatusCode::NOT_FOUND, &request_id),
    }
}

fn embeddings(shared: &Shared, headers: &HeaderMap, body: &Bytes, request_id: &str) -> Response {
    if !authorized(headers, &shared.options.api_key) {
        return error_response(false, &errors::invalid_api_key().with_request_id(request_id), request_id);
    }
    let scenario = shared.script().queue.pop_front().unwrap_or(Scenario::Normal);
    match crate::embeddings::answer(body, &shared.options, scenario) {
        Ok(answer) => respond(StatusCode::OK, JSON_CONTENT_TYPE, answer.to_string(), request_id),
        Err(e) => error_response(false, &e.with_request_id(request_id), request_id),
    }
}

fn authorized(headers: &HeaderMap, api_key: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer") && key == api_key)
}

/// The built-in request checks, in the order documented on [`crate::MockDashScope`].
fn validate(req: &Map<String, Value>, options: &MockOptions) -> Result<(), DashScopeError> {
    match req.get("model") {
        None | Some(Value::Null) => {
            return Err(DashScopeError {
                status: 400,
                body: serde_json::json!({"error": {
                    "message": "you must provide a model parameter.",
                    "type": "invalid_request_error",
                    "param": null,
                    "code": "invalid_request_error",
                }}),
            });
        }
        Some(Value::String(m)) if m.starts_with("qwen") || options.extra_models.contains(m) => {}
        Some(Value::String(m)) => return Err(errors::model_not_found(m)),
        Some(other) => return Err(errors::model_not_found(&other.to_string())),
    }
    match req.get("messages") {
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(errors::invalid_parameter("[] is too short - 'messages'"));
        }
        Some(Value::Array(_)) => {}
        None | Some(Value::Null) => {
            return Err(errors::invalid_parameter("'messages' is a required property"));
        }
        Some(other) => {
            return Err(errors::invalid_parameter(&format!("{other} is not of type 'array' - 'messages'")));
        }
    }
    if let Some(t) = req.get("temperature").and_then(Value::as_f64)
        && !(0.0..2.0).contains(&t)
    {
        return Err(errors::invalid_parameter("Temperature should be in [0.0, 2.0)"));
    }
    Ok(())
}

/// A chat request that passed the built-in checks.
struct Checked {
    req: Value,
    ctx: Ctx,
    stream: bool,
    include_usage: bool,
}

/// The built-in checks of a chat request (auth, body, [`validate`]); `Err` is DashScope's
/// error response.
fn check_chat(shared: &Shared, headers: &HeaderMap, body: &Bytes, request_id: &str) -> Result<Checked, Box<Response>> {
    let id = format!("chatcmpl-{request_id}");
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    let stream = parsed.as_ref().and_then(|m| m.get("stream")).and_then(Value::as_bool).unwrap_or(false);
    if !authorized(headers, &shared.options.api_key) {
        let e = errors::invalid_api_key().with_request_id(request_id);
        return Err(Box::new(error_response(stream, &e, request_id)));
    }
    let Some(req) = parsed else {
        let e = errors::invalid_parameter(BODY_INVALID).with_id(&id).with_request_id(request_id);
        return Err(Box::new(error_response(false, &e, request_id)));
    };
    if let Err(e) = validate(&req, &shared.options) {
        let e = e.with_id(&id).with_request_id(request_id);
        return Err(Box::new(error_response(stream, &e, request_id)));
    }
    let req = Value::Object(req);
    let include_usage = stream && req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
    let ctx = Ctx {
        id,
        model: req.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        created: shared.options.created,
    };
    Ok(Checked { req, ctx, stream, include_usage })
}

async fn chat(shared: &Arc<Shared>, headers: &HeaderMap, body: &Bytes, request_id: String) -> Response {
    let Checked { req, ctx, stream, include_usage } = match check_chat(shared, headers, body, &request_id) {
        Ok(checked) => checked,
        Err(response) => return *response,
    };
    let reply = Reply { shared, ctx: &ctx, request_id: &request_id, stream, include_usage };

    let mut scenario = shared.script().queue.pop_front().unwrap_or(Scenario::Normal);
    let mut extra_headers = Vec::new();
    loop {
        let mut response = match scenario {
            Scenario::WithHeaders { headers, then } => {
                extra_headers.extend(headers);
                scenario = *then;
                continue;
            }
            Scenario::Delay { before_headers, then } => {
                tokio::time::sleep(before_headers).await;
                scenario = *then;
                continue;
            }
            Scenario::Normal => reply.completion(&plain_completion(&req, stream, false)),
            Scenario::CachedUsage => reply.completion(&plain_completion(&req, stream, true)),
            Scenario::Reasoning => reply.completion(&reasoning_completion(&req)),
            Scenario::ToolCall => reply.completion(&tool_completion(&req, stream, shared.next_call_id())),
            Scenario::Error { status, body } => error_response(stream, &DashScopeError { status, body }, &request_id),
            Scenario::Raw { status, content_type, body } => {
                respond(status_code(status), &content_type, body, &request_id)
            }
            Scenario::MidStreamError => {
                if !stream {
                    let e = DashScopeError { status: 400, body: errors::output_inspection_failed_event() };
                    return error_response(false, &e.with_request_id(&request_id), &request_id);
                }
                let c = plain_completion(&req, true, false);
                let mut events: Vec<String> =
                    wire::stream_events(&ctx, &c, include_usage).into_iter().take(3).collect();
                events.push(wire::sse_data(MID_STREAM_ERROR));
                reply.sse(events, |_| shared.options.stream_event_interval)
            }
            Scenario::FlatErrorEvent => {
                let flat = wire::obj(&[
                    ("code", wire::js("invalid_model_error")),
                    ("message", wire::js("Unsupported model \"\"")),
                    ("request_id", wire::js(&request_id)),
                ]);
                if stream {
                    reply.sse(vec![format!("event: error\ndata: {flat}\n\n")], |_| Duration::ZERO)
                } else {
                    respond(StatusCode::BAD_REQUEST, JSON_CONTENT_TYPE, flat, &request_id)
                }
            }
            Scenario::SlowStream { chunk_interval, chunks } => {
                let c = slow_completion(&req, stream, chunks);
                if stream {
                    let events = wire::stream_events(&ctx, &c, include_usage);
                    reply.sse(events, |i| if (1..=chunks).contains(&i) { chunk_interval } else { Duration::ZERO })
                } else {
                    let total = chunk_interval.saturating_mul(u32::try_from(chunks).unwrap_or(u32::MAX));
                    tokio::time::sleep(total).await;
                    reply.completion(&c)
                }
            }
            Scenario::Hang => std::future::pending().await,
            Scenario::HugeLine { bytes } => {
                const FRAME: usize = 64 * 1024;
                let frame = Bytes::from(vec![b'x'; FRAME]);
                let frames = std::iter::once(Bytes::from_static(b"data: "))
                    .chain(std::iter::repeat_n(frame, bytes.div_ceil(FRAME)));
                reply.sse_frames(frames.map(|f| (Duration::ZERO, f)))
            }
            Scenario::Endless { chunk_bytes } => {
                let c = Completion {
                    reasoning: None,
                    content: "x".repeat(chunk_bytes.max(1)),
                    tool_call: None,
                    finish_reason: "stop",
                    usage: Usage { prompt: answer::prompt_tokens(&req), completion: 1, details: UsageDetails::None },
                };
                let mut events = wire::stream_events(&ctx, &c, false).into_iter().map(Bytes::from);
                let first = events.next().unwrap_or_default();
                let piece = events.next().unwrap_or_default();
                let frames = std::iter::once(first).chain(std::iter::repeat(piece));
                reply.sse_frames(frames.map(|f| (Duration::ZERO, f)))
            }
        };
        for (name, value) in extra_headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
            {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
}

/// Where a successful answer goes, and how.
struct Reply<'a> {
    shared: &'a Arc<Shared>,
    ctx: &'a Ctx,
    request_id: &'a str,
    stream: bool,
    include_usage: bool,
}

impl Reply<'_> {
    fn completion(&self, c: &Completion) -> Response {
        if self.stream {
            let events = wire::stream_events(self.ctx, c, self.include_usage);
            let interval = self.shared.options.stream_event_interval;
            self.sse(events, |_| interval)
        } else {
            respond(StatusCode::OK, JSON_CONTENT_TYPE, wire::completion_body(self.ctx, c), self.request_id)
        }
    }

    /// A 200 SSE body that sends `events[i]` after `delay(i)`, one body frame per event.
    fn sse(&self, events: Vec<String>, delay: impl Fn(usize) -> Duration) -> Response {
        let frames: Vec<(Duration, Bytes)> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (if i == 0 { Duration::ZERO } else { delay(i) }, Bytes::from(e)))
            .collect();
        self.sse_frames(frames.into_iter())
    }

    /// A 200 SSE body that sends each frame after its delay, as fast as the client reads.
    fn sse_frames(&self, frames: impl Iterator<Item = (Duration, Bytes)> + Send + 'static) -> Response {
        let guard = StreamGuard { shared: Arc::clone(self.shared), finished: false };
        let body = futures_util::stream::unfold((frames, guard), |(mut frames, mut guard)| async move {
            match frames.next() {
                Some((delay, bytes)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<_, Infallible>(bytes), (frames, guard)))
                }
                None => {
                    guard.finish();
                    None
                }
            }
        });
        let mut resp = Response::new(Body::from_stream(body));
        set_headers(&mut resp, SSE_CONTENT_TYPE, self.request_id);
        resp
    }
}

/// Counts how a streamed body ended: dropped before its last frame means the client left.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl StreamGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished { &self.shared.completed } else { &self.shared.cancelled };
        counter.send_modify(|n| *n += 1);
    }
}

fn max_tokens(req: &Value) -> Option<usize> {
    req.get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX).max(1))
}

/// Non-stream usage carries `cached_tokens: 0` (1.5 capture); the stream's has just the three
/// counts (1.6 capture).
fn plain_details(stream: bool) -> UsageDetails {
    if stream { UsageDetails::None } else { UsageDetails::Cached(0) }
}

fn plain_completion(req: &Value, stream: bool, cached: bool) -> Completion {
    let prompt = answer::prompt_tokens(req);
    let mut content = answer::content(req);
    let mut finish_reason = "stop";
    if let Some(max) = max_tokens(req) {
        let pieces = answer::pieces(&content);
        if pieces.len() > max {
            content = pieces[..max].concat();
            finish_reason = "length";
        }
    }
    let details = if cached { UsageDetails::Cached(answer::cached_tokens(prompt)) } else { plain_details(stream) };
    Completion {
        reasoning: None,
        usage: Usage { prompt, completion: answer::completion_tokens(&[&content]), details },
        content,
        tool_call: None,
        finish_reason,
    }
}

fn reasoning_completion(req: &Value) -> Completion {
    let content = answer::content(req);
    let reasoning = answer::words(answer::REASONING);
    let text = answer::words(&content);
    Completion {
        reasoning: Some(answer::REASONING.to_owned()),
        content,
        tool_call: None,
        finish_reason: "stop",
        usage: Usage {
            prompt: answer::prompt_tokens(req),
            completion: reasoning + text,
            details: UsageDetails::Reasoning { reasoning, text },
        },
    }
}

fn tool_completion(req: &Value, stream: bool, call_id: String) -> Completion {
    Completion {
        reasoning: None,
        content: String::new(),
        tool_call: Some(ToolCall {
            id: call_id,
            name: answer::tool_name(req),
            arguments: answer::TOOL_ARGUMENTS.to_owned(),
        }),
        finish_reason: "tool_calls",
        usage: Usage {
            prompt: answer::prompt_tokens(req),
            completion: answer::completion_tokens(&[answer::TOOL_ARGUMENTS]),
            details: plain_details(stream),
        },
    }
}

fn slow_completion(req: &Value, stream: bool, chunks: usize) -> Completion {
    let content = answer::slow_content(chunks);
    Completion {
        reasoning: None,
        usage: Usage {
            prompt: answer::prompt_tokens(req),
            completion: answer::completion_tokens(&[&content]),
            details: plain_details(stream),
        },
        content,
        tool_call: None,
        finish_reason: "stop",
    }
}

async fn models(shared: &Shared, headers: &HeaderMap, request_id: &str) -> Response {
    let behaviour = shared.script().models.clone();
    match behaviour {
        ModelsBehaviour::Hang => std::future::pending().await,
        ModelsBehaviour::Status(status) => plain(status_code(status), request_id),
        ModelsBehaviour::Error { status, body } => {
            respond(status_code(status), JSON_CONTENT_TYPE, body.to_string(), request_id)
        }
        ModelsBehaviour::Normal => {
            if !authorized(headers, &shared.options.api_key) {
                let e = errors::invalid_api_key().with_request_id(request_id);
                return error_response(false, &e, request_id);
            }
            let created = shared.options.created.to_string();
            let data: Vec<String> = LISTED_MODELS
                .iter()
                .copied()
                .chain(shared.options.extra_models.iter().map(String::as_str))
                .map(|id| {
                    wire::obj(&[
                        ("id", wire::js(id)),
                        ("object", wire::js("model")),
                        ("created", created.clone()),
                        ("owned_by", wire::js("system")),
                    ])
                })
                .collect();
            let body = wire::obj(&[("object", wire::js("list")), ("data", format!("[{}]", data.join(",")))]);
            respond(StatusCode::OK, JSON_CONTENT_TYPE, body, request_id)
        }
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// DashScope's own errors: SSE-framed with the error status when the request streams (1.7).
fn error_response(stream: bool, e: &DashScopeError, request_id: &str) -> Response {
    let body = e.body.to_string();
    if stream {
        respond(status_code(e.status), SSE_CONTENT_TYPE, wire::sse_data(&body), request_id)
    } else {
        respond(status_code(e.status), JSON_CONTENT_TYPE, body, request_id)
    }
}

/// `502 Bad Gateway` as text, the way a proxy in front of the service answers.
fn plain(status: StatusCode, request_id: &str) -> Response {
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    respond(status, "text/plain; charset=utf-8", text.trim_end().to_owned(), request_id)
}

fn respond(status: StatusCode, content_type: &str, body: String, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    set_headers(&mut resp, content_type, request_id);
    resp
}

fn set_headers(resp: &mut Response, content_type: &str, request_id: &str) {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_stream_error_text_is_the_public_event() {
        let parsed: Value = serde_json::from_str(MID_STREAM_ERROR).unwrap();
        assert_eq!(parsed, errors::output_inspection_failed_event());
    }

    #[test]
    fn authorization_needs_the_exact_key() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(authorized(&h, "k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer k"));
        assert!(authorized(&h, "k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k2"));
        assert!(!authorized(&h, "k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k"));
        assert!(!authorized(&h, "k"));
    }
}
