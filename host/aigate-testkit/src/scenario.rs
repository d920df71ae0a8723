//! The scripted answers of [`crate::MockDashScope`]: what the next chat request gets.

use std::time::Duration;

use serde_json::Value;

/// How the mock answers one `POST .../chat/completions` that passed the built-in checks.
///
/// Section numbers refer to `/work/shared/reference/wire-formats.md`. Answers, token counts
/// and ids are deterministic: [`crate::answer`] gives the formulas.
#[derive(Clone, Debug, PartialEq)]
pub enum Scenario {
    /// A plain qwen answer (1.5, 1.6). Content is [`crate::answer::content`]: `Hello from
    /// {model}!`, followed by ` You said: {last user text}` when there is one.
    ///
    /// Non-stream: `chat.completion` in DashScope's key order, `system_fingerprint: null`,
    /// `usage.prompt_tokens_details.cached_tokens: 0`.
    ///
    /// Stream (1.6): a first chunk with `{"content":"","role":"assistant"}`, then one chunk per
    /// word (see [`crate::answer::pieces`]), then a separate chunk with empty content and the
    /// `finish_reason`, then, only when `stream_options.include_usage` is true, a chunk with
    /// `choices: []` and the usage; then `data: [DONE]`. Every other chunk has `"usage": null`.
    ///
    /// `max_tokens` (or `max_completion_tokens`) smaller than the word count truncates the
    /// answer to that many words with `finish_reason: "length"`.
    Normal,
    /// A thinking model (1.5, 1.6): `reasoning_content` ([`crate::answer::REASONING`]) before
    /// the content. Stream: first delta `{"content":null,"role":"assistant","reasoning_content":""}`,
    /// reasoning deltas with `content: null`, then content deltas with `reasoning_content: null`.
    /// Non-stream: `message.reasoning_content`. Usage carries
    /// `completion_tokens_details: {reasoning_tokens, text_tokens}` and
    /// `prompt_tokens_details: {text_tokens}` as in the 2026 captures.
    Reasoning,
    /// A function call (1.5, 1.6) to the request's first tool (default
    /// `get_current_weather`) with arguments [`crate::answer::TOOL_ARGUMENTS`] and
    /// `finish_reason: "tool_calls"`. Non-stream: `content: ""` and `tool_calls` with an `index`
    /// inside (a DashScope quirk). Stream: a delta with `index`, `id`, `type` and the name
    /// (arguments `""`), then the arguments in pieces under the same `index`.
    ToolCall,
    /// Like [`Scenario::Normal`] with context caching applied (1.5):
    /// `prompt_tokens_details.cached_tokens` = [`crate::answer::cached_tokens`] (> 0), in the
    /// stream's usage chunk too.
    CachedUsage,
    /// A DashScope error. For a stream request the body is SSE-framed, `data: {json}\n\n`
    /// with `content-type: text/event-stream` and the given status, exactly as DashScope frames
    /// its 4xx on streams (1.7); otherwise it is `application/json`. [`crate::errors`] has the
    /// standard bodies.
    Error { status: u16, body: Value },
    /// A response that is not DashScope's own, e.g. a load balancer's HTML 502: sent as is,
    /// stream or not.
    Raw { status: u16, content_type: String, body: String },
    /// Output moderation tripping mid-stream (1.7): HTTP 200, the first chunk and two content
    /// chunks, then
    /// `data: {"error":{"message":"Output data may contain inappropriate content.","type":"data_inspection_failed","param":null,"code":"data_inspection_failed"}}`
    /// and the end of the body (no `[DONE]`). A non-stream request gets the 400
    /// `data_inspection_failed` JSON instead.
    MidStreamError,
    /// The flat error event seen on a stream with a missing model (1.7): HTTP 200,
    /// `event: error` + `data: {"code":"invalid_model_error","message":"Unsupported model \"\"","request_id":"…"}`,
    /// then the end of the body. The status of the real capture is unknown; 200 is the harder
    /// case for a gateway. A non-stream request gets the same flat JSON with status 400.
    FlatErrorEvent,
    /// Answers as `then` with these headers added (e.g. `Retry-After` on a 429, which
    /// DashScope does not document but a proxy or another provider may send).
    WithHeaders { headers: Vec<(String, String)>, then: Box<Scenario> },
    /// Waits before sending the status line and headers, then answers as `then`.
    Delay { before_headers: Duration, then: Box<Scenario> },
    /// A long answer for client-disconnect tests: headers and the first chunk at once, then
    /// `chunks` content chunks (`chunk-1`, ` chunk-2`, ...) each `chunk_interval` apart, then
    /// the usual ending. See [`crate::MockDashScope::streams_cancelled`]. A non-stream request
    /// waits `chunks * chunk_interval` and returns the same content as JSON.
    SlowStream { chunk_interval: Duration, chunks: usize },
    /// Never answers (not even headers): timeout tests.
    Hang,
    /// A stream whose first line never ends: HTTP 200, `data: ` and then `bytes` bytes of `x`
    /// without a newline, in 64 KiB frames, then the end of the body. For the gateway's SSE
    /// line bound. A non-stream request gets the same body.
    HugeLine { bytes: usize },
    /// A stream that never ends: HTTP 200, the first chunk, then the same content chunk (about
    /// `chunk_bytes` of content) over and over, as fast as the client reads. For the gateway's
    /// stream-size bound and for clients that stop reading. A non-stream request gets the
    /// same never-ending body.
    Endless { chunk_bytes: usize },
}

/// How `GET .../models` answers (1.3).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ModelsBehaviour {
    /// 200 with the OpenAI list shape. Like the real list it mixes chat models (`qwen-turbo`,
    /// `qwen-plus`, `qwen-max`, `qwen3-max`, `qwen-flash`) with models the gateway should filter
    /// out (`text-embedding-v3`, `gte-rerank`, `wanx2.1-t2i-turbo`), then
    /// [`crate::MockOptions::extra_models`]. A wrong key gets the 401 `invalid_api_key`.
    #[default]
    Normal,
    /// This status with a plain-text body (`502 Bad Gateway`), as a proxy in front would send,
    /// whatever the key.
    Status(u16),
    /// This status with a JSON body, e.g. from [`crate::errors`], whatever the key.
    Error { status: u16, body: Value },
    /// Never answers.
    Hang,
}
