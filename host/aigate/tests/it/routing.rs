//! Routing that survives provider failures (issue 10): deployments, fallbacks, retries,
//! balancing, circuit breaking, against mock providers that fail on command.
//!
//! Two mock DashScopes: `primary` (the harness's own, provider `qwen`) and `backup` (provider
//! `backup` on the qwen plugin). Route `smart` tries qwen:qwen-turbo first and
//! backup:qwen-plus at the next priority.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aigate_testkit::{MockDashScope, Scenario, errors};
use serde_json::{Value, json};

use crate::harness::{
    JsonBody, Setup, TestGateway, assert_error, chat_body, eventually, redis_url, sse_payloads, start_with_mock,
    stream_body, unique,
};

/// The gateway (its mock is the primary) and the backup mock.
async fn gateway(routing: &str, extra: &str) -> (TestGateway, MockDashScope) {
    let backup = MockDashScope::start().await;
    let gw = gateway_with(routing, extra, MockDashScope::start().await, &backup, BTreeMap::new()).await;
    (gw, backup)
}

async fn gateway_with(
    routing: &str,
    extra: &str,
    primary: MockDashScope,
    backup: &MockDashScope,
    env: BTreeMap<String, String>,
) -> TestGateway {
    start_with_mock(setup(routing, extra, backup, env), primary).await
}

fn setup(routing: &str, extra: &str, backup: &MockDashScope, mut env: BTreeMap<String, String>) -> Setup {
    let toml = format!(
        r#"
[providers.backup]
plugin = "qwen"
base_url = "{backup}"

[providers.gone]
plugin = "qwen"
base_url = "http://127.0.0.1:1/compatible-mode/v1"

[routing]
backoff_base_ms = 10
backoff_max_ms = 50
{routing}

[routes.smart]
deployments = [
  {{ provider = "qwen", model = "qwen-turbo" }},
  {{ provider = "backup", model = "qwen-plus", priority = 1 }},
]

{extra}
"#,
        backup = backup.base_url(),
    );
    env.insert("BACKUP_API_KEY".into(), MockDashScope::API_KEY.into());
    env.insert("GONE_API_KEY".into(), MockDashScope::API_KEY.into());
    Setup { toml, env, ..Default::default() }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Served by the backup after one failed attempt on the primary.
async fn assert_fell_back(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 200, "{what}");
    assert_eq!(header(&r, "x-aigate-provider"), "backup", "{what}");
    assert_eq!(header(&r, "x-aigate-model"), "backup:qwen-plus", "{what}");
    assert_eq!(header(&r, "x-aigate-attempts"), "2", "{what}");
    let body = r.json_value().await;
    assert_eq!(body["model"], "backup:qwen-plus", "{what}: the model that served");
}

