//! Non-stream calls through the qwen and openai plugins, and provider errors.

use aigate_testkit::{MockDashScope, Scenario, errors};
use serde_json::json;

use crate::harness::{JsonBody, assert_error, chat_body, start};

#[tokio::test]
async fn qwen_json_call_translates_both_ways_and_uses_the_provider_key() {
    let gw = start().await;
    let response = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert!(h.contains_key("x-request-id"));
    assert_eq!(h["x-aigate-provider"], "qwen");
    assert!(h["x-aigate-plugin"].to_str().unwrap().starts_with("qwen@"));
    let body = response.json_value().await;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "qwen:qwen-turbo");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from qwen-turbo! You said: Who are you?");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);

    let sent = gw.mock.requests();
    assert_eq!(sent.len(), 1);
    let upstream = &sent[0];
    assert_eq!(upstream.method, "POST");
    assert_eq!(upstream.path, "/compatible-mode/v1/chat/completions");
    assert_eq!(upstream.header("authorization"), Some(format!("Bearer {}", MockDashScope::API_KEY).as_str()));
    let raw = String::from_utf8_lossy(&upstream.body).to_string();
    assert!(!raw.contains(&gw.key));
    assert!(
        upstream.headers.values().all(|v| !v.to_str().unwrap_or_default().contains(&gw.key)),
        "the client's key leaked upstream"
    );
    let json = upstream.json();
    assert_eq!(json["model"], "qwen-turbo", "the provider's model name, without the prefix");
    assert_eq!(json["messages"][0]["content"], "Who are you?");
}

#[tokio::test]
async fn alias_resolves_to_its_provider_model() {
    let gw = start().await;
    let body = gw.chat(&chat_body("turbo")).await.json_value().await;
    assert_eq!(body["model"], "qwen:qwen-turbo");
    assert_eq!(gw.mock.requests()[0].json()["model"], "qwen-turbo");
}

#[tokio::test]
async fn openai_plugin_json_call() {
    let gw = start().await;
    let mut req = chat_body("openai:qwen-plus");
    req["temperature"] = json!(0.5);
    req["max_tokens"] = json!(50);
    req["enable_thinking"] = json!(false);
    let response = gw.chat(&req).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["x-aigate-plugin"].to_str().unwrap().starts_with("openai@"));
    let body = response.json_value().await;
    assert_eq!(body["model"], "openai:qwen-plus");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from qwen-plus! You said: Who are you?");
    let upstream = gw.mock.requests()[0].json();
    assert_eq!(upstream["model"], "qwen-plus");
    assert_eq!(upstream["temperature"], 0.5);
    assert_eq!(upstream["max_tokens"], 50);
    assert_eq!(upstream["enable_thinking"], false, "extras pass through");
}

#[tokio::test]
async fn tool_call_and_reasoning_and_cached_usage_are_mapped() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::ToolCall);
    let mut req = chat_body("qwen:qwen-plus");
    req["tools"] = json!([{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let body = gw.chat(&req).await.json_value().await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_current_weather");
    assert_eq!(call["function"]["arguments"], aigate_testkit::answer::TOOL_ARGUMENTS);
    assert_eq!(gw.mock.requests()[0].json()["tools"][0]["function"]["name"], "get_current_weather");

    // The tool result goes back as a tool message.
    let follow_up = json!({"model": "qwen:qwen-plus", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "get_current_weather", "arguments": call["function"]["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"}
    ]});
    assert_eq!(gw.chat(&follow_up).await.status(), 200);
    let sent = gw.mock.requests()[1].json();
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], call["id"]);
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["messages"][2]["tool_call_id"], call["id"]);

    gw.mock.enqueue(Scenario::Reasoning);
    let body = gw.chat(&chat_body("qwen:qwen-plus")).await.json_value().await;
    assert_eq!(body["choices"][0]["message"]["reasoning_content"], aigate_testkit::answer::REASONING);
    assert!(body["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0);

    gw.mock.enqueue(Scenario::CachedUsage);
    let body = gw.chat(&chat_body("qwen:qwen-plus")).await.json_value().await;
    assert!(body["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn provider_errors_map_to_openai_errors() {
    let gw = start().await;

    let e = errors::invalid_api_key();
    gw.mock.enqueue(Scenario::Error { status: 401, body: e.body.clone() });
    let body = assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 502, "provider_auth_failed").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("QWEN_API_KEY"), "names the credential: {body}");

    let e = errors::rate_limited();
    gw.mock.enqueue(Scenario::Error { status: 429, body: e.body.clone() });
    let body = assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 429, "limit_requests").await;
    assert_eq!(body["error"]["type"], "provider_rate_limit_error", "the provider's limit, not ours");

    let e = errors::context_length_exceeded();
    gw.mock.enqueue(Scenario::Error { status: 400, body: e.body.clone() });
    assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 400, "context_length_exceeded").await;

    let e = errors::internal();
    gw.mock.enqueue(Scenario::Error { status: 500, body: e.body.clone() });
    assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 502, "internal_error").await;

    gw.mock.enqueue(Scenario::Raw {
        status: 502,
        content_type: "text/html".into(),
        body: "<html>Bad Gateway</html>".into(),
    });
    let response = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(response.status(), 502);
    let body = response.json_value().await;
    assert!(body["error"]["message"].is_string());
}

#[tokio::test]
async fn a_hanging_provider_is_a_504() {
    let gw = crate::harness::start_with(crate::harness::Setup {
        toml: "[upstream]\nfirst_byte_timeout_ms = 300\n".into(),
        ..Default::default()
    })
    .await;
    // The harness appends to [aliases]; an [upstream] table after it is its own table.
    gw.mock.enqueue(Scenario::Hang);
    assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 504, "upstream_timeout").await;
}

#[tokio::test]
async fn health_answers() {
    let gw = start().await;
    let (status, body) = gw.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["plugins"], 3);
}
