//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf), off unless
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set. The exporter
//! reads the standard `OTEL_*` variables itself (endpoint, headers, timeout; `OTEL_BSP_*` for
//! batching, `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` for the resource).
//!
//! Spans are `tracing` spans, turned into OpenTelemetry spans by `tracing-opentelemetry`:
//! - a server span per request (`{method} {path}`), continuing the client's W3C `traceparent`;
//! - a client span per provider attempt named `{operation} {model}`, with the GenAI semantic
//!   conventions' attributes (`gen_ai.operation.name`, `gen_ai.provider.name`,
//!   `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.request.max_tokens`,
//!   `gen_ai.request.temperature`, `gen_ai.response.finish_reasons`,
//!   `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `error.type`), whose context
//!   goes to the provider as `traceparent`;
//! - children for auth, idempotency, limits and the plugin's build and parse calls.
//!
//! Message content is never recorded. When tracing is off no span is created ([`enabled`]),
//! so the request path pays one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (then the request path makes spans).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Stops or resumes making spans, the exporter staying installed: `cargo xtask bench` compares
/// the same process with and without traces in interleaved blocks of calls. Turning spans on
/// in a process without [`Traces`] makes spans nothing exports.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The exporter of a process that traces: its tracer for the subscriber's layer, and the
/// provider to flush at exit. The exporter sends on the gateway's tokio runtime, which
/// [`Traces::attach`] hands it once it runs.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    runtime: Arc<OnceLock<tokio::runtime::Handle>>,
}

impl Traces {
    /// Traces when the environment names an OTLP endpoint; `None` otherwise.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Traces>> {
        let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return Ok(None);
        }
        let runtime = Arc::new(OnceLock::new());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(OnRuntime { runtime: Arc::clone(&runtime), client: OnceLock::new() })
            .build()?;
        let resource = Resource::builder().with_service_name("aigate").build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Some(Traces { provider, runtime }))
    }

    /// The tracer the subscriber's OpenTelemetry layer writes to.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("aigate")
    }

    /// Gives the exporter the runtime to send on (call from within it).
    pub fn attach(&self, runtime: tokio::runtime::Handle) {
        let _ = self.runtime.set(runtime);
    }

    /// Exports what is left. Blocks: call it off the runtime's workers (`spawn_blocking`).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("traces not all exported at exit: {e}");
        }
    }
}

/// The `tracing` layer that turns the gateway's spans into OpenTelemetry spans for `tracer`.
/// Only what the conventions ask for is recorded: no source location, thread, target or
/// busy/idle attributes, and no OpenTelemetry context switched on every poll of an
/// instrumented future ([`inject`] reads the span's own context); each of those costs the
/// request path time and every exported span bytes.
pub fn layer<S>(tracer: SdkTracer) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

/// The OTLP exporter's HTTP client: the batch processor calls it from a thread of its own,
/// so each export runs as a task on the gateway's runtime, with a reqwest client made there.
#[derive(Debug)]
struct OnRuntime {
    runtime: Arc<OnceLock<tokio::runtime::Handle>>,
    client: OnceLock<reqwest::Client>,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self.runtime.get().ok_or("the gateway's runtime has not started yet")?;
        let client = self
            .client
            .get_or_init(|| {
                // The same TLS provider as the upstream client (`upstream.rs`), for https endpoints.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            })
            .clone();
        let (parts, body) = request.into_parts();
        let sent = runtime.spawn(async move {
            let mut request = client.request(parts.method, parts.uri.to_string()).body(body);
            for (name, value) in &parts.headers {
                request = request.header(name, value);
            }
            let answer = request.send().await?;
            let (status, headers) = (answer.status(), answer.headers().clone());
            let body = answer.bytes().await?;
            let mut response = Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok::<_, reqwest::Error>(response)
        });
        Ok(sent.await??)
    }
}

/// The server span of one request, continuing the client's `traceparent`; `Span::none()` when
/// tracing is off.
pub fn request_span(method: &axum::http::Method, path: &str, headers: &axum::http::HeaderMap) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&opentelemetry_http::HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
    span
}

/// A child span of the current one (`auth`, `idempotency`, `limits`, `plugin build-request`…).
pub fn step(name: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!("step", otel.name = name)
}

/// What a provider attempt's span says of the request.
#[derive(Debug)]
pub struct AttemptSpan<'a> {
    /// `chat` or `embeddings`.
    pub operation: &'static str,
    pub provider: &'a str,
    pub model: &'a str,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

/// The client span of one provider attempt (GenAI semantic conventions).
pub fn attempt_span(a: &AttemptSpan<'_>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "attempt",
        otel.name = %format!("{} {}", a.operation, a.model),
        otel.kind = "client",
        gen_ai.operation.name = a.operation,
        gen_ai.provider.name = a.provider,
        gen_ai.request.model = a.model,
        gen_ai.request.max_tokens = tracing::field::Empty,
        gen_ai.request.temperature = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(n) = a.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(n));
    }
    if let Some(t) = a.temperature {
        span.record("gen_ai.request.temperature", t);
    }
    span
}

/// Adds the current span's context to a provider request as `traceparent` (when tracing).
pub fn inject(headers: &mut axum::http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    });
}
