//! Bounded resources and idempotency semantics (issue 8): stream deadlines
//! that hold when the client stops reading, concurrent-stream caps, bounded
//! idempotent captures, lease renewal during silent streams, retryable
//! provider failures released.

use std::time::Duration;

use aigate_testkit::{Scenario, errors};
use futures_util::StreamExt;
use serde_json::Value;

use crate::harness::{
    JsonBody, Setup, TestGateway, assert_error, chat_body, eventually, sse_payloads, start_with, stream_body, unique,
};

async fn post(gw: &TestGateway, key: &str, body: &Value, idem: Option<&str>) -> reqwest::Response {
    gw.post_as(key, body, idem).await
}

async fn ledger(gw: &TestGateway) -> Value {
    let (_, body) = gw.admin_json("/admin/usage?org=test").await;
    body["totals"][0].clone()
}

async fn new_key(gw: &TestGateway) -> String {
    let store = &gw.gateway.as_ref().unwrap().state().store;
    aigate::admin::create_key(store, &aigate::admin::CreateKey { org: "test".into(), ..Default::default() })
        .await
        .unwrap()
        .key
}

fn with(toml: &str) -> Setup {
    Setup { toml: toml.into(), ..Default::default() }
}

#[tokio::test]
async fn a_silent_provider_ends_the_stream_at_the_idle_timeout() {
    let gw = start_with(with("[streams]\nidle_timeout_ms = 300\n")).await;
    gw.mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(3000), chunks: 3 });
    let started = std::time::Instant::now();
    let response = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    // Silent before any content: no byte reached the client yet, so the attempt failed and,
    // with no other deployment, the client gets the timeout as an HTTP error.
    let body = assert_error(response, 504, "upstream_timeout").await;
    assert!(started.elapsed() < Duration::from_millis(2500), "ended by the idle timeout, not the provider");
    assert!(body["error"]["message"].as_str().unwrap().contains("next event"), "{body}");
    assert!(gw.mock.wait_streams_cancelled(1, Duration::from_secs(5)).await, "the upstream connection was dropped");
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_stream_and_frees_its_slot_claim_and_connection() {
    let gw = start_with(with("[streams]\nclient_stall_timeout_ms = 300\n[limits]\nkey_concurrent_streams = 1\n")).await;
    gw.mock.enqueue(Scenario::Endless { chunk_bytes: 16 * 1024 });
    let key = unique("stall");
    let response = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let _ = body.next().await;
    // The client holds its response open and reads nothing more.
    assert!(
        gw.mock.wait_streams_cancelled(1, Duration::from_secs(20)).await,
        "the stalled stream was ended and its upstream connection dropped"
    );
    // Its stream slot is free (the cap is 1) ...
    let other = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), None).await;
    assert_eq!(other.status(), 200);
    assert_eq!(sse_payloads(other).await.last().unwrap(), "[DONE]");
    // ... its claim was released: a retry reaches the provider ...
    let retry = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    assert_eq!(retry.status(), 200);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(sse_payloads(retry).await.last().unwrap(), "[DONE]");
    assert_eq!(gw.mock.chat_requests(), 3);
    // ... and the partial stream was metered.
    assert!(
        eventually(Duration::from_secs(5), async || ledger(&gw).await["requests"] == 3).await,
        "{}",
        ledger(&gw).await
    );
    drop(body);
}

#[tokio::test]
async fn concurrent_streams_are_capped_per_key_and_per_org() {
    let gw = start_with(with("[limits]\nkey_concurrent_streams = 2\norg_concurrent_streams = 3\n")).await;
    let slow = || Scenario::SlowStream { chunk_interval: Duration::from_millis(100), chunks: 100 };
    let mut open = Vec::new();
    for _ in 0..2 {
        gw.mock.enqueue(slow());
        let r = gw.chat(&stream_body("qwen:qwen-turbo", false)).await;
        assert_eq!(r.status(), 200);
        open.push(r.bytes_stream());
    }
    let refused = gw.chat(&stream_body("qwen:qwen-turbo", false)).await;
    assert!(refused.headers().contains_key("retry-after"));
    let body = assert_error(refused, 429, "concurrent_streams_exceeded").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("API key"), "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // JSON calls do not take stream slots.
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200);

    let other_key = new_key(&gw).await;
    gw.mock.enqueue(slow());
    let third = post(&gw, &other_key, &stream_body("qwen:qwen-turbo", false), None).await;
    assert_eq!(third.status(), 200, "another key of the org has its own slots");
    let body = assert_error(
        post(&gw, &other_key, &stream_body("qwen:qwen-turbo", false), None).await,
        429,
        "concurrent_streams_exceeded",
    )
    .await;
    assert!(body["error"]["message"].as_str().unwrap().contains("organisation `test`"), "{body}");
    assert_eq!(gw.mock.chat_requests(), 4, "refused streams never reached the provider");

    // A stream that ends gives its slot back.
    drop(open.pop());
    assert!(
        eventually(Duration::from_secs(5), async || post(
            &gw,
            &other_key,
            &stream_body("qwen:qwen-turbo", false),
            None
        )
        .await
        .status()
            == 200)
        .await,
        "the slot was freed"
    );
    drop(third);
}