async fn usage_rows(gw: &TestGateway) -> Vec<Value> {
    let (_, body) = gw.admin_json("/admin/usage?org=test").await;
    body["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn falls_back_on_500_503_429_timeout_and_connect_refused() {
    let (gw, backup) = gateway(
        "retries = 0",
        r#"
[upstream]
first_byte_timeout_ms = 300

[routes.dead]
deployments = [
  { provider = "gone", model = "qwen-turbo" },
  { provider = "backup", model = "qwen-plus", priority = 1 },
]
"#,
    )
    .await;
    let cases: Vec<(&str, Scenario)> = vec![
        ("500", errors::internal().into()),
        ("503", errors::model_unavailable().into()),
        ("429", errors::rate_limited().into()),
        ("timeout", Scenario::Hang),
    ];
    for (i, (what, scenario)) in cases.into_iter().enumerate() {
        gw.mock.enqueue(scenario);
        assert_fell_back(gw.chat(&chat_body("smart")).await, what).await;
        assert_eq!(gw.mock.chat_requests(), i + 1, "{what}: the primary was tried once");
        assert_eq!(backup.chat_requests(), i + 1, "{what}: the backup answered");
    }
    assert_fell_back(gw.chat(&chat_body("dead")).await, "connect refused").await;
    assert_eq!(backup.chat_requests(), 5);
}

#[tokio::test]
async fn never_falls_back_on_the_clients_400_or_404() {
    let (gw, backup) = gateway("", "").await;
    gw.mock.enqueue(errors::invalid_parameter("temperature must be below 2"));
    assert_error(gw.chat(&chat_body("smart")).await, 400, "invalid_parameter_error").await;
    gw.mock.enqueue(errors::model_not_found("qwen-turbo"));
    let r = gw.chat(&chat_body("smart")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(gw.mock.chat_requests(), 2);
    assert_eq!(backup.chat_requests(), 0, "the client's own errors never move to another deployment");
}

#[tokio::test]
async fn a_fallback_is_metered_per_attempt_and_counted_as_one_request() {
    let (gw, _backup) = gateway("retries = 0", "").await;
    gw.mock.enqueue(errors::internal());
    let r = gw.chat(&chat_body("smart")).await;
    let request_id = header(&r, "x-request-id").to_owned();
    assert_fell_back(r, "500").await;
    let ok = eventually(Duration::from_secs(5), async || {
        let rows = usage_rows(&gw).await;
        rows.len() == 2
    })
    .await;
    let rows = usage_rows(&gw).await;
    assert!(ok, "one ledger row per attempt: {rows:?}");
    let row = |provider: &str| rows.iter().find(|r| r["provider"] == provider).cloned().unwrap();
    assert_eq!(row("qwen")["requests"], 0, "the failed attempt is metered, not counted as a request");
    assert_eq!(row("qwen")["model"], "qwen-turbo");
    assert_eq!(row("backup")["requests"], 1);
    let (_, body) = gw.admin_json("/admin/usage?org=test").await;
    assert_eq!(body["totals"][0]["requests"], 1, "{body}");
    // The request's own rows, by its id: one per attempt, where it went and how it ended.
    let (status, body) = gw.admin_json(&format!("/admin/requests/{request_id}?org=test")).await;
    assert_eq!(status, 200, "{body}");
    let attempts = body["attempts"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str, &str)> = attempts
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap();
            (a["attempt"].as_u64().unwrap(), s("provider"), s("outcome"), s("api"))
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "qwen", "retried", "chat_completions"), (2, "backup", "completed", "chat_completions")],
        "{body}"
    );
    let (status, _) = gw.admin_json("/admin/requests/req_nobody?org=test").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn per_request_fallbacks_extend_the_chain() {
    let (gw, backup) = gateway("retries = 0", "").await;
    gw.mock.enqueue(errors::model_unavailable());
    let mut body = chat_body("qwen:qwen-turbo");
    body["fallbacks"] = json!(["backup:qwen-plus"]);
    assert_fell_back(gw.chat(&body).await, "per-request fallback").await;
    // The field is the gateway's: never sent to a provider.
    let sent = backup.requests().last().unwrap().json();
    assert!(sent.get("fallbacks").is_none(), "{sent}");

    // An unknown fallback model is the client's mistake, said before anything is sent.
    body["fallbacks"] = json!(["nobody:nothing"]);
    let err = assert_error(gw.chat(&body).await, 400, "invalid_parameter").await;
    assert_eq!(err["error"]["param"], "fallbacks");
    body["fallbacks"] = json!("backup:qwen-plus");
    assert_eq!(gw.chat(&body).await.status(), 400, "fallbacks must be a list");
    assert_eq!(gw.mock.chat_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_fallbacks_through_the_openai_python_sdk() {
    if !crate::sdk::sdk_available() {
        assert!(std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"), "the openai package is required");
        eprintln!("skipped: python3 with the `openai` package is not installed");
        return;
    }
    let (gw, backup) = gateway("retries = 0", "").await;
    gw.mock.enqueue(errors::internal());
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0)
raw = client.chat.completions.with_raw_response.create(
    model="qwen:qwen-turbo",
    messages=[{"role": "user", "content": "hi"}],
    extra_body={"fallbacks": ["backup:qwen-plus"]},
)
r = raw.parse()
print(r.model, raw.headers.get("x-aigate-attempts"))
"#;
    let out = tokio::process::Command::new("python3").args(["-c", script, &gw.base, &gw.key]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "backup:qwen-plus 2");
    assert_eq!(backup.chat_requests(), 1);
}

#[tokio::test]
async fn a_retry_honours_retry_after() {
    let (gw, backup) = gateway("retries = 1", "").await;
    gw.mock.enqueue(Scenario::WithHeaders {
        headers: vec![("retry-after".into(), "1".into())],
        then: Box::new(errors::rate_limited().into()),
    });
    let started = Instant::now();
    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-aigate-attempts"), "2");
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}, the provider asked for 1 s");
    assert_eq!(gw.mock.chat_requests(), 2);
    assert_eq!(backup.chat_requests(), 0);

    // A Retry-After longer than routing.retry_after_max_ms is not waited for: the error goes back.
    gw.mock.enqueue(Scenario::WithHeaders {
        headers: vec![("retry-after".into(), "3600".into())],
        then: Box::new(errors::rate_limited().into()),
    });
    let started = Instant::now();
    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(r.status(), 429);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_whole_request_deadline_holds_when_every_deployment_hangs() {
    let (gw, backup) =
        gateway("retries = 5\nmax_attempts = 10", "[upstream]\nfirst_byte_timeout_ms = 400\ntotal_timeout_ms = 1200\n")
            .await;
    for _ in 0..10 {
        gw.mock.enqueue(Scenario::Hang);
        backup.enqueue(Scenario::Hang);
    }
    let started = Instant::now();
    let r = gw.chat(&chat_body("smart")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(took >= Duration::from_millis(1100), "{took:?}");
    assert!(took < Duration::from_millis(2500), "no chain of retries passes the deadline: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_balancing_over_a_thousand_calls() {
    let (gw, backup) = gateway(
        "",
        r#"
[routes.split]
deployments = [
  { provider = "qwen", model = "qwen-turbo", weight = 3 },
  { provider = "backup", model = "qwen-turbo", weight = 1 },
]
"#,
    )
    .await;
    let calls = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, key) = (gw.http.clone(), gw.url("/v1/chat/completions"), gw.key.clone());
        tasks.spawn(async move {
            for _ in 0..calls / 8 {
                let body = serde_json::to_vec(&chat_body("split")).unwrap();
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let primary = gw.mock.chat_requests();
    assert_eq!(primary + backup.chat_requests(), calls);
    // 3:1 → 750 expected; the standard deviation is 13.7, so ±60 is beyond 4σ.
    assert!((690..=810).contains(&primary), "weight 3 of 4 got {primary} of {calls}");
}

#[tokio::test]
async fn least_latency_moves_traffic_off_a_slow_deployment() {
    let (gw, backup) = gateway(
        "",
        r#"
[routes.fast]
strategy = "least-latency"
deployments = [
  { provider = "qwen", model = "qwen-turbo" },
  { provider = "backup", model = "qwen-turbo" },
]
"#,
    )
    .await;
    for _ in 0..10 {
        assert_eq!(gw.chat(&chat_body("fast")).await.status(), 200);
    }
    // The primary turns slow.
    for _ in 0..40 {
        gw.mock
            .enqueue(Scenario::Delay { before_headers: Duration::from_millis(150), then: Box::new(Scenario::Normal) });
    }
    let before = gw.mock.chat_requests();
    for _ in 0..40 {
        assert_eq!(gw.chat(&chat_body("fast")).await.status(), 200);
    }
    let slow = gw.mock.chat_requests() - before;
    assert!(slow <= 3, "the slow deployment still got {slow} of 40 calls");
    assert!(backup.chat_requests() >= 37);
}

#[tokio::test]
async fn a_circuit_opens_is_skipped_and_a_probe_closes_it() {
    let (gw, backup) = gateway("retries = 0\ncircuit_failures = 2\ncircuit_cooldown_ms = 600", "").await;
    gw.mock.enqueue(errors::internal());
    gw.mock.enqueue(errors::internal());
    for _ in 0..2 {
        assert_fell_back(gw.chat(&chat_body("smart")).await, "500").await;
    }
    assert_eq!(gw.mock.chat_requests(), 2);
    // Open: skipped at once, not waited on.
    let r = gw.chat(&chat_body("smart")).await;
    assert_eq!(header(&r, "x-aigate-provider"), "backup");
    assert_eq!(header(&r, "x-aigate-attempts"), "1", "the open deployment was not called");
    assert_eq!(gw.mock.chat_requests(), 2);
    // After the cooldown one probe goes; its success closes the circuit.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..2 {
        let r = gw.chat(&chat_body("smart")).await;
        assert_eq!(header(&r, "x-aigate-provider"), "qwen");
    }
    assert_eq!(gw.mock.chat_requests(), 4);
    assert_eq!(backup.chat_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opened_by_one_replica_is_skipped_by_the_other() {
    let Some(redis) = redis_url() else { return };
    let prefix = format!("{}:", unique("aigate-it-cb"));
    let env: BTreeMap<String, String> =
        [("REDIS_URL".to_owned(), redis), ("AIGATE_REDIS_PREFIX".to_owned(), prefix)].into();
    // Both replicas route `smart` to the same two providers.
    let shared = MockDashScope::start().await;
    let backup = MockDashScope::start().await;
    let routing = "retries = 0\ncircuit_failures = 2\ncircuit_cooldown_ms = 30000\ncircuit_sync_ms = 100";
    let extra = format!(
        "[providers.shared]\nplugin = \"qwen\"\nbase_url = \"{}\"\n\n[routes.both]\ndeployments = [\n  {{ provider = \"shared\", model = \"qwen-turbo\" }},\n  {{ provider = \"backup\", model = \"qwen-plus\", priority = 1 }},\n]\n",
        shared.base_url()
    );
    let mut env = env;
    env.insert("SHARED_API_KEY".into(), MockDashScope::API_KEY.into());
    let a = gateway_with(routing, &extra, MockDashScope::start().await, &backup, env.clone()).await;
    let b = gateway_with(routing, &extra, MockDashScope::start().await, &backup, env).await;
    shared.enqueue(errors::internal());
    shared.enqueue(errors::internal());
    for _ in 0..2 {
        assert_fell_back(a.chat(&chat_body("both")).await, "500 on replica a").await;
    }
    assert_eq!(shared.chat_requests(), 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = b.chat(&chat_body("both")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-aigate-provider"), "backup");
    assert_eq!(header(&r, "x-aigate-attempts"), "1", "replica b skipped the circuit a opened");
    assert_eq!(shared.chat_requests(), 2);
}

#[tokio::test]
async fn a_stream_failing_before_content_falls_back_into_one_clean_stream() {
    let (gw, backup) = gateway("retries = 0", "[upstream]\nfirst_byte_timeout_ms = 300\n").await;
    for scenario in [errors::model_unavailable().into(), Scenario::Hang] {
        gw.mock.enqueue(scenario);
        let r = gw.chat(&stream_body("smart", true)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-aigate-attempts"), "2");
        let payloads = sse_payloads(r).await;
        assert_eq!(payloads.last().unwrap(), "[DONE]");
        let chunks = &payloads[..payloads.len() - 1];
        assert!(chunks.iter().all(|c| c["model"] == "backup:qwen-plus" && c.get("error").is_none()), "{payloads:?}");
        let roles = chunks.iter().filter(|c| c["choices"][0]["delta"]["role"] == "assistant").count();
        assert_eq!(roles, 1, "one stream, one role frame: {payloads:?}");
    }
    assert_eq!(backup.chat_requests(), 2);
    // Both attempts of both calls are metered: the failed ones as attempts, not requests.
    let requests =
        |rows: &[Value], p: &str| rows.iter().find(|r| r["provider"] == p).map(|r| r["requests"].as_u64().unwrap());
    let metered = eventually(Duration::from_secs(5), async || {
        let rows = usage_rows(&gw).await;
        requests(&rows, "qwen") == Some(0) && requests(&rows, "backup") == Some(2)
    })
    .await;
    assert!(metered, "{:?}", usage_rows(&gw).await);
}

#[tokio::test]
async fn a_stream_failing_after_content_ends_with_an_error_event_and_is_metered() {
    let (gw, backup) = gateway("retries = 0", "").await;
    gw.mock.enqueue(Scenario::MidStreamError);
    let r = gw.chat(&stream_body("smart", true)).await;
    assert_eq!(r.status(), 200);
    let payloads = sse_payloads(r).await;
    let last = payloads.last().unwrap();
    assert!(last.get("error").is_some(), "ends with an error event: {payloads:?}");
    assert!(payloads.iter().any(|p| p["choices"][0]["delta"]["content"].is_string()), "content came first");
    assert_eq!(backup.chat_requests(), 0, "content was sent: no fallback");
    assert!(eventually(Duration::from_secs(5), async || !usage_rows(&gw).await.is_empty()).await);
    let rows = usage_rows(&gw).await;
    assert_eq!(rows[0]["provider"], "qwen");
    assert_eq!(rows[0]["requests"], 1);
}

const LIVE_ON_PRIMARY: &str = "[routes.live]\ndeployments = [{ provider = \"qwen\", model = \"qwen-turbo\" }]\n";
const LIVE_ON_BACKUP: &str = "[routes.live]\ndeployments = [{ provider = \"backup\", model = \"qwen-plus\" }]\n";
const LIVE_BROKEN: &str = "[routes.live]\ndeployments = [{ provider = \"nobody\", model = \"x\" }]\n";

/// Replaces the config file the way deploy tools do: a new file renamed over the old one.
fn rewrite(gw: &TestGateway, from: &str, to: &str) {
    let path = gw.data_dir.path().join("aigate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from));
    let next = gw.data_dir.path().join("aigate.toml.new");
    std::fs::write(&next, text.replace(from, to)).unwrap();
    std::fs::rename(&next, &path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_reload_under_load_without_a_failed_request() {
    let backup = MockDashScope::start().await;
    let mut setup = setup("", LIVE_ON_PRIMARY, &backup, BTreeMap::new());
    setup.config_file = true;
    let gw = start_with_mock(setup, MockDashScope::start().await).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, url, key, stop) = (gw.http.clone(), gw.url("/v1/chat/completions"), gw.key.clone(), stop.clone());
        load.spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&chat_body("live")).unwrap())
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    ok += 1;
                } else {
                    failed.push(r.text().await.unwrap_or_default());
                }
            }
            (ok, failed)
        });
    }
    assert!(eventually(Duration::from_secs(5), async || gw.mock.chat_requests() > 20).await);
    rewrite(&gw, LIVE_ON_PRIMARY, LIVE_ON_BACKUP);
    assert!(eventually(Duration::from_secs(10), async || backup.chat_requests() > 20).await, "the new route serves");
    let on_primary = gw.mock.chat_requests();
    assert!(eventually(Duration::from_secs(5), async || backup.chat_requests() > 60).await);
    assert!(gw.mock.chat_requests() <= on_primary + 4, "only calls planned before the swap went to the old route");

    // A broken file is refused: the last good routes keep serving, and the operator is told.
    rewrite(&gw, LIVE_ON_BACKUP, LIVE_BROKEN);
    let refused = eventually(Duration::from_secs(10), async || {
        let (_, body) = gw.admin_json("/admin/routes").await;
        body["reload"]["last_error"].as_str().is_some_and(|e| e.contains("nobody"))
    })
    .await;
    assert!(refused, "{:?}", gw.admin_json("/admin/routes").await.1);
    let served = backup.chat_requests();
    assert!(eventually(Duration::from_secs(5), async || backup.chat_requests() > served + 20).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    while let Some(done) = load.join_next().await {
        let (o, f) = done.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        failed.first()
    );
    let (_, body) = gw.admin_json("/admin/routes").await;
    let live = body["data"].as_array().unwrap().iter().find(|r| r["name"] == "live").unwrap().clone();
    assert_eq!(live["deployments"][0]["provider"], "backup", "{body}");
    assert!(body["reload"]["reloads"].as_u64().unwrap() >= 1);
}

/// A key created with a model scope (through the admin API, as an operator would).
async fn scoped_key(gw: &TestGateway, models: &str) -> String {
    let (status, body) = gw.admin_post("/admin/keys", &json!({"org": "test", "models": models})).await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_keys_model_scope_is_enforced_on_every_model_dispatched() {
    let (gw, backup) = gateway(
        "retries = 0",
        r#"
[routes.guarded]
fallbacks = ["backup:qwen-plus"]
deployments = [{ provider = "qwen", model = "qwen-turbo" }]
"#,
    )
    .await;
    let key = scoped_key(&gw, "qwen:*, guarded").await;
    assert_eq!(gw.post_as(&key, &chat_body("qwen:qwen-plus"), None).await.status(), 200);
    let err =
        assert_error(gw.post_as(&key, &chat_body("backup:qwen-plus"), None).await, 403, "model_not_allowed").await;
    assert_eq!(err["error"]["type"], "permission_error");
    assert!(err["error"]["message"].as_str().unwrap().contains("qwen:*,guarded"), "{err}");

    // A fallback the client names outside the scope is refused before anything is sent.
    let mut body = chat_body("qwen:qwen-turbo");
    body["fallbacks"] = json!(["backup:qwen-plus"]);
    let err = assert_error(gw.post_as(&key, &body, None).await, 403, "model_not_allowed").await;
    assert_eq!(err["error"]["param"], "fallbacks");

    // A route's own fallback into a model outside the scope is never dispatched.
    gw.mock.enqueue(errors::internal());
    let r = gw.post_as(&key, &chat_body("guarded"), None).await;
    assert_eq!(r.status(), 502, "the primary's failure, not the forbidden fallback's answer");
    assert_eq!(backup.chat_requests(), 0);
    // The same route serves its fallback to a key allowed to call it.
    gw.mock.enqueue(errors::internal());
    assert_fell_back(gw.chat(&chat_body("guarded")).await, "unscoped key").await;

    // /v1/models lists only what the key may call.
    let r = gw.http.get(gw.url("/v1/models")).bearer_auth(&key).send().await.unwrap();
    let listed: Vec<String> =
        r.json_value().await["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert!(listed.contains(&"qwen:qwen-max".to_owned()) && listed.contains(&"guarded".to_owned()), "{listed:?}");
    assert!(listed.iter().all(|m| m.starts_with("qwen:") || m == "guarded"), "{listed:?}");
    let (status, _) = gw.get_json("/v1/models").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_scope_pattern_matching_nothing_is_refused_and_an_orgs_scope_binds_its_keys() {
    let (gw, _backup) = gateway("", "").await;
    for typo in ["qwne:*", "smrat", "openai-*"] {
        let (status, body) = gw.admin_post("/admin/keys", &json!({"org": "test", "models": typo})).await;
        assert_eq!(status, 400, "{typo}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(typo), "{body}");
    }
    let (status, body) = gw.admin_post("/admin/keys", &json!({"org": "test", "models": "qwen:*;drop"})).await;
    assert_eq!(status, 400, "{body}");
    // The org's scope binds every key of the org, the unscoped harness key included.
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200);
    let (status, body) = gw.admin_post("/admin/orgs/test", &json!({"models": "smart"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["models"], "smart");
    assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 403, "model_not_allowed").await;
    assert_eq!(gw.chat(&chat_body("smart")).await.status(), 200);
    let (status, _) = gw.admin_post("/admin/orgs/test", &json!({"models": ""})).await;
    assert_eq!(status, 200);
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200, "\"\" allows every model again");
}

#[tokio::test]
async fn a_kubernetes_configmap_update_reloads_the_routes() {
    let backup = MockDashScope::start().await;
    let mut setup = setup("", LIVE_ON_PRIMARY, &backup, BTreeMap::new());
    setup.configmap = true;
    let gw = start_with_mock(setup, MockDashScope::start().await).await;
    assert_eq!(gw.chat(&chat_body("live")).await.status(), 200);
    assert_eq!(gw.mock.chat_requests(), 1);
    let cm = gw.data_dir.path().join("cm");
    let text = std::fs::read_to_string(cm.join("aigate.toml")).unwrap();
    crate::harness::swap_configmap(
        &cm,
        "..2026_12_01_00_05_00.000000002",
        &text.replace(LIVE_ON_PRIMARY, LIVE_ON_BACKUP),
    );
    let moved = eventually(Duration::from_secs(10), async || {
        gw.chat(&chat_body("live")).await;
        backup.chat_requests() > 0
    });
    assert!(moved.await, "the swapped ConfigMap's route serves: {:?}", gw.admin_json("/admin/routes").await.1);
}
