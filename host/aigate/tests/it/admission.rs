//! Idempotency-Key, rate limits and budgets through the real gateway (issue 4),
//! in-process and across two gateways sharing Redis and Postgres.

use std::collections::BTreeMap;
use std::time::Duration;

use aigate_testkit::{MockDashScope, Scenario};
use serde_json::Value;

use crate::harness::{
    JsonBody, Setup, TestGateway, assert_error, chat_body, eventually, fresh_postgres, redis_url, start, start_with,
    start_with_mock, stream_body, unique,
};

async fn post(gw: &TestGateway, key: &str, body: &Value, idem: Option<&str>) -> reqwest::Response {
    gw.post_as(key, body, idem).await
}

async fn ledger_requests(gw: &TestGateway) -> u64 {
    let (_, body) = gw.admin_json("/admin/usage?org=test").await;
    body["totals"][0]["requests"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn replay_is_the_same_answer_without_calling_or_billing_again() {
    let gw = start().await;
    let key = unique("replay");
    let first = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let cost = first.headers()["x-aigate-cost"].clone();
    let first_body = first.text().await.unwrap();
    // The structured-field form names the same key.
    let again = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&format!("\"{key}\""))).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["x-aigate-cost"], cost);
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(gw.mock.chat_requests(), 1, "the provider was called once");
    assert!(eventually(Duration::from_secs(3), async || ledger_requests(&gw).await == 1).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ledger_requests(&gw).await, 1, "one usage record: the replay is not billed");
}

#[tokio::test]
async fn a_streamed_original_replays_as_the_same_stream() {
    let gw = start().await;
    let key = unique("stream");
    let first = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    let first_text = first.text().await.unwrap();
    let again = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "text/event-stream");
    assert_eq!(again.text().await.unwrap(), first_text);
    assert!(first_text.ends_with("data: [DONE]\n\n"));
    assert_eq!(gw.mock.chat_requests(), 1);
}

#[tokio::test]
async fn reuse_with_another_body_is_422_and_bad_keys_are_400() {
    let gw = start().await;
    let key = unique("reuse");
    assert_eq!(post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await.status(), 200);
    let mut other = chat_body("qwen:qwen-turbo");
    other["temperature"] = serde_json::json!(0.1);
    assert_error(post(&gw, &gw.key, &other, Some(&key)).await, 422, "idempotency_key_reused").await;
    assert_error(
        post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&"k".repeat(256))).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_error(post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some("tab\there")).await, 400, "invalid_parameter")
        .await;
    assert_eq!(gw.mock.chat_requests(), 1);
}

#[tokio::test]
async fn same_key_in_flight_is_409_with_retry_after() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::Delay { before_headers: Duration::from_millis(800), then: Box::new(Scenario::Normal) });
    let key = unique("inflight");
    let body = chat_body("qwen:qwen-turbo");
    let (first, second) = tokio::join!(post(&gw, &gw.key, &body, Some(&key)), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        post(&gw, &gw.key, &body, Some(&key)).await
    });
    assert_eq!(first.status(), 200);
    assert!(second.headers().contains_key("retry-after"));
    assert_error(second, 409, "idempotency_key_in_progress").await;
}

#[tokio::test]
async fn gateway_failures_release_the_key_and_provider_errors_are_stored() {
    let gw = start().await;
    let key = unique("fault");
    assert_eq!(post(&gw, &gw.key, &chat_body("faulty:trap"), Some(&key)).await.status(), 502);
    let again = post(&gw, &gw.key, &chat_body("faulty:trap"), Some(&key)).await;
    assert_eq!(again.status(), 502);
    assert!(again.headers().get("idempotent-replayed").is_none(), "a plugin fault is not stored: the client may retry");

    let key = unique("provider-error");
    gw.mock.enqueue(Scenario::Error { status: 400, body: aigate_testkit::errors::context_length_exceeded().body });
    assert_eq!(post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await.status(), 400);
    let replay = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(replay.headers()["idempotent-replayed"], "true", "the provider's answer is final");
    assert_eq!(gw.mock.chat_requests(), 1);
}

#[tokio::test]
async fn rpm_limit_refuses_with_openai_headers() {
    let gw = start().await;
    let store = &gw.gateway.as_ref().unwrap().state().store;
    let limited = aigate::admin::create_key(
        store,
        &aigate::admin::CreateKey { org: "test".into(), rpm: Some(3), ..Default::default() },
    )
    .await
    .unwrap()
    .key;
    for i in 0..3 {
        let r = post(&gw, &limited, &chat_body("qwen:qwen-turbo"), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], (2 - i).to_string().as_str());
        assert!(r.headers().contains_key("x-ratelimit-reset-requests"));
    }
    let r = post(&gw, &limited, &chat_body("qwen:qwen-turbo"), None).await;
    let h = r.headers().clone();
    let body = assert_error(r, 429, "rate_limit_exceeded").await;
    assert_eq!(body["error"]["type"], "rate_limit_error", "ours, not the provider's");
    assert!(h.contains_key("retry-after") && h.contains_key("retry-after-ms"));
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert_eq!(gw.mock.chat_requests(), 3, "the refused call never reached the provider");
}

