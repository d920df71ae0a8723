//! `POST /v1/chat/completions`, JSON and SSE.
//!
//! The path of one call: read the bounded body → parse and validate → plan
//! (the model's deployments and fallbacks, `routing.rs`) → pricing check →
//! idempotency → limits → the attempt loop (`router.rs`), each attempt: fresh
//! plugin instance → build-request → upstream → parse-response or the stream
//! decoder up to the first content → OpenAI-shaped answer → one usage record
//! per attempt. What idempotency and limits hand out (the claim, the
//! reservation, a stream slot) lives in one [`crate::pipeline::CallGuard`]
//! that follows the call to its end and is settled once, for the final
//! outcome.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aigate_plugins::canonical::{ChatRequest, SseEvent, StreamChunk, Usage};
use aigate_plugins::{PluginFault, StreamDecoder};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{Instrument as _, Span};

use crate::auth::{Authed, Tenant};
use crate::billing::Charge;
use crate::codec::{Codec, Decoded, OpenAiChat, StreamEncoder};
use crate::error::ApiError;
use crate::idempotency;
use crate::metering::{Outcome, UsageRecord};
use crate::openai;
use crate::pipeline::CallGuard;
use crate::router::{self, AttemptFailure, Served};
use crate::routing::{Candidate, Plan, Route};
use crate::server::AppState;
use crate::sse::SseDecoder;
use crate::telemetry::{self, AttemptSpan};
use crate::upstream;

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
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(ApiError::payload_too_large(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::payload_too_large(limit)),
        Err(_) => Err(ApiError::invalid_request("The request body could not be read.")),
    }
}

/// The body as text: a 400 that says where, when it is not UTF-8.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ApiError::invalid_json(format!(
            "The request body is not valid UTF-8 (at byte {}). Send UTF-8 JSON.",
            e.valid_up_to()
        ))
    })
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("<not text>")).unwrap_or("<none>");
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(ApiError::unsupported_media_type(ct)) }
}

/// Who answered a request, for its metrics (a response extension; never sent).
#[derive(Debug, Clone)]
pub(crate) struct ServedBy {
    pub provider: Arc<str>,
    /// The model's metrics label (`Metrics::model_label`).
    pub model: String,
    pub fallback: bool,
}

/// Who called, for the request's log line (a response extension; never sent). Shares the
/// tenant the request already holds: nothing is copied per request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub api: &'static str,
    pub tenant: Arc<Tenant>,
}

/// Counts an answered request of `api` that started at `started`, and notes its caller for the
/// request log line.
pub(crate) fn count_request(
    state: &AppState,
    api: &'static str,
    tenant: &Arc<Tenant>,
    response: &mut Response,
    started: Instant,
) {
    response.extensions_mut().insert(Caller { api, tenant: Arc::clone(tenant) });
    let served = response.extensions().get::<ServedBy>();
    if served.is_some_and(|s| s.fallback) {
        state.metrics.fallbacks.with_label_values(&[api]).inc();
    }
    let labels = served.map(|s| (&*s.provider, s.model.as_str()));
    state.metrics.request(api, labels, response.status().as_u16(), started.elapsed());
}

/// Who answered: provider, plugin version, the model that served and how many provider calls
/// it took.
pub(crate) fn provider_headers(response: &mut Response, served: &Served) {
    let route = &served.candidate.route;
    response.extensions_mut().insert(ServedBy {
        provider: route.provider.clone(),
        model: crate::metrics::Metrics::model_label(route).to_owned(),
        fallback: served.fallback,
    });
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&route.provider) {
        h.insert("x-aigate-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&route.public_model(&route.upstream_model)) {
        h.insert("x-aigate-model", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{}@{}", route.plugin.name(), route.plugin.version())) {
        h.insert("x-aigate-plugin", v);
    }
    h.insert("x-aigate-attempts", HeaderValue::from(served.attempts));
}

/// Creates a chat completion: a JSON answer, or with `stream: true` server-sent `data:` events
/// (`CreateChatCompletionStreamResponse` chunks, usage last when `stream_options.include_usage`)
/// ending with `data: [DONE]`. An `Idempotency-Key` header makes a retry replay the first answer.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", security(("api_key" = [])),
    request_body = crate::openai::ChatCompletionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this call safe: the first answer is replayed.")),
    responses(
        (status = 200, description = "The completion; `x-request-id`, `x-aigate-provider`, `x-aigate-cost` and the limit headers say who served it and what it cost.",
            content((crate::openai::ResponseOut = "application/json"), (crate::openapi::ChatEvents = "text/event-stream"))),
        crate::openapi::OpenAiErrors))]
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(state, &OpenAiChat, tenant, headers, body).await
}

/// Runs the pipeline for an authenticated request in `codec`'s wire format.
pub async fn serve(
    state: Arc<AppState>,
    codec: &'static dyn Codec,
    tenant: Arc<Tenant>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut response = match handle(state.clone(), codec, tenant.clone(), headers, body).await {
        Ok(response) => response,
        Err(e) => codec.error_response(e),
    };
    count_request(&state, codec.name(), &tenant, &mut response, started);
    response
}

