#![allow(clippy::expect_used, clippy::panic, reason = "a benchmark binary: any setup failure should stop it loudly")]

//! `cargo xtask bench`: what the gateway costs, measured on this machine.
//!
//! 1. Plugin cost per request: fresh instance + build-request + parse-response
//!    through the real qwen component (p50/p99 in µs).
//! 2. Added latency: the same chat call at fixed concurrency, straight to the
//!    mock DashScope upstream and through the gateway (p50/p99 of each and the
//!    difference). Both paths include the mock's own time; the difference is
//!    what the gateway adds (HTTP parse, validation, routing, plugin, upstream
//!    pool, response serialisation). At concurrency 1 also through a route of
//!    two deployments (weighted, both on the mock), which adds the plan, the
//!    pick and the circuit checks of the attempt loop, and in Anthropic's
//!    Messages format (`/v1/messages`, the same call through another codec).
//!
//! 3. Last, the same call at concurrency 1 with OpenTelemetry traces off and on (the exporter
//!    pointed at nothing): what tracing adds; and first the spans of one call made alone, with
//!    no HTTP around them.
//!
//! `… --bench traces` (any words) runs only the sections whose name contains one of them:
//! plugin, latency, metering, metrics, admission, traces.
//!
//! Numbers, not assertions: record them in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aigate::Gateway;
use aigate::config::Config;
use aigate_plugins::canonical::{ChatRequest, HttpResponse, Message, MessageContent, Role};
use aigate_plugins::{PluginRuntime, RuntimeConfig};
use aigate_testkit::MockDashScope;

const PLUGIN_WARMUP: usize = 500;
const PLUGIN_ITERATIONS: usize = 10_000;
const HTTP_CONCURRENCIES: [usize; 2] = [1, 16];
const HTTP_WARMUP: usize = 500;
const HTTP_REQUESTS: usize = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{label:<44} n={:<6} p50={:>8.1} µs  p99={:>8.1} µs  max={:>8.1} µs",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e6)
    );
    (p50, p99)
}

fn request_1kb() -> ChatRequest {
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    ChatRequest {
        model: "qwen-turbo".into(),
        messages: vec![
            Message {
                role: Role::System,
                content: Some(MessageContent::Text("You are a helpful assistant.".into())),
                name: None,
                tool_calls: vec![],
                tool_call_id: None,
                reasoning_content: None,
            },
            Message {
                role: Role::User,
                content: Some(MessageContent::Text(filler)),
                name: None,
                tool_calls: vec![],
                tool_call_id: None,
                reasoning_content: None,
            },
        ],
        tools: vec![],
        tool_choice: None,
        parallel_tool_calls: None,
        temperature: Some(0.7),
        top_p: None,
        max_tokens: Some(256),
        stop: vec![],
        seed: None,
        n: None,
        presence_penalty: None,
        frequency_penalty: None,
        response_format: None,
        user: None,
        stream: false,
        extra: String::new(),
    }
}

const DASHSCOPE_RESPONSE: &str = r#"{"choices":[{"message":{"role":"assistant","content":"I am Qwen, a large language model created by Alibaba Cloud. How can I help you today?"},"finish_reason":"stop","index":0,"logprobs":null}],"object":"chat.completion","usage":{"prompt_tokens":11,"completion_tokens":65,"total_tokens":76,"prompt_tokens_details":{"cached_tokens":0}},"created":1770285809,"system_fingerprint":null,"model":"qwen-turbo","id":"chatcmpl-63414f89-e97d-9449-8f3c-1e72cf1f6e40"}"#;