#[tokio::test]
async fn the_lease_is_renewed_while_a_stream_is_silent() {
    let gw = start_with(with("[idempotency]\nlease_ms = 300\n")).await;
    gw.mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(1500), chunks: 2 });
    let key = unique("silent");
    let body = stream_body("qwen:qwen-turbo", true);
    let first = post(&gw, &gw.key, &body, Some(&key)).await;
    assert_eq!(first.status(), 200);
    let mut stream = first.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("assistant") {
        seen.push_str(&String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()));
    }
    // The provider is silent, and the client reads nothing, for over three leases.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let retry = post(&gw, &gw.key, &body, Some(&key)).await;
    assert_error(retry, 409, "idempotency_key_in_progress").await;
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(seen.ends_with("data: [DONE]\n\n"));
    let replay = post(&gw, &gw.key, &body, Some(&key)).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(gw.mock.chat_requests(), 1, "never a second provider call");
}

#[tokio::test]
async fn retryable_provider_failures_are_released_and_final_answers_stored() {
    let gw = start_with(Setup::default()).await;
    for failure in [errors::rate_limited(), errors::internal(), errors::model_unavailable()] {
        let key = unique("retryable");
        gw.mock.enqueue(failure.clone());
        let first = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await;
        assert!(
            first.status().is_client_error() || first.status().is_server_error(),
            "{}: {}",
            failure.status,
            first.status()
        );
        let retry = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await;
        assert_eq!(retry.status(), 200, "a retry with the same key reaches the provider after {}", failure.status);
        assert!(retry.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!(gw.mock.chat_requests(), 6);

    // The same for a stream that fails before its first chunk.
    let key = unique("retryable-stream");
    gw.mock.enqueue(errors::rate_limited());
    assert_eq!(post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await.status(), 429);
    let retry = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    assert_eq!(sse_payloads(retry).await.last().unwrap(), "[DONE]");

    // A final answer inside a stream (a content filter) stays stored.
    let key = unique("final-stream");
    gw.mock.enqueue(Scenario::MidStreamError);
    let first = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await.text().await.unwrap();
    let replay = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), first);
    assert_eq!(gw.mock.chat_requests(), 9);
}

#[tokio::test]
async fn answers_larger_than_the_capture_bound_are_not_stored_and_say_so() {
    let gw = start_with(with("[idempotency]\nmax_stored_bytes = 300\n")).await;
    let key = unique("large-json");
    let first = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["idempotent-stored"], "false");
    let size = first.json_value().await.to_string().len();
    assert!(size > 300, "the answer ({size} bytes) is over the bound");
    let retry = post(&gw, &gw.key, &chat_body("qwen:qwen-turbo"), Some(&key)).await;
    assert!(retry.headers().get("idempotent-replayed").is_none(), "not stored: the retry ran again");

    let key = unique("large-stream");
    let first = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await.text().await.unwrap();
    assert!(first.contains("\n: idempotent-stored: false"), "{first}");
    assert!(first.ends_with("data: [DONE]\n\n"));
    let retry = post(&gw, &gw.key, &stream_body("qwen:qwen-turbo", true), Some(&key)).await;
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(gw.mock.chat_requests(), 4);

    // Small answers are still stored.
    let key = unique("small");
    let mut small = chat_body("qwen:qwen-turbo");
    small["max_tokens"] = serde_json::json!(1);
    let gw_small = start_with(with("[idempotency]\nmax_stored_bytes = 4096\n")).await;
    assert!(post(&gw_small, &gw_small.key, &small, Some(&key)).await.headers().get("idempotent-stored").is_none());
    assert_eq!(post(&gw_small, &gw_small.key, &small, Some(&key)).await.headers()["idempotent-replayed"], "true");
}
