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
use crate::idempotency;
use aigate_admission::{ClaimGuard, Reservation};
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

/// Work to do when a call ends: store or release the idempotency claim,
/// settle the token reservation. Taken by the stream relay for streams.
pub struct Finish {
    /// Shared with the lease renewal while the call runs; sole owner after.
    idempotency: Option<(Arc<ClaimGuard>, String)>,
    reservation: Option<Reservation>,
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
    let plugins = state.registry.plugins();
    let route = state.providers.resolve(&plugins, &request.model)?;
    let (canonical, options) = openai::to_canonical(&request, &route.upstream_model)?;

    // Everything above is validation: nothing was claimed, nothing is charged.
    let cfg = &state.config.idempotency;
    let claim = match idempotency::begin(state.idempotency.as_ref(), &tenant, &headers, text, cfg.lease, cfg.ttl).await? {
        idempotency::Begin::Replay(response) => return Ok(response),
        idempotency::Begin::Proceed(claim) => claim,
    };
    let estimate = state.limits.estimate(estimate_prompt_tokens(&canonical), canonical.max_tokens);
    let admitted = match state.limits.admit(&tenant, estimate).await {
        Ok(a) => a,
        Err(e) => {
            if let Some((guard, _)) = claim {
                idempotency::finish(guard, None).await;
            }
            return Err(e);
        }
    };
    let rate_headers = admitted.headers;
    let mut finish = Some(Finish { idempotency: claim.map(|(g, k)| (Arc::new(g), k)), reservation: admitted.reservation });
    let idempotency_key = finish.as_ref().and_then(|f| f.idempotency.as_ref().map(|(_, k)| k.clone()));

    let renew = finish.as_ref().and_then(|f| f.idempotency.as_ref()).map(|(g, _)| g.clone());
    let work = call(&state, &tenant, &headers, &route, &canonical, &options, started, idempotency_key, &mut finish);
    let result = with_renewal(renew.as_deref(), cfg.lease, work).await;
    drop(renew);

    // Streams took `finish` into their relay; the rest end here.
    let mut response = match finish.take() {
        None => result?.0,
        Some(Finish { idempotency, reservation }) => {
            let (response, tokens) = match result {
                Ok((response, tokens)) => (response, tokens),
                Err(e) => {
                    let tokens = e.from_provider.then_some(0);
                    (e.into_response(), tokens)
                }
            };
            crate::limits::Limits::settle(reservation, tokens.unwrap_or(0));
            
            match idempotency {
                None => response,
                Some((guard, _)) => {
                    let guard = sole(guard);
                    // Outcomes from the provider are final and stored; others are released.
                    if tokens.is_some() {
                        let (parts, body) = response.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        finish_claim(guard, Some(idempotency::stored(parts.status, &parts.headers, body.clone(), false))).await;
                        Response::from_parts(parts, Body::from(body))
                    } else {
                        finish_claim(guard, None).await;
                        response
                    }
                }
            }
        }
    };
    for (name, value) in rate_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

/// The claim guard once the renewal is over (it always is when this runs).
fn sole(guard: Arc<ClaimGuard>) -> Option<ClaimGuard> {
    Arc::try_unwrap(guard).ok()
}

async fn finish_claim(guard: Option<ClaimGuard>, outcome: Option<aigate_admission::StoredResponse>) {
    if let Some(g) = guard {
        idempotency::finish(g, outcome).await;
    }
}

/// Keeps an idempotency claim's lease alive while a long call runs.
async fn with_renewal<T>(guard: Option<&ClaimGuard>, lease: Duration, work: impl std::future::Future<Output = T>) -> T {
    let Some(guard) = guard else {
        return work.await;
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Err(e) = guard.renew(lease).await {
                    tracing::warn!("idempotency lease not renewed: {e}");
                }
            }
        }
    }
}

/// Calls the provider. Returns the response and, when the provider answered,
/// the tokens it used (for the reservation); `Err` for failures, whose
/// `from_provider` says whether the provider answered.
#[allow(clippy::too_many_arguments)]
async fn call(
    state: &Arc<AppState>,
    tenant: &Arc<Tenant>,
    headers: &HeaderMap,
    route: &Route,
    canonical: &aigate_plugins::canonical::ChatRequest,
    options: &openai::ClientOptions,
    started: Instant,
    idempotency_key: Option<String>,
    finish: &mut Option<Finish>,
) -> Result<(Response, Option<u32>), ApiError> {
    let (state, tenant, route, options) = (state.clone(), tenant.clone(), route.clone(), options.clone());
    let deadline = started + state.upstream.config.total_timeout;

    let mut instance = route.plugin.instantiate().await.map_err(|f| fault_error(&f))?;
    let http_request = match instance.build_request(route.base_url.as_str(), canonical).await {
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
            request_id: request_id(headers),
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
            idempotency_key,
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
                // The model the provider says answered, or the one asked for.
                let answered = if chat.model.is_empty() { route.upstream_model.as_str() } else { chat.model.as_str() };
                let model = route.public_model(answered);
                let charge = meter.finish(Outcome::Completed, 200, chat.usage, chat.raw_cost.clone());
                let mut response = (StatusCode::OK, openai::response_json(&chat, &model)).into_response();
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                if let Some(charge) = charge
                    && let Ok(v) = HeaderValue::from_str(&format!("{} {}", charge.billed, charge.currency)) {
                        response.headers_mut().insert("x-aigate-cost", v);
                    }
                provider_headers(&mut response, &route);
                Ok((response, Some(chat.usage.map_or(0, |u| u.total_tokens))))
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
    let taken = finish.take();
    let capture = taken.as_ref().is_some_and(|f| f.idempotency.is_some());
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
        prompt_estimate: estimate_prompt_tokens(canonical),
        produced: 0,
        finish: taken,
        captured: capture.then(Vec::new),
        lease: state.config.idempotency.lease,
        renewed: Instant::now(),
    };
    // Decode until the first client-visible bytes before answering: an error
    // that comes before any content (an error event, a plugin fault) then gets
    // its real HTTP status instead of a 200 with an error event.
    relay.fill().await;
    if !relay.emitted
        && let Some(err) = relay.error.take() {
            // Nothing reached the client: the ending becomes an HTTP error, and
            // the claim and reservation go back to the caller with it.
            *finish = relay.finish.take();
            return Err(err);
        }
    let body = Body::from_stream(futures_util::stream::unfold(relay, Relay::next));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    provider_headers(&mut response, &route);
    Ok((response, None))
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
    /// The claim and reservation, until the stream ends.
    finish: Option<Finish>,
    /// Everything sent to the client, kept only for an idempotent request.
    captured: Option<Vec<u8>>,
    /// The idempotency lease, renewed while the stream runs.
    lease: Duration,
    renewed: Instant,
}