async fn plugin_cost(dist: &Path) {
    let runtime = PluginRuntime::new(RuntimeConfig { cache_dir: None, ..RuntimeConfig::default() }).expect("runtime");
    let plugin = runtime.load(&dist.join("qwen.wasm")).await.expect("load qwen.wasm");
    let request = request_1kb();
    let response = HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: DASHSCOPE_RESPONSE.as_bytes().to_vec(),
    };
    let base = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1";
    let mut instantiate = Vec::with_capacity(PLUGIN_ITERATIONS);
    let mut total = Vec::with_capacity(PLUGIN_ITERATIONS);
    for i in 0..PLUGIN_WARMUP + PLUGIN_ITERATIONS {
        let t0 = Instant::now();
        let mut instance = plugin.instantiate().await.expect("instantiate");
        let t1 = Instant::now();
        instance.build_request(base, &request).await.expect("no fault").expect("request");
        instance.parse_response(&response).await.expect("no fault").expect("response");
        let t2 = Instant::now();
        if i >= PLUGIN_WARMUP {
            instantiate.push(t1 - t0);
            total.push(t2 - t0);
        }
    }
    println!("\n== plugin cost per request (qwen.wasm, 1 KB request, pooling allocator)");
    report("instantiate (fresh store + instance)", instantiate);
    report("instantiate + build-request + parse-response", total);
}

async fn load(url: String, body: Arc<Vec<u8>>, auth: String, concurrency: usize) -> Vec<Duration> {
    load_n(url, body, auth, concurrency, HTTP_REQUESTS).await
}

/// `n` calls (after a warm-up) at `concurrency`, each one's latency.
async fn load_n(url: String, body: Arc<Vec<u8>>, auth: String, concurrency: usize, n: usize) -> Vec<Duration> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
    let run = |n: usize| {
        let (client, url, body, auth) = (client.clone(), url.clone(), body.clone(), auth.clone());
        async move {
            let per_worker = n / concurrency;
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let (client, url, body, auth) = (client.clone(), url.clone(), body.clone(), auth.clone());
                workers.push(tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(per_worker);
                    for _ in 0..per_worker {
                        let t0 = Instant::now();
                        let r = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("authorization", &auth)
                            .body(body.as_ref().clone())
                            .send()
                            .await
                            .expect("send");
                        assert!(r.status().is_success(), "status {}", r.status());
                        r.bytes().await.expect("body");
                        samples.push(t0.elapsed());
                    }
                    samples
                }));
            }
            let mut all = Vec::with_capacity(n);
            for w in workers {
                all.extend(w.await.expect("worker"));
            }
            all
        }
    };
    run(HTTP_WARMUP).await;
    run(n).await
}

/// A gateway on the mock (providers `qwen` and `qwen2`, route `pair`), a key of org `bench`,
/// and the folders it lives in.
struct Bench {
    mock: MockDashScope,
    gateway: Gateway,
    key: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn bench_gateway(dist: &Path) -> Bench {
    let mock = MockDashScope::start().await;
    let plugins = tempfile::tempdir().expect("tempdir");
    std::fs::copy(dist.join("qwen.wasm"), plugins.path().join("qwen.wasm")).expect("copy qwen.wasm");
    let data = tempfile::tempdir().expect("tempdir");
    let toml_text = format!(
        "listen = \"127.0.0.1:0\"\nplugins_dir = \"{}\"\ndata_dir = \"{}\"\n[providers.qwen]\nbase_url = \"{base}\"\n\
         [providers.qwen2]\nplugin = \"qwen\"\nbase_url = \"{base}\"\n\
         [routes.pair]\ndeployments = [{{ provider = \"qwen\", model = \"qwen-turbo\" }}, \
         {{ provider = \"qwen2\", model = \"qwen-turbo\" }}]\n",
        plugins.path().display(),
        data.path().display(),
        base = mock.base_url()
    );
    let env: BTreeMap<String, String> = [
        ("QWEN_API_KEY".to_owned(), MockDashScope::API_KEY.to_owned()),
        ("QWEN2_API_KEY".to_owned(), MockDashScope::API_KEY.to_owned()),
    ]
    .into();
    let config =
        Config::from_raw(Config::parse_toml(Path::new("bench.toml"), &toml_text).expect("toml"), &env).expect("config");
    let store = aigate::server::open_store(&config).await.expect("store");
    let key =
        aigate::admin::create_key(&store, &aigate::admin::CreateKey { org: "bench".into(), ..Default::default() })
            .await
            .expect("key")
            .key;
    let gateway = Gateway::start_with(config, Arc::new(env), store, Arc::new(NullSink)).await.expect("gateway");
    Bench { mock, gateway, key, _dirs: (plugins, data) }
}

fn chat_body(model: &str) -> Arc<Vec<u8>> {
    Arc::new(
        serde_json::to_vec(&serde_json::json!({
            "model": model,
            "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Who are you?"}],
            "max_tokens": 64
        }))
        .expect("json"),
    )
}

