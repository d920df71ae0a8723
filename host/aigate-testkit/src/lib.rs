//! Dev-only test kit for AIGate's integration tests and benchmarks.
//!
//! [`MockDashScope`] is a per-test fake of the DashScope (Alibaba Cloud Model Studio, Qwen)
//! OpenAI-compatible endpoint. It speaks the provider's wire format as
//! `/work/shared/reference/wire-formats.md` section 1 records it, quirks included (key order,
//! `system_fingerprint: null`, a separate `finish_reason` chunk, the usage chunk with
//! `choices: []`, SSE-framed 4xx bodies, errors inside a 200 stream), so tests drive the real
//! provider plugin with real-looking traffic. It is a fake *upstream*, never a fake of one of
//! our own components.
//!
//! ```no_run
//! # async fn demo() {
//! use aigate_testkit::{errors, MockDashScope, Scenario};
//!
//! let upstream = MockDashScope::start().await;
//! // point the gateway's DashScope credential at upstream.base_url() with MockDashScope::API_KEY
//! upstream.enqueue(errors::rate_limited()); // the next chat call gets a 429...
//! upstream.enqueue(Scenario::Normal); // ...and the one after it a normal answer
//! # }
//! ```
//!
//! Everything is deterministic: ids come from a seeded counter, `created` is fixed, and the
//! answer and token usage are pure functions of the request (see [`answer`]), so tests can
//! assert exact numbers.
//!
//! [`MockAnthropic`] does the same for Anthropic's Messages API (section 5), with the same
//! answer and token formulas, so tests can compare the two providers through the gateway.
//!
//! [`MockGemini`] does the same for Google's Gemini API (`generateContent`,
//! `streamGenerateContent?alt=sse`), from the `google-genai` SDK's types.
//!
//! [`sse`] parses SSE bodies: the mock's, and the gateway's own output.

mod scenario;
mod server;
mod wire;

pub mod answer;
pub mod anthropic;
pub mod embeddings;
pub mod errors;
pub mod gemini;
pub mod sse;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

pub use anthropic::{AnthropicError, AnthropicScenario, MockAnthropic};
pub use errors::DashScopeError;
pub use gemini::{GeminiError, GeminiScenario, MockGemini};
pub use scenario::{ModelsBehaviour, Scenario};

use server::Shared;

/// Path prefix of DashScope's OpenAI-compatible mode (reference 1.1).
pub const COMPATIBLE_MODE_PREFIX: &str = "/compatible-mode/v1";

/// A mock DashScope upstream listening on `127.0.0.1:<random port>`.
///
/// One per test: it runs on the current tokio runtime and stops when dropped, closing every
/// open connection (a [`Scenario::Hang`] request included).
///
/// Built-in behaviour, whatever is scripted, checked in this order on
/// `POST /compatible-mode/v1/chat/completions` (reference 1.4 and 1.7):
///
/// 1. `Authorization` is not `Bearer <api key>`: 401 `invalid_api_key`.
/// 2. The body is not a JSON object: 400 `Required body invalid, please check the request body format.`
/// 3. `model` absent or null: 400 `you must provide a model parameter.`; `model` empty or not a
///    known model (anything starting with `qwen`, plus [`MockOptions::extra_models`]):
///    404 `model_not_found`.
/// 4. `messages` missing or not an array: 400; an empty array: 400 `[] is too short - 'messages'`.
/// 5. `temperature` outside `[0, 2)`: 400 `Temperature should be in [0.0, 2.0)`.
///
/// When the request has `"stream": true` these error bodies are SSE-framed
/// (`data: {json}\n\n`, `text/event-stream`) with the 4xx status, as DashScope does (1.7).
/// Only a request that passes these checks takes the next scripted [`Scenario`].
#[derive(Debug)]
pub struct MockDashScope {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Knobs of a [`MockDashScope`]; `MockOptions::default()` is what [`MockDashScope::start`] uses.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// The only API key accepted; default [`MockDashScope::API_KEY`].
    pub api_key: String,
    /// The `created` timestamp of every response (fixed for determinism); default 1726132850,
    /// the value in the reference's streaming capture (1.6).
    pub created: u64,
    /// Models accepted besides `qwen*`, also listed by `GET /models`.
    pub extra_models: Vec<String>,
    /// Pause before each SSE event after the first one in successful streams. Zero (the
    /// default) lets hyper coalesce events into fewer writes; set it to make every event its
    /// own TCP segment.
    pub stream_event_interval: Duration,
    /// Seed of the id generator: same seed and same request order give the same ids.
    pub id_seed: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            api_key: MockDashScope::API_KEY.to_owned(),
            created: 1_726_132_850,
            extra_models: Vec::new(),
            stream_event_interval: Duration::ZERO,
            id_seed: 0,
        }
    }
}

