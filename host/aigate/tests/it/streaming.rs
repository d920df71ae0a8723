//! SSE streams: chunks relayed as they arrive, usage, errors, disconnects.

use std::time::Duration;

use aigate_testkit::{Scenario, errors};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{assert_error, sse_payloads, start, stream_body};

fn content_of(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[tokio::test]
async fn qwen_stream_with_usage() {
    let gw = start().await;
    let response = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("x-request-id"));
    let events = sse_payloads(response).await;
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    let chunks = &events[..events.len() - 1];
    assert!(chunks.len() >= 4, "{events:?}");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "qwen:qwen-turbo"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content_of(chunks), "Hello from qwen-turbo! You said: Who are you?");
    let finish = chunks.iter().find(|c| c["choices"][0]["finish_reason"] == "stop");
    assert!(finish.is_some(), "a finish_reason chunk");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]), "the usage chunk has no choices");
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null()), "usage null on every other chunk");
    let upstream = gw.mock.requests()[0].json();
    assert_eq!(upstream["stream"], true);
    assert_eq!(upstream["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn usage_is_always_requested_upstream_but_only_shown_when_asked() {
    let gw = start().await;
    let events = sse_payloads(gw.chat(&stream_body("qwen:qwen-turbo", false)).await).await;
    assert_eq!(gw.mock.requests()[0].json()["stream_options"]["include_usage"], true, "the gateway meters every call");
    let chunks = &events[..events.len() - 1];
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none() && !c["choices"].as_array().unwrap().is_empty()),
        "{events:?}"
    );
}

#[tokio::test]
async fn openai_plugin_stream() {
    let gw = start().await;
    let events = sse_payloads(gw.chat(&stream_body("openai:qwen-max", true)).await).await;
    let chunks = &events[..events.len() - 1];
    assert_eq!(content_of(chunks), "Hello from qwen-max! You said: Who are you?");
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(gw.mock.requests()[0].json()["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn reasoning_and_tool_call_deltas_stream() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::Reasoning);
    let events = sse_payloads(gw.chat(&stream_body("qwen:qwen-plus", true)).await).await;
    let reasoning: String =
        events.iter().filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str()).collect();
    assert_eq!(reasoning, aigate_testkit::answer::REASONING);
    let usage = &events[events.len() - 2]["usage"];
    assert!(usage["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0);

    gw.mock.enqueue(Scenario::ToolCall);
    let mut req = stream_body("qwen:qwen-plus", true);
    req["tools"] = json!([{"type": "function", "function": {"name": "get_current_weather"}}]);
    let events = sse_payloads(gw.chat(&req).await).await;
    let calls: Vec<&Value> = events.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(calls[0]["function"]["name"], "get_current_weather");
    assert!(calls[0]["id"].is_string());
    let args: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    assert_eq!(args, aigate_testkit::answer::TOOL_ARGUMENTS);
    assert!(events.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn sse_framed_4xx_on_a_stream_is_a_json_error_with_its_status() {
    let gw = start().await;
    let e = errors::invalid_parameter("Range of max_tokens should be [1, 8192]");
    gw.mock.enqueue(Scenario::Error { status: 400, body: e.body.clone() });
    let body = assert_error(gw.chat(&stream_body("qwen:qwen-turbo", true)).await, 400, "invalid_parameter_error").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("Range of max_tokens"));
}

#[tokio::test]
async fn error_mid_stream_ends_the_stream_with_an_error_event() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::MidStreamError);
    let response = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    assert_eq!(response.status(), 200, "content was already sent");
    let events = sse_payloads(response).await;
    let last = events.last().unwrap();
    // DashScope's data_inspection_failed is OpenAI's content_filter.
    assert_eq!(last["error"]["code"], "content_filter", "{events:?}");
    assert!(last["error"]["message"].as_str().unwrap().contains("inappropriate"));
    assert!(!content_of(&events).is_empty(), "partial content came first");
}

#[tokio::test]
async fn flat_error_event_before_content_is_an_http_error() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::FlatErrorEvent);
    let response = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    assert!(response.status().is_client_error() || response.status().is_server_error(), "{}", response.status());
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "invalid_model_error");
}

#[tokio::test]
async fn chunks_are_relayed_as_they_arrive_not_buffered() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(150), chunks: 8 });
    let response = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("chunk-1") {
        let bytes = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    // The first content reached the client while the provider was still sending.
    assert_eq!(gw.mock.streams_completed(), 0, "the upstream stream is still open");
    while body.next().await.is_some() {}
    assert!(crate::harness::eventually(Duration::from_secs(2), async || gw.mock.streams_completed() == 1).await);
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_call() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(100), chunks: 100 });
    let response = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    let mut body = response.bytes_stream();
    let _ = body.next().await;
    drop(body);
    assert!(gw.mock.wait_streams_cancelled(1, Duration::from_secs(5)).await, "the upstream connection was dropped");
    assert_eq!(gw.mock.streams_completed(), 0);
}