/// The pipeline of every inbound API: `codec` is the client's wire format.
async fn handle(
    state: Arc<AppState>,
    codec: &'static dyn Codec,
    tenant: Arc<Tenant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    require_json(&headers)?;
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let text = utf8(&bytes)?;
    let Decoded { model: asked, fallbacks, mut canonical, options, untranslatable } = codec.decode(text)?;
    // Content only the client's own API can carry: only providers that speak it natively.
    let serves = |c: &Candidate| match (&untranslatable, codec.native_api()) {
        (Some(what), api) if !api.is_some_and(|api| c.route.plugin.capabilities().speaks(api)) => {
            Err(ApiError::invalid_param(
                "messages",
                format!(
                    "{what} has no equivalent for `{}:{}`: only a provider that speaks this API itself \
                     (passthrough, e.g. `anthropic:…`) can take it. Remove it or choose such a model.",
                    c.route.provider, c.route.upstream_model
                ),
            ))
        }
        _ => Ok(()),
    };
    let prompt_estimate = estimate_prompt_tokens(&canonical);
    let estimate = state.limits.estimate(prompt_estimate, canonical.max_tokens);
    let admission = Admission::begin(
        &state,
        &tenant,
        &headers,
        Asked { endpoint: codec.endpoint(), body: text, model: &asked, fallbacks: &fallbacks },
        options.stream,
        estimate,
        serves,
    )
    .await?;
    let Admission { plan, guard, headers: admitted } = match admission {
        Admitted::Replay(response) => return Ok(response),
        Admitted::Proceed(admission) => admission,
    };
    if let Some(first) = plan.candidates().next() {
        canonical.model.clone_from(&first.route.upstream_model);
    }

    let passthrough = codec.native_api().map(|api| Passthrough {
        api,
        body: bytes.clone(),
        headers: codec
            .forwarded_headers()
            .iter()
            .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?.to_owned())))
            .collect(),
    });
    let stop_calls = state.stop_calls.clone();
    let call = Call {
        deadline: started + state.upstream.config.total_timeout,
        request_id: crate::request_id::of(&headers),
        client_request_id: crate::request_id::client_of(&headers),
        state,
        tenant,
        codec,
        plan,
        canonical,
        passthrough,
        options,
        prompt_estimate,
        started,
    };
    let mut response = tokio::select! {
        response = call.run(guard) => response,
        // Past the shutdown deadline: dropping the call meters and releases it.
        _ = stop_calls.cancelled() => codec.error_response(ApiError::shutting_down()),
    };
    ratelimit_headers(&mut response, admitted);
    Ok(response)
}

/// What a client asked for, as the shared steps of the pipeline need it.
pub(crate) struct Asked<'a> {
    /// The API's method and path (the idempotency fingerprint).
    pub endpoint: (&'static str, &'static str),
    /// The request body (UTF-8 JSON).
    pub body: &'a str,
    pub model: &'a str,
    pub fallbacks: &'a [String],
}

/// A request through the steps every inbound API shares, before any provider is called: the
/// key's model scope, the plan, the price check, idempotency and limits.
pub(crate) struct Admission {
    pub plan: Plan,
    /// What the call holds (claim, reservation, stream slot) until it is settled.
    pub guard: CallGuard,
    /// The `x-ratelimit-*` headers of the answer.
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) enum Admitted {
    /// An idempotent replay: the stored answer, nothing else to do.
    Replay(Response),
    Proceed(Admission),
}