impl Drop for Relay {
    /// The client left mid-stream: settle on what was produced, release the
    /// claim (the client may retry; the partial call is metered by `Meter`).
    fn drop(&mut self) {
        if let Some(Finish { idempotency, reservation }) = self.finish.take() {
            crate::limits::Limits::settle(reservation, self.prompt_estimate.saturating_add(self.produced));
            if let Some(guard) = idempotency.and_then(|(g, _)| sole(g)) {
                idempotency::finish_later(guard, None);
            }
        }
    }
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
            if self.renewed.elapsed() > self.lease / 3 {
                if let Some(guard) = self.finish.as_ref().and_then(|f| f.idempotency.as_ref()).map(|(g, _)| g.clone())
                    && let Err(e) = guard.renew(self.lease).await {
                        tracing::warn!("idempotency lease not renewed: {e}");
                    }
                self.renewed = Instant::now();
            }
            let event = match tokio::time::timeout_at(self.deadline, self.events.next()).await {
                Err(_) => {
                    let err = ApiError::upstream_timeout(&self.route.provider, "finish the stream", self.meter.state.upstream.config.total_timeout);
                    self.end_with(Outcome::Failed, &err).await;
                    continue;
                }
                Ok(None) => {
                    match self.decoder.finish().await {
                        Ok(Ok(chunks)) => self.emit(chunks),
                        Ok(Err(pe)) => {
                            let err = ApiError::from_provider(&self.route.provider, &self.route.settings.api_key_env, &pe);
                            self.end_with(Outcome::ProviderError, &err).await;
                            continue;
                        }
                        Err(fault) => {
                            self.end_with(Outcome::Failed, &fault_error(&fault)).await;
                            continue;
                        }
                    }
                    self.push(Bytes::from_static(openai::DONE_EVENT));
                    self.finished = true;
                    let usage = self.usage;
                    self.meter.finish(Outcome::Completed, 200, usage, None);
                    self.close(true).await;
                    continue;
                }
                Ok(Some(Err(e))) => {
                    let err = ApiError::upstream_unreachable(&self.route.provider, format!("the stream broke: {e}"));
                    self.end_with(Outcome::Failed, &err).await;
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
                    self.end_with(Outcome::ProviderError, &err).await;
                }
                Err(fault) => self.end_with(Outcome::Failed, &fault_error(&fault)).await,
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
            if has_content && self.first_token.is_none() {
                self.first_token = Some(self.meter.started.elapsed());
                self.meter.time_to_first_token(self.first_token);
            }
            if let Some(bytes) = openai::chunk_event(&chunk, &self.model, self.include_usage) {
                self.push(Bytes::from(bytes));
                self.emitted = true;
            }
        }
    }

    fn push(&mut self, bytes: Bytes) {
        if let Some(c) = self.captured.as_mut() {
            c.extend_from_slice(&bytes);
        }
        self.queue.push_back(bytes);
    }

    /// [`Relay::fail`], then, if the client already has content, the end of
    /// the call: an error from the provider is a final outcome (stored for
    /// idempotent replays); a gateway-side one releases the claim. Before any
    /// content, `handle` turns the error into an HTTP error and finishes.
    async fn end_with(&mut self, outcome: Outcome, err: &ApiError) {
        self.fail(outcome, err);
        if self.emitted {
            self.close(outcome == Outcome::ProviderError).await;
        }
    }

    /// Settles the reservation and completes (`store`) or releases the claim.
    async fn close(&mut self, store: bool) {
        let Some(Finish { idempotency, reservation }) = self.finish.take() else {
            return;
        };
        let tokens = self.usage.map_or(self.prompt_estimate.saturating_add(self.produced), |u| u.total_tokens);
        crate::limits::Limits::settle(reservation, tokens);
        if let Some((guard, _)) = idempotency {
            let outcome = store.then(|| {
                let mut h = HeaderMap::new();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                if let Ok(v) = HeaderValue::from_str(&self.route.provider) {
                    h.insert("x-aigate-provider", v);
                }
                let body = Bytes::from(self.captured.take().unwrap_or_default());
                idempotency::stored(StatusCode::OK, &h, body, true)
            });
            finish_claim(sole(guard), outcome).await;
        }
    }

    /// Ends the stream with an OpenAI-shaped error event (the SDKs raise it).
    fn fail(&mut self, outcome: Outcome, err: &ApiError) {
        if self.emitted {
            // Mid-stream: the client got a 200, so the request log will not show this.
            tracing::warn!(provider = %self.route.provider, code = ?err.code, "stream failed: {}", err.message);
        }
        self.push(Bytes::from(openai::error_event(err)));
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
