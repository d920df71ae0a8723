//! `POST /v1/chat/completions`, JSON and SSE.
//!
//! The path of one call: read the bounded body → parse and validate → route
//! (provider, plugin version, credential) → fresh plugin instance →
//! build-request → upstream → parse-response or the stream decoder →
//! OpenAI-shaped answer → one usage record. The seams for auth, idempotency
//! and limits sit between validation and routing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aigate_plugins::canonical::{SseEvent, StreamChunk, Usage};
use aigate_plugins::{PluginFault, StreamDecoder};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::auth::Tenant;
use crate::billing::Charge;
use crate::error::ApiError;
use crate::metering::{Outcome, UsageRecord};
use crate::openai;
use crate::routing::Route;
use crate::server::AppState;

/// Maps a plugin fault to the client's error: 503 when out of instance
/// slots (retry), 502 `plugin_error` otherwise.
pub fn fault_error(fault: &PluginFault) -> ApiError {
    match fault {
        PluginFault::Busy { .. } => ApiError::plugin_busy(fault.to_string()),
        _ => ApiError::plugin_fault(fault.to_string()),
    }
}

/// Reads the body up to `limit` bytes: 413 past it, 400 on a broken body.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64 {
            return Err(ApiError::payload_too_large(limit));
        }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::payload_too_large(limit)),
        Err(_) => Err(ApiError::invalid_request("The request body could not be read.")),
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("<not text>")).unwrap_or("<none>");
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(ct))
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn provider_headers(response: &mut Response, route: &Route) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&route.provider) {
        h.insert("x-aigate-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}@{}", route.plugin.name(), route.plugin.version())) {
        h.insert("x-aigate-plugin", v);
    }
}

pub async fn chat_completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    match handle(state, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: Arc<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let started = Instant::now();
    let tenant = state.auth.authenticate(&headers).await?;
    require_json(&headers)?;
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::invalid_json(format!("The request body is not valid UTF-8 (at byte {}). Send UTF-8 JSON.", e.valid_up_to()))
    })?;
    let request = openai::parse_request(text)?;

    // Seams for the next layers: idempotency and limits go here.

    let plugins = state.registry.plugins();
    let route = state.providers.resolve(&plugins, &request.model)?;
    let (canonical, options) = openai::to_canonical(&request, &route.upstream_model)?;
    let deadline = started + state.upstream.config.total_timeout;

    let mut instance = route.plugin.instantiate().await.map_err(|f| fault_error(&f))?;
    let http_request = match instance.build_request(route.base_url.as_str(), &canonical).await {
        Ok(Ok(r)) => r,
        Ok(Err(provider_error)) => {
            return Err(ApiError::from_provider(&route.provider, &route.settings.api_key_env, &provider_error));
        }
        Err(fault) => return Err(fault_error(&fault)),
    };
    let upstream_request = state.upstream.prepare(&route.target(), route.plugin.name(), http_request)?;

    let mut meter = Meter {
        state: state.clone(),
        tenant: tenant.clone(),
        record: Some(UsageRecord {
            request_id: request_id(&headers),
            provider: route.provider.to_string(),
            model: route.upstream_model.clone(),
            stream: options.stream,
            outcome: Outcome::Failed,
            status: 502,
            usage: None,
            raw_cost: None,
            latency: Duration::ZERO,
            time_to_first_token: None,
            org_id: tenant.org_id,
            key_id: tenant.key_id,
            idempotency_key: None,
            billed_cost: aigate_core::Money::ZERO,
            currency: String::new(),
            created_at: time::OffsetDateTime::now_utc(),
        }),
        started,
    };

    let upstream_response = state.upstream.send(&route.provider, upstream_request, deadline).await?;
    let status = upstream_response.status();

    if !options.stream || !status.is_success() {
        let http_response = state.upstream.read(&route.provider, upstream_response, deadline).await?;
        let parsed = instance.parse_response(&http_response).await.map_err(|f| fault_error(&f))?;
        return match parsed {
            Ok(chat) if status.is_success() && !options.stream => {
                let model = route.public_model(&chat.model_or(&route.upstream_model));
                let charge = meter.finish(Outcome::Completed, 200, chat.usage, chat.raw_cost.clone());
                let mut response = (StatusCode::OK, openai::response_json(&chat, &model)).into_response();
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                if let Some(charge) = charge {
                    if let Ok(v) = HeaderValue::from_str(&format!("{} {}", charge.billed, charge.currency)) {
                        response.headers_mut().insert("x-aigate-cost", v);
                    }
                }
                provider_headers(&mut response, &route);
                Ok(response)
            }
            Ok(_) => Err(ApiError::plugin_fault(format!(
                "Plugin `{}` turned a failed provider response (HTTP {status}) into a success.",
                route.plugin.name()
            ))),
            Err(provider_error) => {
                let err = ApiError::from_provider(&route.provider, &route.settings.api_key_env, &provider_error);
                meter.finish(Outcome::ProviderError, err.status.as_u16(), None, None);
                Err(err)
            }
        };
    }

    let decoder = instance.stream_decoder(&route.upstream_model).await.map_err(|f| fault_error(&f))?;
    let events: EventStream = Box::pin(upstream_response.bytes_stream().eventsource());
    let mut relay = Relay {
        events,
        decoder,
        queue: VecDeque::with_capacity(4),
        finished: false,
        model: route.public_model(&route.upstream_model),
        include_usage: options.include_usage,
        deadline,
        route: route.clone(),
        meter,
        usage: None,
        first_token: None,
        error: None,
        emitted: false,
        prompt_estimate: estimate_prompt_tokens(&canonical),
        produced: 0,
    };
    // Decode until the first client-visible bytes before answering: an error
    // that comes before any content (an error event, a plugin fault) then gets
    // its real HTTP status instead of a 200 with an error event.
    relay.fill().await;
    if !relay.emitted
        && let Some(err) = relay.error.take() {
            return Err(err);
        }
    let body = Body::from_stream(futures_util::stream::unfold(relay, Relay::next));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    provider_headers(&mut response, &route);
    Ok(response)
}