impl Admission {
    /// Runs the shared steps. `serves` keeps the deployments that can serve this kind of call
    /// (embeddings, say); its first refusal is the error when none is left. Nothing is held
    /// when this fails.
    pub(crate) async fn begin(
        state: &AppState,
        tenant: &Tenant,
        headers: &HeaderMap,
        asked: Asked<'_>,
        stream: bool,
        estimate: u32,
        serves: impl Fn(&Candidate) -> Result<(), ApiError>,
    ) -> Result<Admitted, ApiError> {
        // The key's scope: the model asked for and every fallback it names.
        if let Some(model) =
            std::iter::once(asked.model).chain(asked.fallbacks.iter().map(String::as_str)).find(|m| !tenant.may_call(m))
        {
            let mut err = tenant.not_allowed(model);
            if model != asked.model {
                err.param = Some("fallbacks".to_owned());
            }
            return Err(err);
        }
        let plugins = state.registry.plugins();
        let mut plan = state.providers.plan(&plugins, asked.model, asked.fallbacks, state.config.routing.retries)?;
        // A route's own fallbacks are dispatched only into models the key may call.
        plan.tiers.retain(|t| tenant.may_call(&t.model));
        plan.retain(serves)?;
        // Every deployment that may be called is priced (or its provider allows unpriced calls).
        plan.retain(|c| state.billing.check(tenant, &c.route))?;

        // Everything above is validation: nothing was claimed, nothing is charged.
        // From here on the guard holds what the call takes, and gives it back on
        // every early return.
        let cfg = &state.config.idempotency;
        let begun = idempotency::begin(
            state.idempotency.as_ref(),
            tenant,
            headers,
            asked.endpoint,
            asked.body,
            cfg.lease,
            cfg.ttl,
        )
        .instrument(telemetry::step("idempotency"))
        .await;
        let metrics = &state.metrics;
        let claim = match begun {
            Ok(idempotency::Begin::Replay(response)) => {
                metrics.idempotency.with_label_values(&["replayed"]).inc();
                return Ok(Admitted::Replay(response));
            }
            Ok(idempotency::Begin::Proceed(claim)) => {
                if claim.is_some() {
                    metrics.idempotency.with_label_values(&["claimed"]).inc();
                }
                claim
            }
            Err(e) => {
                match e.code.as_deref() {
                    Some("idempotency_key_in_progress") => {
                        metrics.idempotency.with_label_values(&["in_progress"]).inc()
                    }
                    Some("idempotency_key_reused") => metrics.idempotency.with_label_values(&["mismatch"]).inc(),
                    Some("store_unavailable") => metrics.store_errors.with_label_values(&[shared_store(state)]).inc(),
                    _ => {}
                }
                return Err(e);
            }
        };
        let mut guard = CallGuard::new(claim, cfg.lease);
        let limits = async {
            if stream {
                guard.hold_stream(state.limits.open_stream(tenant)?);
            }
            let admitted = state.limits.admit(tenant, estimate).await?;
            guard.reserve(admitted.reservation);
            Ok::<_, ApiError>(admitted.headers)
        };
        match limits.instrument(telemetry::step("limits")).await {
            Ok(headers) => Ok(Admitted::Proceed(Admission { plan, guard, headers })),
            Err(e) => {
                match e.code.as_deref() {
                    Some(
                        kind @ ("rate_limit_exceeded"
                        | "budget_exceeded"
                        | "budget_currency_mismatch"
                        | "concurrent_streams_exceeded"),
                    ) => metrics.limit_refusals.with_label_values(&[kind]).inc(),
                    Some("limits_unavailable") => metrics.store_errors.with_label_values(&[shared_store(state)]).inc(),
                    Some("store_unavailable") => metrics.store_errors.with_label_values(&["database"]).inc(),
                    _ => {}
                }
                // Released before the client hears of it, so it can retry at once.
                guard.finish(0, None).await;
                Err(e)
            }
        }
    }
}

/// Where limits and idempotency keys live: `redis` when `REDIS_URL` is set, else in process.
fn shared_store(state: &AppState) -> &'static str {
    if state.redis.is_some() { "redis" } else { "memory" }
}

