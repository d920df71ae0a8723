#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed setup must stop the test"
)]

//! OpenTelemetry traces (issue 12): `aigate serve` as a process of its own, with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver run by this test, which
//! decodes what arrives with `opentelemetry-proto`. A binary of its own because the exporter is
//! installed process-wide by `main`, as operators run it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aigate_testkit::MockDashScope;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

type Received = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP trace receiver on 127.0.0.1:0; every span it is sent.
async fn receiver() -> (String, Received) {
    async fn traces(State(spans): State<Received>, body: Bytes) -> &'static str {
        if let Ok(request) = ExportTraceServiceRequest::decode(body) {
            let mut all = spans.lock().unwrap();
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    all.extend(scope.spans);
                }
            }
        }
        ""
    }
    let spans = Received::default();
    let app = Router::new().route("/v1/traces", post(traces)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

struct Gateway {
    child: Child,
    base: String,
    key: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `aigate serve` on an empty SQLite dev setup: its address and the dev key it prints.
fn serve(dir: &Path, mock: &MockDashScope, otlp: &str) -> Gateway {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist/qwen.wasm");
    std::fs::copy(&dist, plugins.join("qwen.wasm")).expect("run `cargo xtask build-plugins` first");
    let config = dir.join("aigate.toml");
    std::fs::write(&config, "[providers.qwen]\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aigate"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .envs([
            ("AIGATE_LISTEN", "127.0.0.1:0"),
            ("AIGATE_DATA_DIR", &dir.join("data").display().to_string()),
            ("AIGATE_PLUGINS_DIR", &plugins.display().to_string()),
            ("AIGATE_CONFIG", &config.display().to_string()),
            ("QWEN_BASE_URL", &mock.base_url()),
            ("QWEN_API_KEY", MockDashScope::API_KEY),
            ("AIGATE_LOG", "warn"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut base, mut key_next) = (None, false);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("AIGate is listening on ") {
                base = Some(addr.trim().to_owned());
            } else if line.starts_with("Dev API key") {
                key_next = true;
            } else if key_next {
                let _ = tx.send((base.clone().unwrap_or_default(), line.trim().to_owned()));
                key_next = false;
            }
        }
    });
    let (base, key) = rx.recv_timeout(Duration::from_secs(60)).expect("the gateway printed its address and key");
    Gateway { child, base, key }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(AnyValue::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(AnyValue::IntValue(n)) => Some(*n),
        _ => None,
    }
}

/// Waits until a span named `name` has arrived.
async fn span_named(spans: &Received, name: &str) -> Span {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(span) = spans.lock().unwrap().iter().find(|s| s.name == name).cloned() {
            return span;
        }
        assert!(Instant::now() < until, "no span `{name}` arrived: {:?}", names(spans));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(spans: &Received) -> Vec<String> {
    spans.lock().unwrap().iter().map(|s| s.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_a_stream_are_traced_with_the_genai_conventions() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (otlp, spans) = receiver().await;
    let mock = MockDashScope::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = serve(dir.path(), &mock, &otlp);
    let http = reqwest::Client::new();
    let chat = |body: serde_json::Value| {
        http.post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&gw.key)
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
            .body(body.to_string())
            .send()
    };
    let question = "Who are you? (a secret the traces must not hold)";
    let r = chat(json!({"model": "qwen:qwen-turbo", "max_tokens": 64, "temperature": 0.5,
        "messages": [{"role": "user", "content": question}]}))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r =
        chat(json!({"model": "qwen:qwen-plus", "stream": true, "messages": [{"role": "user", "content": question}]}))
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    // The client span of the JSON call, in the client's trace.
    let attempt = span_named(&spans, "chat qwen-turbo").await;
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(hex(&attempt.trace_id), TRACE_ID, "the client's traceparent continues");
    assert_eq!(text(&attempt, "gen_ai.operation.name"), Some("chat"));
    assert_eq!(text(&attempt, "gen_ai.provider.name"), Some("qwen"));
    assert_eq!(text(&attempt, "gen_ai.request.model"), Some("qwen-turbo"));
    assert_eq!(text(&attempt, "gen_ai.response.model"), Some("qwen-turbo"));
    assert_eq!(int(&attempt, "gen_ai.request.max_tokens"), Some(64));
    assert!(matches!(attribute(&attempt, "gen_ai.request.temperature"), Some(AnyValue::DoubleValue(t)) if *t == 0.5));
    assert_eq!(text(&attempt, "gen_ai.response.finish_reasons"), Some("stop"));
    assert!(int(&attempt, "gen_ai.usage.input_tokens").unwrap() > 0);
    assert!(int(&attempt, "gen_ai.usage.output_tokens").unwrap() > 0);
    assert!(attribute(&attempt, "error.type").is_none());

    // The server span is the client's child; auth, limits and the plugin calls are in the trace.
    let server = span_named(&spans, "POST /v1/chat/completions").await;
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(attempt.parent_span_id, server.span_id);
    for step in ["auth", "limits", "plugin build-request", "plugin parse-response"] {
        let child = span_named(&spans, step).await;
        assert_eq!(hex(&child.trace_id), TRACE_ID, "{step}");
    }

    // The provider got the attempt's context.
    let sent = mock.requests().into_iter().find(|r| r.path.ends_with("/chat/completions")).unwrap();
    let traceparent = sent.header("traceparent").unwrap().to_owned();
    assert!(traceparent.starts_with(&format!("00-{TRACE_ID}-{}", hex(&attempt.span_id))), "{traceparent}");

    // The stream's attempt: usage and the finish reason read from the stream.
    let streamed = span_named(&spans, "chat qwen-plus").await;
    assert!(int(&streamed, "gen_ai.usage.output_tokens").unwrap() > 0);
    assert_eq!(text(&streamed, "gen_ai.response.finish_reasons"), Some("stop"));

    // Message content is never recorded.
    for span in spans.lock().unwrap().iter() {
        for a in &span.attributes {
            let value = format!("{:?}", a.value);
            assert!(!value.contains("a secret"), "{} holds the prompt: {value}", a.key);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