async fn added_latency(dist: &Path) {
    let Bench { mock, gateway, key, _dirs } = bench_gateway(dist).await;
    let body = chat_body;
    let direct_auth = format!("Bearer {}", MockDashScope::API_KEY);
    for concurrency in HTTP_CONCURRENCIES {
        let direct =
            load(format!("{}/chat/completions", mock.base_url()), body("qwen-turbo"), direct_auth.clone(), concurrency)
                .await;
        let via = load(
            format!("http://{}/v1/chat/completions", gateway.local_addr()),
            body("qwen:qwen-turbo"),
            format!("Bearer {key}"),
            concurrency,
        )
        .await;
        println!("\n== added latency, non-stream chat, concurrency {concurrency}, {HTTP_REQUESTS} requests each");
        let (d50, d99) = report("direct to the mock upstream", direct);
        let (g50, g99) = report("through the gateway", via);
        println!(
            "{:<44} p50={:>8.1} µs  p99={:>8.1} µs",
            "added by the gateway",
            (g50.as_secs_f64() - d50.as_secs_f64()) * 1e6,
            (g99.as_secs_f64() - d99.as_secs_f64()) * 1e6
        );
        if concurrency == 1 {
            let pair = load(
                format!("http://{}/v1/chat/completions", gateway.local_addr()),
                body("pair"),
                format!("Bearer {key}"),
                concurrency,
            )
            .await;
            let (r50, r99) = report("through the gateway, route of two deployments", pair);
            println!(
                "{:<44} p50={:>8.1} µs  p99={:>8.1} µs",
                "added by the gateway (route)",
                (r50.as_secs_f64() - d50.as_secs_f64()) * 1e6,
                (r99.as_secs_f64() - d99.as_secs_f64()) * 1e6
            );
            // The same call in Anthropic's Messages format (`/v1/messages` → qwen).
            let anthropic = Arc::new(
                serde_json::to_vec(&serde_json::json!({
                    "model": "qwen:qwen-turbo",
                    "max_tokens": 64,
                    "system": "You are a helpful assistant.",
                    "messages": [{"role": "user", "content": "Who are you?"}]
                }))
                .expect("json"),
            );
            let messages = load(
                format!("http://{}/v1/messages", gateway.local_addr()),
                anthropic,
                format!("Bearer {key}"),
                concurrency,
            )
            .await;
            let (m50, m99) = report("through the gateway, /v1/messages", messages);
            println!(
                "{:<44} p50={:>8.1} µs  p99={:>8.1} µs",
                "added by the gateway (/v1/messages)",
                (m50.as_secs_f64() - d50.as_secs_f64()) * 1e6,
                (m99.as_secs_f64() - d99.as_secs_f64()) * 1e6
            );
        }
    }
    gateway.shutdown().await.expect("shutdown");
}