/// Adds the `x-ratelimit-*` headers of an admission to an answer.
pub(crate) fn ratelimit_headers(response: &mut Response, admitted: Vec<(&'static str, String)>) {
    for (name, value) in admitted {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
}

/// One admitted call: what was asked, for whom, and where it may go.
struct Call {
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    request_id: String,
    /// The client's own id, for correlation only (`request_id.rs`).
    client_request_id: Option<String>,
    /// The client's wire format.
    codec: &'static dyn Codec,
    plan: Plan,
    canonical: ChatRequest,
    /// The client's own request, for a deployment whose provider speaks the client's API.
    passthrough: Option<Passthrough>,
    options: openai::ClientOptions,
    /// ~4 characters a token: metered for a stream that ends before the
    /// provider reported its own count.
    prompt_estimate: u32,
    started: Instant,
    /// The end of `upstream.total_timeout`.
    deadline: Instant,
}

/// A request in an API some providers speak natively (`Codec::native_api`): sent to them as the
/// client wrote it ([`crate::codec::passthrough_body`]), with the client's forwarded headers,
/// and answered with the provider's bytes. The plugin still builds the request (method, URL,
/// its headers) and reads usage from the response and the stream, so metering, limits and
/// fallbacks hold.
struct Passthrough {
    /// The API's name in `capabilities.native-apis`.
    api: &'static str,
    body: Bytes,
    /// `Codec::forwarded_headers` the client sent: they replace the plugin's headers of the same name.
    headers: Vec<(&'static str, String)>,
}

/// An attempt that failed, with its usage record still open: the attempt loop
/// closes it as `retried` when another attempt follows.
pub(crate) struct Failed {
    pub error: ApiError,
    pub meter: Option<Meter>,
    pub outcome: Outcome,
}

/// A failure before the provider was called: nothing to meter.
impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed { error, meter: None, outcome: Outcome::Failed }
    }
}

impl AttemptFailure for Failed {
    fn error(&self) -> &ApiError {
        &self.error
    }

    fn close(mut self, retried: bool) -> ApiError {
        if let Some(mut meter) = self.meter.take() {
            let outcome = if retried { Outcome::Retried } else { self.outcome };
            meter.finish(outcome, self.error.status.as_u16(), None, None);
        }
        self.error
    }
}

/// How the provider answered a call.
enum Answer {
    /// A whole response and the tokens it used.
    Whole(Response, u32),
    /// A stream whose first chunks are ready: the relay runs it from here.
    Stream(Response, Box<Relay>),
}

impl Call {
    /// Runs the call and settles its guard: a final answer is stored under
    /// the idempotency key, anything else releases the key.
    async fn run(self, guard: CallGuard) -> Response {
        let key = guard.idempotency_key().map(str::to_owned);
        let state = &self.state;
        let attempts = router::run(&self.plan, &state.health, &state.config.routing, self.deadline, |c, n| {
            let span = telemetry::attempt_span(&AttemptSpan {
                operation: "chat",
                provider: &c.route.provider,
                model: &c.route.upstream_model,
                max_tokens: self.canonical.max_tokens,
                temperature: self.canonical.temperature,
            });
            self.attempt(c, n, key.clone(), span.clone()).instrument(span)
        });
        match attempts.await {
            Ok((Answer::Stream(mut response, relay), served)) => {
                provider_headers(&mut response, &served);
                let rx = relay.spawn(guard, self.state.stop_calls.clone());
                *response.body_mut() = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), rx))
                }));
                response
            }
            Ok((Answer::Whole(mut response, tokens), served)) => {
                provider_headers(&mut response, &served);
                settle(&self.state, guard, response, tokens, true).await
            }
            Err(e) => {
                let store = e.is_final();
                settle(&self.state, guard, self.codec.error_response(e), 0, store).await
            }
        }
    }

    /// One provider call (attempt `attempt` of the request) to `candidate`: a whole answer, a
    /// stream whose first content is ready, or the failure (with its usage record open when
    /// the provider was called).
    async fn attempt(
        &self,
        candidate: Candidate,
        attempt: u32,
        idempotency_key: Option<String>,
        span: Span,
    ) -> Result<Answer, Failed> {
        let capture = idempotency_key.is_some();
        let Call { state, options, .. } = self;
        let route = &candidate.route;
        // The canonical request names the upstream model: another deployment gets a copy.
        let canonical = if self.canonical.model == route.upstream_model {
            std::borrow::Cow::Borrowed(&self.canonical)
        } else {
            let mut copy = self.canonical.clone();
            copy.model.clone_from(&route.upstream_model);
            std::borrow::Cow::Owned(copy)
        };
        let native = self.passthrough.as_ref().filter(|p| route.plugin.capabilities().speaks(p.api));
        let mut instance = route.plugin.instantiate().await.map_err(|f| fault_error(&f))?;
        let built = instance.build_request(route.base_url.as_str(), &canonical);
        let mut http_request = match built.instrument(telemetry::step("plugin build-request")).await {
            Ok(Ok(r)) => r,
            Ok(Err(provider_error)) => {
                return Err(
                    ApiError::from_provider(&route.provider, &route.settings.api_key_env, &provider_error).into()
                );
            }
            Err(fault) => return Err(fault_error(&fault).into()),
        };
        if let Some(native) = native {
            http_request.body = crate::codec::passthrough_body(&native.body, &route.upstream_model)?;
            for (name, value) in &native.headers {
                http_request.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                http_request.headers.push(((*name).to_owned(), value.clone()));
            }
        }
        let upstream_request = state.upstream.prepare(&route.target(), route.plugin.name(), http_request)?;

        let mut meter = Meter::open(
            Metered {
                state,
                tenant: &self.tenant,
                request_id: &self.request_id,
                client_request_id: self.client_request_id.as_deref(),
                api: self.codec.name(),
                started: self.started,
            },
            route,
            attempt,
            options.stream,
            idempotency_key,
            span,
        );

        let failed = |error: ApiError, meter: Meter| Failed { error, meter: Some(meter), outcome: Outcome::Failed };
        let upstream_response = match state.upstream.send(&route.provider, upstream_request, self.deadline).await {
            Ok(r) => r,
            Err(e) => return Err(failed(e, meter)),
        };
        let status = upstream_response.status();
        let retry_after = upstream::retry_after(upstream_response.headers());

        if !options.stream || !status.is_success() {
            let http_response = match state.upstream.read(&route.provider, upstream_response, self.deadline).await {
                Ok(r) => r,
                Err(e) => return Err(failed(e, meter)),
            };
            let parsed = instance.parse_response(&http_response).instrument(telemetry::step("plugin parse-response"));
            let parsed = match parsed.await {
                Ok(p) => p,
                Err(f) => return Err(failed(fault_error(&f), meter)),
            };
            return match parsed {
                Ok(chat) if status.is_success() && !options.stream => {
                    // The model the provider says answered, or the one asked for.
                    let answered =
                        if chat.model.is_empty() { route.upstream_model.as_str() } else { chat.model.as_str() };
                    let model = route.public_model(answered);
                    meter.span.record("gen_ai.response.model", answered);
                    let reasons: Vec<&str> =
                        chat.choices.iter().filter_map(|c| c.finish_reason.as_ref()).map(finish_reason).collect();
                    if !reasons.is_empty() {
                        meter.span.record("gen_ai.response.finish_reasons", reasons.join(",").as_str());
                    }
                    let charge = meter.finish(Outcome::Completed, 200, chat.usage, chat.raw_cost.clone());
                    let body = match native {
                        // The provider's own bytes: the client speaks its API.
                        Some(_) => http_response.body,
                        None => self.codec.response(&chat, &model),
                    };
                    let mut response = (StatusCode::OK, body).into_response();
                    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    if let Some(charge) = charge
                        && let Ok(v) = HeaderValue::from_str(&format!("{} {}", charge.billed, charge.currency))
                    {
                        response.headers_mut().insert("x-aigate-cost", v);
                    }
                    Ok(Answer::Whole(response, chat.usage.map_or(0, |u| u.total_tokens)))
                }
                Ok(_) => Err(failed(
                    ApiError::plugin_fault(format!(
                        "Plugin `{}` turned a failed provider response (HTTP {status}) into a success.",
                        route.plugin.name()
                    )),
                    meter,
                )),
                Err(provider_error) => {
                    let err = ApiError::from_provider(&route.provider, &route.settings.api_key_env, &provider_error);
                    let err = upstream::transient_by_status(err, status, retry_after);
                    Err(Failed { error: err, meter: Some(meter), outcome: Outcome::ProviderError })
                }
            };
        }

        let decoder = match instance.stream_decoder(&route.upstream_model).await {
            Ok(d) => d,
            Err(f) => return Err(failed(fault_error(&f), meter)),
        };
        let streams = &state.config.streams;
        let mut relay = Box::new(Relay {
            body: Box::pin(upstream_response.bytes_stream()),
            sse: SseDecoder::new(streams.sse),
            events: Vec::new(),
            decoder,
            raw: native.is_some(),
            out: VecDeque::with_capacity(4),
            finished: false,
            encoder: self.codec.stream(route.public_model(&route.upstream_model), options.include_usage),
            deadline: self.deadline,
            idle_timeout: streams.idle_timeout,
            route: route.clone(),
            meter,
            early_error: None,
            usage: None,
            first_token: None,
            store: false,
            emitted: false,
            prompt_estimate: self.prompt_estimate,
            produced: 0,
            guard: None,
            captured: capture.then(Vec::new),
            capture_limit: state.config.idempotency.max_stored_bytes,
        });
        // Decode up to the first content before answering, holding the
        // lifecycle frames (role, empty deltas): a failure before any content
        // (an error event, a plugin fault, a stalled provider) is then a
        // failed attempt the router can retry or fall back from, and the
        // client sees one clean stream, or a real HTTP error.
        relay.fill_until_content().await;
        if let Some((outcome, error)) = relay.early_error.take() {
            let meter = relay.meter.detach();
            return Err(Failed { error, meter: Some(meter), outcome });
        }
        let mut response = Response::new(Body::empty());
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(Answer::Stream(response, relay))
    }
}

