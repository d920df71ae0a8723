//! API keys, metering and billing through the real gateway (issue 3).

use std::time::Duration;

use aigate_testkit::Scenario;
use futures_util::StreamExt;
use serde_json::Value;

use crate::harness::{
    JsonBody, Setup, TestGateway, assert_error, chat_body, eventually, sse_payloads, start, start_with, stream_body,
};

async fn post_with_auth(gw: &TestGateway, auth: Option<&str>) -> reqwest::Response {
    let mut req = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&chat_body("qwen:qwen-turbo")).unwrap());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn bad_credentials_are_401_and_never_reach_the_provider() {
    let gw = start().await;
    let cases: Vec<(Option<&str>, &str)> = vec![
        (None, "missing_api_key"),
        (Some("Basic dXNlcjpwYXNz"), "invalid_api_key"),
        (Some("Bearer"), "invalid_api_key"),
        (Some("Bearer "), "invalid_api_key"),
        (Some("garbage"), "invalid_api_key"),
        (Some("Bearer sk-aig-doesnotexist"), "invalid_api_key"),
        (Some("Bearer ' OR 1=1 --"), "invalid_api_key"),
        (Some("Bearer x'; DROP TABLE api_keys; --"), "invalid_api_key"),
    ];
    for (auth, code) in cases {
        let body = assert_error(post_with_auth(&gw, auth).await, 401, code).await;
        assert_eq!(body["error"]["type"], "authentication_error", "{auth:?}");
    }
    let long = format!("Bearer {}", "k".repeat(10_000));
    assert_eq!(post_with_auth(&gw, Some(&long)).await.status(), 401);
    let r = gw.http.get(gw.url("/v1/models")).send().await.unwrap();
    assert_error(r, 401, "missing_api_key").await;
    assert_eq!(gw.mock.requests().len(), 0, "nothing reached the provider");
    // The tables are still there: a real key still works.
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200);
}

#[tokio::test]
async fn revoked_and_expired_keys_stop_working() {
    let gw = start_with(Setup { toml: "[auth]\nkey_cache_ttl_ms = 300\n".into(), ..Default::default() }).await;
    let store = &gw.gateway.as_ref().unwrap().state().store;
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200, "warms the key cache");
    let prefix = aigate::admin::list_keys(store, "test").await.unwrap()[0].prefix.clone();
    aigate::admin::revoke_key(store, &prefix).await.unwrap();
    // Within the cache TTL the revocation takes effect (no restart, any replica).
    assert!(
        eventually(Duration::from_secs(3), async || gw.chat(&chat_body("qwen:qwen-turbo")).await.status() == 401).await
    );
    let body = assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 401, "api_key_revoked").await;
    assert!(body["error"]["message"].as_str().unwrap().contains(&prefix));

    let expired = aigate::admin::create_key(
        store,
        &aigate::admin::CreateKey { org: "test".into(), expires_in_days: Some(0), ..Default::default() },
    )
    .await
    .unwrap();
    assert_error(post_with_auth(&gw, Some(&format!("Bearer {}", expired.key))).await, 401, "api_key_expired").await;
}

/// The billed cost of qwen-turbo from prices/qwen-intl-usd.toml, in nanos:
/// $0.05 per million input tokens = 50 nanos/token, $0.20 output = 200.
fn qwen_turbo_nanos(prompt: u64, completion: u64) -> i64 {
    (prompt * 50 + completion * 200) as i64
}

fn nanos(decimal: &str) -> i64 {
    aigate_core::Money::parse(decimal).unwrap().nanos()
}

async fn wait_usage(gw: &TestGateway, org: &str, requests: u64) -> Value {
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(5), async || {
        let (_, body) = gw.admin_json(&format!("/admin/usage?org={org}")).await;
        last = body.clone();
        body["totals"][0]["requests"].as_u64() == Some(requests)
    })
    .await;
    assert!(ok, "usage never reached {requests} requests: {last}");
    last
}