#[tokio::test]
async fn tokens_per_minute_settle_to_actual_usage() {
    let gw = start().await;
    let store = &gw.gateway.as_ref().unwrap().state().store;
    let key = aigate::admin::create_key(
        store,
        &aigate::admin::CreateKey { org: "test".into(), tpm: Some(2000), ..Default::default() },
    )
    .await
    .unwrap()
    .key;
    let mut body = chat_body("qwen:qwen-turbo");
    body["max_tokens"] = serde_json::json!(900);
    let r = post(&gw, &key, &body, None).await;
    assert_eq!(r.status(), 200);
    let reserved_left: u64 = r.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
    assert!(reserved_left <= 1100, "the estimate (prompt + max_tokens) was reserved: {reserved_left}");
    let used = r.json_value().await["usage"]["total_tokens"].as_u64().unwrap();
    // After settlement only the actual usage counts: a second call sees nearly the whole budget.
    let second_left = eventually(Duration::from_secs(2), async || {
        let r = post(&gw, &key, &chat_body("qwen:qwen-turbo"), None).await;
        let left: u64 = r.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
        left + 2 * 1024 >= 2000 + used || left > 1500
    })
    .await;
    assert!(second_left, "the reservation settled down to the {used} tokens used");
}

#[tokio::test]
async fn budget_refuses_calls_after_the_cap() {
    let gw = start_with(Setup { toml: "[limits]\nbudget_cache_ms = 50\n".into(), ..Default::default() }).await;
    let state = gw.gateway.as_ref().unwrap().state();
    let budget = aigate::admin::OrgSettings { monthly_budget: Some("0.000001".into()), ..Default::default() };
    aigate::admin::update_org(&state.store, "test", &budget, "USD").await.unwrap();
    state.auth.forget_all();
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200, "under the cap");
    // Once that call's cost is in the ledger, the next call would start over the cap.
    assert!(
        eventually(Duration::from_secs(5), async || gw.chat(&chat_body("qwen:qwen-turbo")).await.status() == 429).await,
        "refused after the cap"
    );
    let body = assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 429, "budget_exceeded").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("budget"));
}

/// Two gateways on one Postgres and one Redis (each its own state, as two
/// replicas would be).
async fn two_replicas(toml: &str) -> Option<(TestGateway, TestGateway)> {
    let db = fresh_postgres()?;
    let redis = redis_url()?;
    let prefix = format!("{}:", unique("aigate-it"));
    let env: BTreeMap<String, String> =
        [("DATABASE_URL".to_owned(), db), ("REDIS_URL".to_owned(), redis), ("AIGATE_REDIS_PREFIX".to_owned(), prefix)]
            .into();
    let setup = || Setup { env: env.clone(), toml: toml.to_owned(), ..Default::default() };
    let a = start_with_mock(setup(), MockDashScope::start().await).await;
    let b = start_with_mock(setup(), MockDashScope::start().await).await;
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_twenty_concurrent_requests_two_replicas_one_call() {
    let Some((a, b)) = two_replicas("").await else { return };
    let key = unique("shared");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (http, url, api_key, idem) = (gw.http.clone(), gw.url("/v1/chat/completions"), a.key.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(api_key)
                .header("content-type", "application/json")
                .header("idempotency-key", idem)
                .body(serde_json::to_vec(&chat_body("qwen:qwen-turbo")).unwrap())
                .send()
                .await
                .unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (r.status().as_u16(), replayed, r.text().await.unwrap())
        }));
    }
    let mut originals = 0;
    for t in tasks {
        let (status, replayed, body) = t.await.unwrap();
        match (status, replayed) {
            (200, false) => originals += 1,
            (200, true) | (409, false) => {}
            other => panic!("unexpected {other:?}: {body}"),
        }
    }
    assert_eq!(originals, 1, "exactly one request ran");
    assert_eq!(a.mock.chat_requests() + b.mock.chat_requests(), 1, "exactly one provider call");
    assert!(eventually(Duration::from_secs(5), async || ledger_requests(&a).await == 1).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ledger_requests(&b).await, 1, "exactly one usage record, seen from both replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_sixty_across_two_replicas_admits_at_most_sixty_of_two_hundred() {
    let Some((a, b)) = two_replicas("[limits]\nkey_rpm = 60\n").await else { return };
    let burst = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (http, url, api_key) = (gw.http.clone(), gw.url("/v1/chat/completions"), a.key.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(api_key)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&chat_body("qwen:qwen-turbo")).unwrap())
                .send()
                .await
                .unwrap();
            let h = r.headers().clone();
            (r.status().as_u16(), h)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (status, h) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(h.contains_key("retry-after") && h.contains_key("x-ratelimit-limit-requests"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // GCRA bound: at most limit + elapsed × rate (60 per minute = 1 per second).
    let bound = 60 + burst.elapsed().as_secs_f64().ceil() as usize;
    assert!(ok <= bound, "admitted {ok} of 200 with rpm = 60 (bound {bound})");
    assert!(ok >= 60, "the whole allowance was usable: {ok}");
    assert_eq!(ok + limited, 200);
}

#[tokio::test]
async fn redis_unreachable_fails_closed_for_idempotency_and_open_for_limits() {
    // A port nothing listens on: the gateway still starts (connections are lazy).
    let gw = start_with(Setup {
        env: [("REDIS_URL".to_owned(), "redis://127.0.0.1:1".to_owned())].into(),
        toml: "[limits]\nkey_rpm = 100\n".into(),
        ..Default::default()
    })
    .await;
    let r = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), None).await;
    assert_eq!(r.status(), 200, "limits fail open by default (limits.fail_open)");
    let r = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&unique("down"))).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 503, "store_unavailable").await;
    assert_eq!(gw.mock.chat_requests(), 1, "the idempotent request was not sent");

    let closed = start_with(Setup {
        env: [("REDIS_URL".to_owned(), "redis://127.0.0.1:1".to_owned())].into(),
        toml: "[limits]\nkey_rpm = 100\nfail_open = false\n".into(),
        ..Default::default()
    })
    .await;
    assert_error(post(&closed, &closed.key, &chat_body("qwen:qwen-turbo"), None).await, 503, "limits_unavailable")
        .await;
}