/// Finishes the guard of a whole response, storing it when `store` and it fits
/// `idempotency.max_stored_bytes`.
pub(crate) async fn settle(
    state: &AppState,
    guard: CallGuard,
    response: Response,
    tokens: u32,
    store: bool,
) -> Response {
    if !store || guard.idempotency_key().is_none() {
        guard.finish(tokens, None).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    // Our own bodies, already in memory: collecting cannot fail or wait.
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let outcome = (body.len() <= state.config.idempotency.max_stored_bytes)
        .then(|| idempotency::stored(parts.status, &parts.headers, body.clone(), false));
    let stored = guard.finish(tokens, outcome).await;
    let mut response = Response::from_parts(parts, Body::from(body));
    if !stored {
        response.headers_mut().insert(idempotency::NOT_STORED_HEADER, HeaderValue::from_static("false"));
    }
    response
}

/// A finish reason as the GenAI conventions write it (OpenAI's words).
fn finish_reason(reason: &aigate_plugins::canonical::FinishReason) -> &str {
    use aigate_plugins::canonical::FinishReason as F;
    match reason {
        F::Stop => "stop",
        F::Length => "length",
        F::ToolCalls => "tool_calls",
        F::ContentFilter => "content_filter",
        F::Other(other) => other,
    }
}

/// ~4 characters a token over the messages' text: only used when a stream
/// ends before the provider reported its own count.
pub(crate) fn estimate_prompt_tokens(request: &ChatRequest) -> u32 {
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

/// Who a call's usage records belong to.
pub(crate) struct Metered<'a> {
    pub state: &'a Arc<AppState>,
    pub tenant: &'a Arc<Tenant>,
    pub request_id: &'a str,
    pub client_request_id: Option<&'a str>,
    /// The inbound API (`Codec::name`).
    pub api: &'static str,
    pub started: Instant,
}

/// Writes the usage record exactly once: when the call finishes, or when it
/// is dropped (a client that disconnects mid-stream).
pub(crate) struct Meter {
    state: Arc<AppState>,
    tenant: Arc<Tenant>,
    record: Option<UsageRecord>,
    started: Instant,
    /// When this attempt began, and its model's metrics label.
    attempt_started: Instant,
    model_label: String,
    /// The attempt's trace span (`Span::none()` when tracing is off): usage and errors are
    /// recorded on it when the attempt ends.
    pub span: Span,
}

impl Meter {
    /// The open record of attempt `attempt` to `route` (status 502 `failed` until finished).
    pub(crate) fn open(
        who: Metered<'_>,
        route: &Route,
        attempt: u32,
        stream: bool,
        idempotency_key: Option<String>,
        span: Span,
    ) -> Meter {
        Meter {
            state: who.state.clone(),
            tenant: who.tenant.clone(),
            record: Some(UsageRecord {
                request_id: who.request_id.to_owned(),
                attempt,
                api: who.api,
                client_request_id: who.client_request_id.map(str::to_owned),
                provider: route.provider.to_string(),
                model: route.upstream_model.clone(),
                stream,
                outcome: Outcome::Failed,
                status: 502,
                usage: None,
                raw_cost: None,
                latency: Duration::ZERO,
                time_to_first_token: None,
                org_id: who.tenant.org_id,
                key_id: who.tenant.key_id,
                idempotency_key,
                billed_cost: aigate_core::Money::ZERO,
                currency: String::new(),
                unpriced: false,
                created_at: time::OffsetDateTime::now_utc(),
            }),
            started: who.started,
            attempt_started: Instant::now(),
            model_label: crate::metrics::Metrics::model_label(route).to_owned(),
            span,
        }
    }

    /// Prices and records the call; returns the charge the first time only.
    pub(crate) fn finish(
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
        let charge =
            self.state.billing.charge(&self.tenant, &r.provider, &r.model, r.usage.as_ref(), r.raw_cost.as_ref());
        r.billed_cost = charge.billed;
        r.currency = charge.currency.clone();
        r.unpriced = charge.unpriced;
        if let Some(u) = &r.usage {
            self.span.record("gen_ai.usage.input_tokens", i64::from(u.prompt_tokens));
            self.span.record("gen_ai.usage.output_tokens", i64::from(u.completion_tokens));
        }
        if !matches!(outcome, Outcome::Completed) {
            let kind = if status >= 400 { status.to_string() } else { outcome.as_str().to_owned() };
            self.span.record("error.type", kind.as_str());
            self.span.record("otel.status_code", "ERROR");
        }
        self.state.metrics.attempt(&crate::metrics::AttemptEnded {
            provider: &r.provider,
            model: &self.model_label,
            outcome: match outcome {
                Outcome::Completed => "ok",
                Outcome::Retried => "retryable",
                Outcome::Cancelled => "cancelled",
                _ => "error",
            },
            duration: self.attempt_started.elapsed(),
            time_to_first_token: r.time_to_first_token,
            tokens: r.usage.map(|u| (u64::from(u.prompt_tokens), u64::from(u.completion_tokens))),
            billed: Some((&charge.currency, charge.billed.nanos() as f64 / aigate_core::money::NANOS_PER_UNIT as f64)),
        });
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

type UpstreamBody = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Chunks decoded ahead of a slow client, at most: the relay's channel.
const RELAY_BUFFER: usize = 16;

/// Relays one provider stream to the client, chunk by chunk as they arrive.
///
/// After the first chunks (decoded in the handler, so an early error gets a
/// real HTTP status) the relay runs as its own task: it pulls upstream
/// events through the bounded SSE decoder and the plugin's decoder into a
/// small channel that the response body reads. The task, not the client,
/// keeps the clock: the idle timeout between provider events, the total
/// timeout, the client-stall timeout on a full channel and the shutdown
/// deadline all end the stream even when the client reads nothing. Every end
/// meters the call once and settles its [`CallGuard`]; a client that leaves
/// or stalls drops the upstream connection and frees its slot and claim.
struct Relay {
    body: UpstreamBody,
    sse: SseDecoder,
    /// Events of the last upstream chunk (kept to reuse the allocation).
    events: Vec<SseEvent>,
    decoder: StreamDecoder,
    /// A passthrough: the client gets the provider's bytes as they come; the decoder only
    /// meters and finds the first content, and the encoder only words the gateway's own errors.
    raw: bool,
    /// Encoded chunks not yet handed to the client.
    out: VecDeque<Bytes>,
    /// The stream ended: nothing more comes from upstream.
    finished: bool,
    /// The client's wire format, for this stream.
    encoder: Box<dyn StreamEncoder>,
    deadline: Instant,
    idle_timeout: Duration,
    route: Route,
    meter: Meter,
    usage: Option<Usage>,
    first_token: Option<Duration>,
    /// A failure before any content reached the client: the attempt failed
    /// (the router may retry); nothing was sent or metered yet.
    early_error: Option<(Outcome, ApiError)>,
    /// The stream ended with a final answer, to store under the idempotency key.
    store: bool,
    /// Whether any chunk was queued for the client.
    emitted: bool,
    /// Until the provider reports usage (at the end), a client that leaves is
    /// metered with these estimates: the prompt at ~4 characters a token, and
    /// one token per content chunk relayed (providers stream about one token
    /// per chunk).
    prompt_estimate: u32,
    produced: u32,
    /// Given by [`Relay::spawn`]; settled when the stream ends.
    guard: Option<CallGuard>,
    /// Everything sent to the client, kept only for an idempotent request,
    /// and dropped past `capture_limit` (the stream is then not stored).
    captured: Option<Vec<u8>>,
    capture_limit: usize,
}

/// Why the relay stopped before the end of the stream.
enum Abandoned {
    ClientLeft,
    ClientStalled,
    ShuttingDown,
}

impl Drop for Relay {
    /// However the relay ends, the guard settles on what was produced;
    /// unless [`Relay::close`] finished it, the claim is released.
    fn drop(&mut self) {
        let tokens = self.tokens();
        if let Some(guard) = self.guard.as_mut() {
            guard.tokens_if_dropped(tokens);
        }
    }
}

impl Relay {
    /// Starts the relay's task; returns the channel the response body reads.
    fn spawn(mut self: Box<Self>, guard: CallGuard, stop_calls: CancellationToken) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(RELAY_BUFFER);
        self.guard = Some(guard);
        if let Some(r) = self.meter.record.as_mut() {
            r.status = 200;
        }
        tokio::spawn(self.run(tx, stop_calls));
        rx
    }

    async fn run(mut self: Box<Self>, tx: mpsc::Sender<Bytes>, stop_calls: CancellationToken) {
        let stopped = stop_calls.cancelled();
        tokio::pin!(stopped);
        let abandoned = loop {
            if self.finished {
                // Stored or released before the client gets the last bytes,
                // so an immediate retry sees the record.
                self.close().await;
            }
            if let Some(gone) = self.deliver(&tx, stopped.as_mut()).await {
                break Some(gone);
            }
            if self.finished {
                break None;
            }
            let step = tokio::select! {
                biased;
                () = &mut stopped => Some(Abandoned::ShuttingDown),
                () = tx.closed() => Some(Abandoned::ClientLeft),
                _ = self.fill() => None,
            };
            match step {
                // The client is still reading: tell it why the stream ends.
                Some(Abandoned::ShuttingDown) => self.end_with(Outcome::Failed, &ApiError::shutting_down()),
                Some(gone) => break Some(gone),
                None => {}
            }
        };
        if let Some(why) = abandoned {
            self.abandon(why);
        }
    }

    /// Hands the queued chunks to the response body; `Some` when the client
    /// cannot take them.
    async fn deliver(
        &mut self,
        tx: &mpsc::Sender<Bytes>,
        mut stopped: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Option<Abandoned> {
        let stall = self.meter.state.config.streams.client_stall_timeout;
        while let Some(bytes) = self.out.pop_front() {
            let gone = tokio::select! {
                biased;
                sent = tokio::time::timeout(stall, tx.send(bytes)) => match sent {
                    Ok(Ok(())) => None,
                    Ok(Err(_)) => Some(Abandoned::ClientLeft),
                    Err(_) => Some(Abandoned::ClientStalled),
                },
                // A client that does not read cannot be told; it just loses the stream.
                () = &mut stopped => Some(Abandoned::ShuttingDown),
            };
            if gone.is_some() {
                return gone;
            }
        }
        None
    }

    /// Pulls upstream events until the first content (what came before it stays queued) or
    /// the end of the stream.
    async fn fill_until_content(&mut self) {
        while self.first_token.is_none() && !self.finished {
            self.pull().await;
        }
    }

    /// Pulls upstream events until something is queued for the client or the stream ended.
    async fn fill(&mut self) {
        while self.out.is_empty() && !self.finished {
            self.pull().await;
        }
    }

    /// Reads one upstream chunk (within the idle and total deadlines) and decodes its events.
    async fn pull(&mut self) {
        let idle = Instant::now() + self.idle_timeout;
        let chunk = match tokio::time::timeout_at(idle.min(self.deadline), self.body.next()).await {
            Err(_) => {
                let err = if idle < self.deadline {
                    ApiError::upstream_timeout(&self.route.provider, "send the next event", self.idle_timeout)
                } else {
                    let total = self.meter.state.upstream.config.total_timeout;
                    ApiError::upstream_timeout(&self.route.provider, "finish the stream", total)
                };
                return self.end_with(Outcome::Failed, &err);
            }
            Ok(None) => return self.upstream_done().await,
            Ok(Some(Err(e))) => {
                let err = ApiError::upstream_unreachable(&self.route.provider, format!("the stream broke: {e}"));
                return self.end_with(Outcome::Failed, &err);
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        let mut events = std::mem::take(&mut self.events);
        if let Err(too_large) = self.sse.feed(&chunk, &mut events) {
            events.clear();
            self.events = events;
            return self.end_with(Outcome::Failed, &ApiError::upstream_too_large(&self.route.provider, too_large));
        }
        if self.raw {
            self.push(chunk);
            self.emitted = true;
        }
        for event in events.drain(..) {
            if self.finished {
                break;
            }
            match self.decoder.push(&event).await {
                Ok(Ok(chunks)) => self.emit(chunks),
                Ok(Err(pe)) => {
                    let err = ApiError::from_provider(&self.route.provider, &self.route.settings.api_key_env, &pe);
                    self.end_with(Outcome::ProviderError, &err);
                }
                Err(fault) => self.end_with(Outcome::Failed, &fault_error(&fault)),
            }
        }
        self.events = events;
    }

    /// The provider finished its stream: flush the decoder, end with `[DONE]`.
    async fn upstream_done(&mut self) {
        match self.decoder.finish().await {
            Ok(Ok(chunks)) => self.emit(chunks),
            Ok(Err(pe)) => {
                let err = ApiError::from_provider(&self.route.provider, &self.route.settings.api_key_env, &pe);
                return self.end_with(Outcome::ProviderError, &err);
            }
            Err(fault) => return self.end_with(Outcome::Failed, &fault_error(&fault)),
        }
        if !self.raw {
            let end = self.encoder.end();
            self.push(Bytes::from(end));
        }
        self.finished = true;
        self.store = true;
        let usage = self.usage;
        self.meter.finish(Outcome::Completed, 200, usage, None);
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
            if let Some(reason) = chunk.choices.iter().find_map(|c| c.finish_reason.as_ref()) {
                self.meter.span.record("gen_ai.response.finish_reasons", finish_reason(reason));
                if !chunk.model.is_empty() {
                    self.meter.span.record("gen_ai.response.model", chunk.model.as_str());
                }
            }
            if has_content && self.first_token.is_none() {
                self.first_token = Some(self.meter.started.elapsed());
                self.meter.time_to_first_token(self.first_token);
            }
            if !self.raw
                && let Some(bytes) = self.encoder.chunk(&chunk)
            {
                self.push(Bytes::from(bytes));
                self.emitted = true;
            }
        }
    }

    fn push(&mut self, bytes: Bytes) {
        if let Some(c) = self.captured.as_mut() {
            if c.len() + bytes.len() <= self.capture_limit {
                c.extend_from_slice(&bytes);
            } else {
                // Too large to keep for replays: say so (SSE comments are
                // ignored by clients) and stop keeping it.
                self.captured = None;
                self.out.push_back(Bytes::from_static(NOT_STORED_COMMENT));
            }
        }
        self.out.push_back(bytes);
    }

    /// What the call used so far: the provider's count, else the estimate.
    fn tokens(&self) -> u32 {
        self.usage.map_or(self.prompt_estimate.saturating_add(self.produced), |u| u.total_tokens)
    }

    /// Ends the stream with an OpenAI-shaped error event (the SDKs raise it)
    /// and meters the call. Before any content, [`Call::attempt`] turns the
    /// error into an HTTP error instead. An error the provider says is final
    /// is stored for idempotent replays; any other releases the key.
    fn end_with(&mut self, outcome: Outcome, err: &ApiError) {
        if self.guard.is_none() && self.first_token.is_none() {
            // Nothing reached the client: the attempt failed (see `Call::attempt`).
            self.out.clear();
            self.finished = true;
            self.early_error = Some((outcome, err.clone()));
            return;
        }
        if self.emitted {
            // Mid-stream: the client got a 200, so the request log will not show this.
            tracing::warn!(provider = %self.route.provider, code = ?err.code, "stream failed: {}", err.message);
        }
        // A passthrough already relayed the provider's own error event.
        if !(self.raw && outcome == Outcome::ProviderError) {
            let event = self.encoder.error(err);
            self.push(Bytes::from(event));
        }
        self.finished = true;
        self.store = err.is_final();
        let usage = self.usage;
        let status = if self.emitted { 200 } else { err.status.as_u16() };
        self.meter.finish(outcome, status, usage, None);
    }

    /// Settles the guard of a stream that ended: stores it when it is a final
    /// answer that was kept whole, releases the key otherwise.
    async fn close(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let outcome = match self.captured.take() {
            Some(captured) if self.store => {
                let mut h = HeaderMap::new();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                if let Ok(v) = HeaderValue::from_str(&self.route.provider) {
                    h.insert("x-aigate-provider", v);
                }
                Some(idempotency::stored(StatusCode::OK, &h, Bytes::from(captured), true))
            }
            _ => None,
        };
        guard.finish(self.tokens(), outcome).await;
    }

    /// The stream stopped before its end: meter what was produced; dropping
    /// the relay then drops the upstream connection and releases the guard.
    fn abandon(&mut self, why: Abandoned) {
        let (outcome, reason) = match why {
            Abandoned::ClientLeft => (Outcome::Cancelled, "the client left"),
            Abandoned::ClientStalled => {
                (Outcome::Cancelled, "the client stopped reading (streams.client_stall_timeout_ms)")
            }
            Abandoned::ShuttingDown => (Outcome::Failed, "the gateway is shutting down"),
        };
        if !self.finished {
            tracing::info!(provider = %self.route.provider, request_id = ?self.meter.record.as_ref().map(|r| &r.request_id), "stream ended: {reason}");
        }
        // The client got a 200 and the partial stream.
        self.meter.finish(outcome, 200, None, None);
    }
}

/// Sent in place of the `Idempotent-Stored: false` header, which a stream
/// can no longer send when it finds out.
const NOT_STORED_COMMENT: &[u8] =
    b": idempotent-stored: false (larger than idempotency.max_stored_bytes; a retry with this key calls the provider again)\n\n";

impl Meter {
    /// Moves the open record to a new meter (this one then records nothing).
    fn detach(&mut self) -> Meter {
        Meter {
            state: self.state.clone(),
            tenant: self.tenant.clone(),
            record: self.record.take(),
            started: self.started,
            attempt_started: self.attempt_started,
            model_label: std::mem::take(&mut self.model_label),
            span: self.span.clone(),
        }
    }

    fn time_to_first_token(&mut self, ttft: Option<Duration>) {
        if let Some(r) = self.record.as_mut() {
            r.time_to_first_token = ttft;
        }
    }
}