/// ~4 characters a token over the messages' text: only used when a stream
/// ends before the provider reported its own count.
fn estimate_prompt_tokens(request: &aigate_plugins::canonical::ChatRequest) -> u32 {
    use aigate_plugins::canonical::{ContentPart, MessageContent};
    let chars: usize = request
        .messages
        .iter()
        .map(|m| match &m.content {
            Some(MessageContent::Text(t)) => t.len(),
            Some(MessageContent::Parts(parts)) => parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => t.len(),
                    ContentPart::Image(_) => 0,
                })
                .sum(),
            None => 0,
        })
        .sum();
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

trait ModelOr {
    fn model_or(&self, fallback: &str) -> String;
}

impl ModelOr for aigate_plugins::canonical::ChatResponse {
    fn model_or(&self, fallback: &str) -> String {
        if self.model.is_empty() { fallback.to_owned() } else { self.model.clone() }
    }
}

/// Writes the usage record exactly once: when the call finishes, or when it
/// is dropped (a client that disconnects mid-stream).
struct Meter {
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    record: Option<UsageRecord>,
    started: Instant,
}

impl Meter {
    /// Prices and records the call; returns the charge the first time only.
    fn finish(
        &mut self,
        outcome: Outcome,
        status: u16,
        usage: Option<Usage>,
        raw_cost: Option<aigate_plugins::canonical::RawCost>,
    ) -> Option<Charge> {
        let mut r = self.record.take()?;
        r.outcome = outcome;
        r.status = status;
        r.usage = usage.or(r.usage);
        r.raw_cost = raw_cost.or(r.raw_cost);
        r.latency = self.started.elapsed();
        let charge = self.state.billing.charge(&self.tenant, &r.provider, &r.model, r.usage.as_ref(), r.raw_cost.as_ref());
        r.billed_cost = charge.billed;
        r.currency = charge.currency.clone();
        self.state.usage.record(r);
        Some(charge)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(r) = &self.record {
            let outcome = if r.stream && r.status == 200 { Outcome::Cancelled } else { r.outcome };
            let status = r.status;
            self.finish(outcome, status, None, None);
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Relays one provider stream to the client, chunk by chunk, as the client
/// pulls: nothing is buffered whole, and dropping it (client gone) drops the
/// upstream connection.
struct Relay {
    events: EventStream,
    decoder: StreamDecoder,
    queue: VecDeque<Bytes>,
    finished: bool,
    model: String,
    include_usage: bool,
    deadline: Instant,
    route: Route,
    meter: Meter,
    usage: Option<Usage>,
    first_token: Option<Duration>,
    /// The error that ended the stream, if one did.
    error: Option<ApiError>,
    /// Whether any chunk was queued for the client.
    emitted: bool,
    /// Until the provider reports usage (at the end), a client that leaves is
    /// metered with these estimates: the prompt at ~4 characters a token, and
    /// one token per content chunk relayed (providers stream about one token
    /// per chunk).
    prompt_estimate: u32,
    produced: u32,
}

impl Relay {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Relay)> {
        if let Some(r) = self.meter.record.as_mut() {
            r.status = 200;
        }
        self.fill().await;
        let bytes = self.queue.pop_front()?;
        Some((Ok(bytes), self))
    }

    /// Pulls upstream events until something is queued for the client or the stream ended.
    async fn fill(&mut self) {
        loop {
            if !self.queue.is_empty() || self.finished {
                return;
            }
            let event = match tokio::time::timeout_at(self.deadline, self.events.next()).await {
                Err(_) => {
                    let err = ApiError::upstream_timeout(&self.route.provider, "finish the stream", self.meter.state.upstream.config.total_timeout);
                    self.fail(Outcome::Failed, &err);
                    continue;
                }
                Ok(None) => {
                    match self.decoder.finish().await {
                        Ok(Ok(chunks)) => self.emit(chunks),
                        Ok(Err(pe)) => {
                            let err = ApiError::from_provider(&self.route.provider, &self.route.settings.api_key_env, &pe);
                            self.fail(Outcome::ProviderError, &err);
                            continue;
                        }
                        Err(fault) => {
                            self.fail(Outcome::Failed, &fault_error(&fault));
                            continue;
                        }
                    }
                    self.queue.push_back(Bytes::from_static(openai::DONE_EVENT));
                    self.finished = true;
                    let usage = self.usage;
                    self.meter.time_to_first_token(self.first_token);
                    self.meter.finish(Outcome::Completed, 200, usage, None);
                    continue;
                }
                Ok(Some(Err(e))) => {
                    let err = ApiError::upstream_unreachable(&self.route.provider, format!("the stream broke: {e}"));
                    self.fail(Outcome::Failed, &err);
                    continue;
                }
                Ok(Some(Ok(event))) => event,
            };
            let sse = SseEvent {
                event: (event.event != "message").then_some(event.event),
                data: event.data,
            };
            match self.decoder.push(&sse).await {
                Ok(Ok(chunks)) => self.emit(chunks),
                Ok(Err(pe)) => {
                    let err = ApiError::from_provider(&self.route.provider, &self.route.settings.api_key_env, &pe);
                    self.fail(Outcome::ProviderError, &err);
                }
                Err(fault) => self.fail(Outcome::Failed, &fault_error(&fault)),
            }
        }
    }

    fn emit(&mut self, chunks: Vec<StreamChunk>) {
        for chunk in chunks {
            if let Some(u) = &chunk.usage {
                self.usage = Some(*u);
                if let Some(r) = self.meter.record.as_mut() {
                    r.usage = Some(*u);
                    if chunk.raw_cost.is_some() {
                        r.raw_cost = chunk.raw_cost.clone();
                    }
                }
            }
            let has_content = chunk.choices.iter().any(|c| {
                c.content.as_deref().is_some_and(|s| !s.is_empty())
                    || c.reasoning_content.as_deref().is_some_and(|s| !s.is_empty())
                    || !c.tool_calls.is_empty()
            });
            if has_content && self.usage.is_none() {
                self.produced = self.produced.saturating_add(1);
                if let Some(r) = self.meter.record.as_mut() {
                    r.usage = Some(Usage {
                        prompt_tokens: self.prompt_estimate,
                        completion_tokens: self.produced,
                        total_tokens: self.prompt_estimate.saturating_add(self.produced),
                        cached_tokens: None,
                        reasoning_tokens: None,
                    });
                }
            }
            if self.first_token.is_none()
                && chunk.choices.iter().any(|c| {
                    c.content.as_deref().is_some_and(|s| !s.is_empty())
                        || c.reasoning_content.as_deref().is_some_and(|s| !s.is_empty())
                        || !c.tool_calls.is_empty()
                })
            {
                self.first_token = Some(self.meter.started.elapsed());
                self.meter.time_to_first_token(self.first_token);
            }
            if let Some(bytes) = openai::chunk_event(&chunk, &self.model, self.include_usage) {
                self.queue.push_back(Bytes::from(bytes));
                self.emitted = true;
            }
        }
    }

    /// Ends the stream with an OpenAI-shaped error event (the SDKs raise it).
    fn fail(&mut self, outcome: Outcome, err: &ApiError) {
        if self.emitted {
            // Mid-stream: the client got a 200, so the request log will not show this.
            tracing::warn!(provider = %self.route.provider, code = ?err.code, "stream failed: {}", err.message);
        }
        self.queue.push_back(Bytes::from(openai::error_event(err)));
        self.finished = true;
        let usage = self.usage;
        let status = if self.emitted { 200 } else { err.status.as_u16() };
        self.meter.finish(outcome, status, usage, None);
        self.error = Some(err.clone());
    }
}

impl Meter {
    fn time_to_first_token(&mut self, ttft: Option<Duration>) {
        if let Some(r) = self.record.as_mut() {
            r.time_to_first_token = ttft;
        }
    }
}
