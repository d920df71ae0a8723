//! `GET /metrics` and the health routes (issue 12): each metric family after the calls that
//! move it, labels bounded whatever clients type, the admin token on the main listener, the
//! unauthenticated metrics listener, and readiness.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    ADMIN_TOKEN, Setup, TestGateway, artifact, chat_body, eventually, start, start_with, stream_body,
};

async fn metrics(gw: &TestGateway) -> String {
    let r = gw.http.get(gw.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    r.text().await.unwrap()
}

/// The value of the one sample whose name and labels contain every part of `wanted`.
fn sample(text: &str, name: &str, wanted: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| wanted.iter().all(|w| l.contains(w)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn series(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("aigate_")).count()
}

#[tokio::test]
async fn every_family_moves_with_the_calls_that_make_it() {
    let gw = start().await;
    let key = aigate::admin::create_key(
        &gw.gateway.as_ref().unwrap().state().store,
        &aigate::admin::CreateKey { org: "test".into(), rpm: Some(1), ..Default::default() },
    )
    .await
    .unwrap()
    .key;
    // A JSON call, a stream, an idempotent replay, a plugin fault, a refusal.
    assert_eq!(gw.post_as(&gw.key, &chat_body("qwen:qwen-turbo"), Some("m-1")).await.status(), 200);
    assert_eq!(gw.post_as(&gw.key, &chat_body("qwen:qwen-turbo"), Some("m-1")).await.status(), 200);
    let r = gw.chat(&stream_body("qwen:qwen-plus", true)).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    assert_eq!(gw.chat(&chat_body("faulty:trap")).await.status(), 502);
    assert_eq!(gw.post_as(&key, &chat_body("qwen:qwen-turbo"), None).await.status(), 200);
    assert_eq!(gw.post_as(&key, &chat_body("qwen:qwen-turbo"), None).await.status(), 429);

    let text = metrics(&gw).await;
    let requests = |labels: &[&str]| sample(&text, "aigate_requests_total", labels).unwrap_or(0.0);
    assert_eq!(
        requests(&[
            r#"api="chat_completions""#,
            r#"provider="qwen""#,
            r#"model="qwen-turbo""#,
            r#"status_class="2xx""#
        ]),
        2.0,
        "{text}"
    );
    // The replay called no provider.
    assert_eq!(requests(&[r#"provider="none""#, r#"status_class="2xx""#]), 1.0, "{text}");
    assert_eq!(requests(&[r#"model="qwen-plus""#, r#"status_class="2xx""#]), 1.0, "{text}");
    assert_eq!(requests(&[r#"provider="none""#, r#"status_class="4xx""#]), 1.0, "the refusal: {text}");
    assert_eq!(requests(&[r#"status_class="5xx""#]), 1.0, "the fault: {text}");
    assert!(text.contains(r#"aigate_request_duration_seconds_bucket{api="chat_completions",model="qwen-turbo",provider="qwen",le="0.0001"}"#), "{text}");
    assert_eq!(
        sample(&text, "aigate_provider_attempts_total", &[r#"model="qwen-turbo""#, r#"outcome="ok""#]),
        Some(2.0)
    );
    assert!(
        sample(&text, "aigate_time_to_first_token_seconds_count", &[r#"model="qwen-plus""#]) == Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "aigate_provider_duration_seconds_count", &[r#"model="qwen-turbo""#]) == Some(2.0), "{text}");
    assert!(sample(&text, "aigate_tokens_total", &[r#"model="qwen-turbo""#, r#"type="input""#]).unwrap() > 0.0);
    assert!(sample(&text, "aigate_tokens_total", &[r#"model="qwen-turbo""#, r#"type="output""#]).unwrap() > 0.0);
    assert!(sample(&text, "aigate_billed_cost_total", &[r#"currency="USD""#]).unwrap() > 0.0, "{text}");
    assert_eq!(sample(&text, "aigate_limit_refusals_total", &[r#"kind="rate_limit_exceeded""#]), Some(1.0));
    assert_eq!(sample(&text, "aigate_idempotency_total", &[r#"outcome="claimed""#]), Some(1.0));
    assert_eq!(sample(&text, "aigate_idempotency_total", &[r#"outcome="replayed""#]), Some(1.0));
    assert!(sample(&text, "aigate_plugin_instantiations_total", &[r#"plugin="qwen""#]).unwrap() >= 3.0);
    assert_eq!(sample(&text, "aigate_plugin_faults_total", &[r#"plugin="faulty""#, r#"kind="trap""#]), Some(1.0));
    assert_eq!(sample(&text, "aigate_plugin_info", &[r#"plugin="qwen""#, r#"contract="0.3.0""#]), Some(1.0));
    assert!(sample(&text, "aigate_plugin_reloads_total", &[r#"result="ok""#]).unwrap() >= 3.0, "{text}");
    assert!(sample(&text, "aigate_usage_queue_depth", &[]).is_some(), "{text}");
    assert!(sample(&text, "aigate_usage_spooled_batches", &[]).is_some(), "{text}");
    assert!(text.contains("# TYPE aigate_store_errors_total counter"), "{text}");
}

#[tokio::test]
async fn a_fallback_and_a_reload_are_counted() {
    let gw = start().await;
    let body = json!({"model": "faulty:trap", "messages": [{"role": "user", "content": "x"}], "fallbacks": ["qwen:qwen-turbo"]});
    assert_eq!(gw.chat(&body).await.status(), 200);
    let before = sample(&metrics(&gw).await, "aigate_plugin_reloads_total", &[r#"result="failed""#]).unwrap_or(0.0);
    std::fs::write(gw.plugins_dir.path().join("broken.wasm"), b"not a component").unwrap();
    let refused = eventually(Duration::from_secs(5), async || {
        sample(&metrics(&gw).await, "aigate_plugin_reloads_total", &[r#"result="failed""#]).unwrap_or(0.0) > before
    });
    assert!(refused.await, "the refused file is counted");
    let text = metrics(&gw).await;
    assert_eq!(
        sample(&text, "aigate_fallbacks_total", &[r#"api="chat_completions""#]),
        Some(1.0),
        "{}",
        text.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket")).collect::<Vec<_>>().join("\n")
    );
    // The plugin faulted before calling its provider: a fault, not a provider attempt.
    assert_eq!(sample(&text, "aigate_plugin_faults_total", &[r#"plugin="faulty""#, r#"kind="trap""#]), Some(1.0));
    assert!(sample(&text, "aigate_provider_attempts_total", &[r#"provider="faulty""#]).is_none());
}

#[tokio::test]
async fn a_thousand_made_up_model_names_mint_no_series() {
    let gw = start().await;
    // The openai provider of the tests is open to any model (`models = ["*"]`): each of these
    // reaches the provider, which does not know it.
    let warm = |n: usize| chat_body(&format!("openai:made-up-{n}"));
    gw.chat(&warm(0)).await;
    gw.chat(&chat_body("nobody:at-all")).await;
    let before = series(&metrics(&gw).await);
    for n in 1..=1000 {
        let model = if n % 2 == 0 { format!("openai:made-up-{n}") } else { format!("nobody{n}:x{n}") };
        gw.chat(&chat_body(&model)).await;
    }
    let text = metrics(&gw).await;
    assert_eq!(series(&text), before, "{text}");
    assert!(!text.contains("made-up"), "no client-typed name in a label");
    let attempts = [r#"provider="openai""#, r#"model="other""#, r#"outcome="error""#];
    assert!(sample(&text, "aigate_provider_attempts_total", &attempts).unwrap() >= 500.0, "{text}");
}

#[tokio::test]
async fn the_main_listener_needs_the_admin_token_and_the_metrics_listener_does_not() {
    let mut setup = Setup::default();
    setup.env.insert("AIGATE_METRICS_LISTEN".into(), "127.0.0.1:0".into());
    let gw = start_with(setup).await;
    let r = gw.http.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = gw.http.get(gw.url("/metrics")).bearer_auth(&gw.key).send().await.unwrap();
    assert_eq!(r.status(), 401, "an API key is not the admin token");
    let addr = gw.gateway.as_ref().unwrap().metrics_addr().unwrap();
    let r = gw.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("# TYPE aigate_plugin_info gauge"));
    // Only metrics there.
    assert_eq!(gw.http.get(format!("http://{addr}/v1/models")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn readiness_names_what_is_missing() {
    let gw = start().await;
    assert_eq!(gw.get_json("/health/live").await.0, 200);
    let (status, body) = gw.get_json("/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    let empty = start_with(Setup { plugins: vec![], ..Setup::default() }).await;
    let (status, body) = empty.get_json("/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["failing"]["plugins"].is_string(), "{body}");
    assert!(body["failing"].get("database").is_none(), "{body}");
    assert_eq!(empty.get_json("/health/live").await.0, 200);
    // Loading a plugin makes it ready.
    std::fs::copy(artifact("qwen.wasm"), empty.plugins_dir.path().join("qwen.wasm")).unwrap();
    let ready = eventually(Duration::from_secs(5), async || empty.get_json("/health/ready").await.0 == 200);
    assert!(ready.await);
}