/// The same call at concurrency 1 with OpenTelemetry traces off and on (the
/// tracing-opentelemetry layer installed, the OTLP exporter pointed at a port where nothing
/// listens): what tracing adds. Off and on alternate in blocks of calls on the same gateway
/// (`telemetry::set_enabled`), so a change of the machine's load weighs on both alike. Last,
/// because it installs the process's subscriber.
async fn traced_latency(dist: &Path) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    const BLOCKS: usize = 10;

    let Bench { mock, gateway, key, _dirs } = bench_gateway(dist).await;
    let url = format!("http://{}/v1/chat/completions", gateway.local_addr());
    let direct_auth = format!("Bearer {}", MockDashScope::API_KEY);
    let direct = load(format!("{}/chat/completions", mock.base_url()), chat_body("qwen-turbo"), direct_auth, 1).await;
    let nothing = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:9".to_owned());
    let traces = aigate::telemetry::Traces::from_env(&nothing).expect("traces").expect("an endpoint is set");
    traces.attach(tokio::runtime::Handle::current());
    let spans = tracing_subscriber::filter::filter_fn(|m| m.is_span() && m.target().starts_with("aigate"));
    tracing_subscriber::registry().with(aigate::telemetry::layer(traces.tracer()).with_filter(spans)).init();
    span_cost();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    // `AIGATE_BENCH_TRACES=on|off`: every block traced or none, so that `perf stat` of two runs
    // gives the CPU time tracing adds per call (the interleaved default gives the latency).
    let forced = std::env::var("AIGATE_BENCH_TRACES").ok();
    for block in 0..2 * BLOCKS {
        let traced = match forced.as_deref() {
            Some("on") => true,
            Some("off") => false,
            _ => block % 2 == 1,
        };
        aigate::telemetry::set_enabled(traced);
        let samples =
            load_n(url.clone(), chat_body("qwen:qwen-turbo"), format!("Bearer {key}"), 1, HTTP_REQUESTS / BLOCKS).await;
        if traced { on.extend(samples) } else { off.extend(samples) }
    }
    println!(
        "\n== traces on (OTLP exporter pointed at nothing), non-stream chat, concurrency 1, off and on interleaved"
    );
    let (d50, d99) = report("direct to the mock upstream", direct);
    let (off50, off99) = report("through the gateway, traces off", off);
    let (on50, on99) = report("through the gateway, traces on", on);
    let added = |g: Duration, d: Duration| (g.as_secs_f64() - d.as_secs_f64()) * 1e6;
    println!("{:<44} p50={:>8.1} µs  p99={:>8.1} µs", "added, traces off", added(off50, d50), added(off99, d99));
    println!("{:<44} p50={:>8.1} µs  p99={:>8.1} µs", "added, traces on", added(on50, d50), added(on99, d99));
    println!("{:<44} p50={:>8.1} µs  p99={:>8.1} µs", "traces on − off", added(on50, off50), added(on99, off99));
    gateway.shutdown().await.expect("shutdown");
    let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
}

/// The spans of one traced chat call alone, made and ended as the request path does (server
/// span, auth, idempotency and limits steps, the attempt's client span with its two plugin
/// steps, the `traceparent` injected, the attributes recorded), with no HTTP around them.
fn span_cost() {
    use aigate::telemetry::{self, AttemptSpan};
    let inbound = axum::http::HeaderMap::new();
    let mut samples = Vec::with_capacity(HTTP_REQUESTS);
    for i in 0..(HTTP_WARMUP + HTTP_REQUESTS) {
        let started = Instant::now();
        let request = telemetry::request_span(&axum::http::Method::POST, "/v1/chat/completions", &inbound);
        {
            let _in_request = request.enter();
            for step in ["auth", "idempotency", "limits"] {
                let _in_step = telemetry::step(step).entered();
            }
            let attempt = telemetry::attempt_span(&AttemptSpan {
                operation: "chat",
                provider: "qwen",
                model: "qwen-turbo",
                max_tokens: Some(64),
                temperature: Some(0.7),
            });
            {
                let _in_attempt = attempt.enter();
                drop(telemetry::step("plugin build-request").entered());
                let mut outbound = axum::http::HeaderMap::new();
                telemetry::inject(&mut outbound);
                std::hint::black_box(&outbound);
                drop(telemetry::step("plugin parse-response").entered());
            }
            attempt.record("gen_ai.response.model", "qwen-turbo");
            attempt.record("gen_ai.response.finish_reasons", "stop");
            attempt.record("gen_ai.usage.input_tokens", 21_i64);
            attempt.record("gen_ai.usage.output_tokens", 9_i64);
        }
        request.record("http.response.status_code", 200_i64);
        drop(request);
        if i >= HTTP_WARMUP {
            samples.push(started.elapsed());
        }
    }
    println!("\n== the spans of one traced call alone (7 spans, no HTTP)");
    micro_report("spans of one call", samples);
}