#[tokio::test]
async fn cli_key_calls_are_metered_and_billed_exactly() {
    let gw = start().await;
    let data_dir = gw.data_dir.path().to_owned();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
            .args(args)
            .env("AIGATE_DATA_DIR", &data_dir)
            .env_remove("DATABASE_URL")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .output()
            .unwrap();
        assert!(out.status.success(), "aigate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&["prices", "seed"]);
    gw.gateway
        .as_ref()
        .unwrap()
        .state()
        .billing
        .prices
        .reload(&gw.gateway.as_ref().unwrap().state().store)
        .await
        .unwrap();
    let stdout = cli(&["keys", "create", "--org", "e2e"]);
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("sk-aig-"), "{stdout}");

    // JSON call: x-aigate-cost is the billed cost of this call.
    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&chat_body("qwen:qwen-turbo")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cost = r.headers()["x-aigate-cost"].to_str().unwrap().to_owned();
    let body = r.json_value().await;
    let (p1, c1) =
        (body["usage"]["prompt_tokens"].as_u64().unwrap(), body["usage"]["completion_tokens"].as_u64().unwrap());
    let (amount, currency) = cost.split_once(' ').unwrap();
    assert_eq!(currency, "USD");
    assert_eq!(nanos(amount), qwen_turbo_nanos(p1, c1), "x-aigate-cost {cost}");

    // Stream call: the final usage chunk is what gets billed.
    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&stream_body("qwen:qwen-turbo", true)).unwrap())
        .send()
        .await
        .unwrap();
    let events = sse_payloads(r).await;
    let usage = &events[events.len() - 2]["usage"];
    let (p2, c2) = (usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap());

    let expected_nanos = qwen_turbo_nanos(p1, c1) + qwen_turbo_nanos(p2, c2);
    let admin = wait_usage(&gw, "e2e", 2).await;
    let totals = &admin["totals"][0];
    assert_eq!(totals["prompt_tokens"].as_u64(), Some(p1 + p2));
    assert_eq!(totals["completion_tokens"].as_u64(), Some(c1 + c2));
    assert_eq!(nanos(totals["billed_cost"].as_str().unwrap()), expected_nanos, "{admin}");

    // The CLI reads the same numbers.
    let cli_usage: Value = serde_json::from_str(&cli(&["usage", "--org", "e2e"])).unwrap();
    assert_eq!(cli_usage["totals"], admin["totals"]);
    assert_eq!(cli_usage["rows"][0]["model"], "qwen-turbo");
    assert_eq!(cli_usage["rows"][0]["provider"], "qwen");
}

#[tokio::test]
async fn provider_reported_cost_and_markup() {
    // A provider error is metered too (one record per call), at zero cost.
    let gw = start().await;
    gw.mock.enqueue(Scenario::Error { status: 429, body: aigate_testkit::errors::rate_limited().body });
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 429);
    let usage = wait_usage(&gw, "test", 1).await;
    assert_eq!(usage["totals"][0]["billed_cost"], "0.000000000");
}

#[tokio::test]
async fn an_abandoned_stream_is_metered_with_what_was_produced() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(50), chunks: 200 });
    let r = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("chunk-3") {
        seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    drop(body);
    assert!(gw.mock.wait_streams_cancelled(1, Duration::from_secs(5)).await);
    let usage = wait_usage(&gw, "test", 1).await;
    let completion = usage["totals"][0]["completion_tokens"].as_u64().unwrap();
    assert!((3..200).contains(&completion), "tokens produced before the client left: {usage}");
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let gw = start().await;
    let r = gw.http.get(gw.url("/admin/plugins")).send().await.unwrap();
    assert_error(r, 401, "invalid_admin_token").await;
    let r = gw.http.get(gw.url("/admin/plugins")).bearer_auth(&gw.key).send().await.unwrap();
    assert_error(r, 401, "invalid_admin_token").await;
    let (status, body) = gw.admin_json("/admin/plugins").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = gw.admin_json("/admin/usage?org=nobody").await;
    assert_eq!(status, 404);
    let (status, _) = gw.admin_json("/admin/usage?org=bad%20name").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn admin_routes_are_off_without_a_token() {
    let gw = start_with(Setup { env: [("AIGATE_ADMIN_TOKEN".to_owned(), String::new())].into(), ..Default::default() })
        .await;
    let (status, body) = gw.admin_json("/admin/plugins").await;
    assert_eq!(status, 404, "{body}");
}

fn aigate(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .args(args)
        .env_remove("DATABASE_URL")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn operator_commands_refuse_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [("AIGATE_DATA_DIR", data.as_str())];
    for _ in 0..2 {
        let out = aigate(&["migrate"], &env);
        assert!(out.status.success(), "migrating twice is fine: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = aigate(&["keys", "create", "--org", "Robert'); DROP TABLE orgs;--"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid org name"));
    for (input, needle) in [("-1", "negative"), ("abc", "not a plain decimal"), ("0.1.2", "")] {
        let out =
            aigate(&["prices", "set", "--provider", "qwen", "--model", "m", "--input", input, "--output", "1"], &env);
        assert_eq!(out.status.code(), Some(1), "{input}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains("input") && err.contains(needle), "{input}: {err}");
    }
    // The tables survived every attempt.
    let out = aigate(&["keys", "create", "--org", "ok-org"], &env);
    assert!(out.status.success());

    // An unreachable database at start: a clear error and exit code, no panic.
    let out = aigate(
        &["serve"],
        &[
            ("AIGATE_DATA_DIR", &data),
            ("DATABASE_URL", "postgres://aigate@127.0.0.1:1/none"),
            ("AIGATE_LISTEN", "127.0.0.1:0"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to the database"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
