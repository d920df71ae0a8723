//! Anthropic's Messages API as an inbound API (`/v1/messages`, issue 11): the official
//! Anthropic Python SDK against the gateway, and the wire facts it relies on.

use std::path::Path;

use aigate_testkit::{Scenario, errors};
use serde_json::{Value, json};

use crate::harness::{JsonBody, TestGateway, start, unique};

pub(crate) fn sdk_available() -> bool {
    std::process::Command::new("python3").args(["-c", "import anthropic"]).status().is_ok_and(|s| s.success())
}

async fn post(gw: &TestGateway, path: &str, body: &Value, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut r = gw
        .http
        .post(gw.url(path))
        .header("x-api-key", &gw.key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(serde_json::to_vec(body).unwrap()).send().await.unwrap()
}

fn message(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 128,
        "system": [{"type": "text", "text": "You are a helpful assistant."}],
        "messages": [{"role": "user", "content": "Who are you?"}],
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_against_qwen() {
    if !sdk_available() {
        assert!(
            std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "python3 with the `anthropic` package is required here (pip install anthropic)"
        );
        eprintln!("skipped: python3 with the `anthropic` package is not installed");
        return;
    }
    let gw = start().await;
    for scenario in [Scenario::Normal, Scenario::Normal, Scenario::ToolCall, Scenario::Normal] {
        gw.mock.enqueue(scenario);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/anthropic_sdk_check.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&gw.base)
        .arg("qwen:qwen-turbo")
        .arg(&gw.key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("error: 404 not_found_error"), "{stdout}");
    assert_eq!(gw.mock.chat_requests(), 4, "message, stream, tool call, tool result");
    // The tool result reached qwen as a tool message answering the call.
    let last = gw.mock.requests().into_iter().filter(|r| r.path.ends_with("/chat/completions")).last().unwrap();
    let sent = last.json();
    let roles: Vec<&str> = sent["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool"], "{sent}");
}

#[tokio::test]
async fn a_message_has_anthropics_shape_and_errors_theirs() {
    let gw = start().await;
    let r = post(&gw, "/v1/messages", &message("qwen:qwen-turbo", false), &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.headers()["x-aigate-model"], "qwen:qwen-turbo");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = r.json_value().await;
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0, "{body}");
    // The ledger records the inbound API.
    let path = format!("/admin/requests/{request_id}?org=test");
    let recorded =
        crate::harness::eventually(std::time::Duration::from_secs(5), async || gw.admin_json(&path).await.0 == 200);
    assert!(recorded.await);
    assert_eq!(gw.admin_json(&path).await.1["attempts"][0]["api"], "messages");

    // Errors: Anthropic's body and statuses, on this route only.
    let missing = json!({"model": "qwen:qwen-turbo", "messages": [{"role": "user", "content": "x"}]});
    let r = post(&gw, "/v1/messages", &missing, &[]).await;
    assert_eq!(r.status(), 400);
    let body = r.json_value().await;
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": body["error"]["message"]}})
    );
    let r = gw.http.post(gw.url("/v1/messages")).header("x-api-key", "sk-aig-wrong").body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json_value().await["error"]["type"], "authentication_error");
    gw.mock.enqueue(errors::model_unavailable());
    let r = post(&gw, "/v1/messages", &message("qwen:qwen-turbo", false), &[]).await;
    assert_eq!(r.status(), 529, "a provider overload is Anthropic's 529");
    assert_eq!(r.json_value().await["error"]["type"], "overloaded_error");
}

fn event_names(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix("event: ")).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_stream_is_anthropics_named_events_and_replays_the_same() {
    let gw = start().await;
    let key = unique("messages-stream");
    let r = post(&gw, "/v1/messages", &message("qwen:qwen-turbo", true), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = r.text().await.unwrap();
    let names = event_names(&first);
    assert_eq!(names.first().map(String::as_str), Some("message_start"), "{first}");
    assert_eq!(names.last().map(String::as_str), Some("message_stop"), "{first}");
    for name in ["content_block_start", "content_block_delta", "content_block_stop", "message_delta"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let delta: Value = first
        .split("\n\n")
        .find(|e| e.starts_with("event: message_delta"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0, "{delta}");

    // An idempotent retry replays the same Anthropic events without calling the provider.
    let again = post(&gw, "/v1/messages", &message("qwen:qwen-turbo", true), &[("idempotency-key", &key)]).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first);
    assert_eq!(gw.mock.chat_requests(), 1);
}

#[tokio::test]
async fn count_tokens_answers_from_the_estimate_without_calling_a_provider() {
    let gw = start().await;
    let body = json!({"model": "qwen:qwen-turbo", "messages": [{"role": "user", "content": "x".repeat(400)}]});
    let r = post(&gw, "/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json_value().await, json!({"input_tokens": 100}));
    assert_eq!(gw.mock.chat_requests(), 0);
}