/// Usage records are dropped here: this bench measures the request path only.
struct NullSink;
impl aigate::metering::UsageSink for NullSink {
    fn record(&self, _: aigate::metering::UsageRecord) {}
}

const MICRO_ITERATIONS: usize = 20_000;

fn micro_report(label: &str, samples: Vec<Duration>) {
    report(label, samples);
}

/// Auth with a warm key cache, pricing and handing the usage record to the
/// ledger writer: the per-request cost of tenancy and metering.
async fn auth_and_metering() {
    use aigate::auth::Authenticator;
    use aigate::billing::Billing;
    use aigate::metering::{LedgerSink, Outcome, UsageRecord, UsageSink};
    use aigate_plugins::canonical::Usage;
    use aigate_store::{Store, UsageWriter, WriterOptions};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(None, dir.path()).await.expect("store");
    store.migrate().await.expect("migrate");
    aigate::admin::seed_prices(&store, None).await.expect("prices");
    let key =
        aigate::admin::create_key(&store, &aigate::admin::CreateKey { org: "bench".into(), ..Default::default() })
            .await
            .expect("key")
            .key;
    let auth = Authenticator::new(store.clone(), Duration::from_secs(600));
    let billing = Billing::new("USD".into());
    billing.prices.reload(&store).await.expect("price book");
    let (writer, task) =
        UsageWriter::start(store.clone(), &dir.path().join("spool"), WriterOptions::default()).expect("writer");
    let sink = LedgerSink { writer: writer.clone() };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().expect("header"));
    auth.authenticate(&headers).await.expect("warm");
    let usage = Usage {
        prompt_tokens: 120,
        completion_tokens: 80,
        total_tokens: 200,
        cached_tokens: Some(0),
        reasoning_tokens: None,
    };

    // Fewer records than the writer's queue holds (10,000): past that, submit
    // spills to the spool synchronously, which a real request rate does not reach.
    let n = 5_000;
    let (mut a, mut m) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t0 = Instant::now();
        let tenant = auth.authenticate(&headers).await.expect("auth");
        let t1 = Instant::now();
        let charge = billing.charge(&tenant, "qwen", "qwen-turbo", Some(&usage), None);
        sink.record(UsageRecord {
            request_id: format!("bench-{i}"),
            attempt: 1,
            api: "chat_completions",
            client_request_id: None,
            provider: "qwen".into(),
            model: "qwen-turbo".into(),
            stream: false,
            outcome: Outcome::Completed,
            status: 200,
            usage: Some(usage),
            raw_cost: None,
            latency: Duration::from_millis(5),
            time_to_first_token: None,
            org_id: tenant.org_id,
            key_id: tenant.key_id,
            idempotency_key: None,
            billed_cost: charge.billed,
            currency: charge.currency,
            unpriced: charge.unpriced,
            created_at: time::OffsetDateTime::now_utc(),
        });
        let t2 = Instant::now();
        a.push(t1 - t0);
        m.push(t2 - t0);
    }
    println!("\n== auth + metering on the hot path (warm key cache, SQLite ledger behind a batched writer)");
    micro_report("auth (cached key lookup)", a);
    micro_report("auth + price + usage record handed to the writer", m);
    writer.shutdown().await;
    let _ = task.await;
}