impl MockDashScope {
    /// The API key [`MockDashScope::start`] accepts.
    pub const API_KEY: &str = "sk-mock-upstream-key";

    /// Starts a mock with the default [`MockOptions`].
    pub async fn start() -> MockDashScope {
        Self::start_with(MockOptions::default()).await
    }

    /// Starts a mock on `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// If the loopback listener cannot be bound: a test cannot run without it.
    #[expect(clippy::expect_used, reason = "test infrastructure: no listener, no test")]
    pub async fn start_with(options: MockOptions) -> MockDashScope {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the mock DashScope listener on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address of the mock DashScope listener");
        let shared = Arc::new(Shared::new(options));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        MockDashScope { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT/compatible-mode/v1`: the value to configure as the provider's
    /// base URL (the plugin appends `/chat/completions` and `/models`).
    pub fn base_url(&self) -> String {
        format!("{}{COMPATIBLE_MODE_PREFIX}", self.root_url())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order, whatever its path or outcome.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// The number of `POST .../chat/completions` requests received (valid or not).
    pub fn chat_requests(&self) -> usize {
        self.shared.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/chat/completions")).count()
    }

    /// Scripts the next chat/completions responses, first in first out. When the queue is
    /// empty a request gets [`Scenario::Normal`]. Accepts a [`DashScopeError`] from [`errors`].
    pub fn enqueue(&self, scenario: impl Into<Scenario>) {
        self.shared.enqueue(scenario.into());
    }

    /// How `GET .../models` answers from now on.
    pub fn set_models_behaviour(&self, behaviour: ModelsBehaviour) {
        self.shared.set_models_behaviour(behaviour);
    }

    /// Successful SSE responses whose body was dropped before its end, i.e. the client (the
    /// gateway) went away mid-stream. Counts every streaming scenario, [`Scenario::SlowStream`]
    /// being the one made for it.
    pub fn streams_cancelled(&self) -> usize {
        *self.shared.cancelled.borrow()
    }

    /// Successful SSE responses sent to their end.
    pub fn streams_completed(&self) -> usize {
        *self.shared.completed.borrow()
    }

    /// Waits until [`streams_cancelled`](Self::streams_cancelled) reaches `count`; `false` on
    /// timeout. The mock notices a gone client only when a write fails, so allow at least two
    /// chunk intervals.
    pub async fn wait_streams_cancelled(&self, count: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.cancelled.subscribe();
        matches!(tokio::time::timeout(timeout, rx.wait_for(|n| *n >= count)).await, Ok(Ok(_)))
    }
}

impl Drop for MockDashScope {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it closes them all.
        self.task.abort();
    }
}

/// Serves a lean mock DashScope on `listener` until the future is dropped, for load tests
/// (`cargo xtask loadtest`), where the upstream must cost far less than the gateway it is
/// compared with: the same wire format and built-in checks as [`MockDashScope`] (auth, body,
/// model, messages) and [`Scenario::Normal`] answers, JSON or SSE with usage, but nothing is
/// recorded (a load test sends millions of requests), nothing is scripted, and a stream's
/// events leave in one body.
pub async fn serve_lean(listener: tokio::net::TcpListener, options: MockOptions) {
    server::serve_lean(listener, Arc::new(Shared::new(options))).await;
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query, e.g. `/compatible-mode/v1/chat/completions`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    /// Reads an incoming request (its body up to `max_body` bytes) and records it as received.
    pub(crate) async fn read(
        request: axum::extract::Request,
        max_body: usize,
    ) -> (http::request::Parts, Bytes, RecordedRequest) {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, max_body).await.unwrap_or_default();
        let recorded = RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        (parts, body, recorded)
    }

    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header value (name case-insensitive); `None` when absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