/// Idempotency claim + complete, and rate-limit acquire + settle, per backend.
async fn admission_checks() {
    use aigate_admission::{
        Admission, BodyKind, Claim, IdempotencyStore, LimitKey, MemoryIdempotencyStore, MemoryRateLimiter, RateLimiter,
        RedisIdempotencyStore, RedisOptions, RedisRateLimiter, StoredResponse, connection_manager,
    };
    use std::time::SystemTime;

    async fn run(label: &str, limiter: &dyn RateLimiter, idem: &dyn IdempotencyStore) {
        let keys =
            [LimitKey::key("k1", Some(u32::MAX), Some(u32::MAX)), LimitKey::org("o1", Some(u32::MAX), Some(u32::MAX))];
        let (mut l, mut i) = (Vec::with_capacity(MICRO_ITERATIONS), Vec::with_capacity(MICRO_ITERATIONS));
        let fp = [7u8; 32];
        let body = bytes::Bytes::from_static(br#"{"id":"chatcmpl-1","object":"chat.completion"}"#);
        for n in 0..MICRO_ITERATIONS {
            let t0 = Instant::now();
            match limiter.acquire(&keys, 500, SystemTime::now()).await.expect("limiter") {
                Admission::Granted(r) => r.settle(200, SystemTime::now()).await.expect("settle"),
                Admission::Denied { .. } => panic!("denied"),
            }
            let t1 = Instant::now();
            let key = format!("bench-{}-{n}", std::process::id());
            match idem.claim("1", &key, &fp, Duration::from_secs(30), Duration::from_secs(60)).await.expect("claim") {
                Claim::Acquired(g) => g
                    .complete(StoredResponse {
                        status: 200,
                        headers: vec![],
                        kind: BodyKind::Whole,
                        body: body.clone(),
                    })
                    .await
                    .expect("complete"),
                _ => panic!("not acquired"),
            }
            let t2 = Instant::now();
            l.push(t1 - t0);
            i.push(t2 - t1);
        }
        micro_report(&format!("{label}: rate limit acquire + settle"), l);
        micro_report(&format!("{label}: idempotency claim + complete"), i);
    }

    println!("\n== idempotency and limit checks (sequential, one client)");
    run("in-process", &MemoryRateLimiter::new(), &MemoryIdempotencyStore::new()).await;
    match std::env::var("REDIS_URL") {
        Ok(url) => {
            let options = RedisOptions::with_prefix(format!("aigate-bench-{}:", std::process::id()));
            let conn = connection_manager(&url, &options).expect("redis");
            run("redis", &RedisRateLimiter::new(conn.clone(), &options), &RedisIdempotencyStore::new(conn, &options))
                .await;
        }
        Err(_) => println!("redis: skipped (set REDIS_URL)"),
    }
}

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist");
    assert!(dist.join("qwen.wasm").is_file(), "run `cargo xtask build-plugins` first");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine: {cores} cores; build: release");
    // `… --bench traces`: only the sections whose name contains one of the words given.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |section: &str| only.is_empty() || only.iter().any(|word| section.contains(word.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        if run("plugin") {
            plugin_cost(&dist).await;
        }
        if run("latency") {
            added_latency(&dist).await;
        }
        if run("metering") {
            auth_and_metering().await;
        }
        if run("metrics") {
            metrics_recording();
        }
        if run("admission") {
            admission_checks().await;
        }
        if run("traces") {
            traced_latency(&dist).await;
        }
    });
}

/// What the Prometheus metrics add to one call: the attempt (outcome, durations, first
/// token, tokens, cost) and the request (count, duration), with realistic labels.
fn metrics_recording() {
    use aigate::metrics::{AttemptEnded, Metrics};

    let metrics = Metrics::new();
    let mut samples = Vec::with_capacity(HTTP_REQUESTS);
    for i in 0..(HTTP_WARMUP + HTTP_REQUESTS) {
        let started = Instant::now();
        metrics.attempt(&AttemptEnded {
            provider: "qwen",
            model: "qwen-turbo",
            outcome: "ok",
            duration: Duration::from_micros(1800),
            time_to_first_token: Some(Duration::from_micros(900)),
            tokens: Some((21, 9)),
            billed: Some(("USD", 0.000_004_1)),
        });
        metrics.request("chat_completions", Some(("qwen", "qwen-turbo")), 200, Duration::from_micros(2100));
        if i >= HTTP_WARMUP {
            samples.push(started.elapsed());
        }
    }
    println!("\n== Prometheus metrics recorded per call (attempt + request)");
    micro_report("metrics: one attempt and one request", samples);
}
