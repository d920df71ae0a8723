//! MockAnthropic over real HTTP: the Messages API shapes of reference section 5.

use aigate_testkit::anthropic::{LISTED_MODELS, TOOL_PREAMBLE};
use aigate_testkit::{AnthropicError, AnthropicScenario, MockAnthropic, answer, sse};
use serde_json::{Value, json};

use crate::client;

async fn send(mock: &MockAnthropic, body: &Value, key: Option<&str>, version: bool) -> reqwest::Response {
    let mut req = client().post(format!("{}/messages", mock.base_url())).header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    if version {
        req = req.header("anthropic-version", "2023-06-01");
    }
    req.body(body.to_string()).send().await.unwrap()
}

async fn post(mock: &MockAnthropic, body: &Value) -> reqwest::Response {
    send(mock, body, Some(MockAnthropic::API_KEY), true).await
}

fn hello(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are a helpful assistant.",
        "messages": [{"role": "user", "content": "Who are you?"}],
        "stream": stream,
    })
}

/// The same counts as the DashScope mock's for the OpenAI form of this request: 40 chars.
const HELLO_INPUT_TOKENS: u64 = 10;
const HELLO_ANSWER: &str = "Hello from claude-sonnet-4-5! You said: Who are you?";

async fn error_of(resp: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let request_id = resp.headers()["request-id"].to_str().unwrap().to_owned();
    let body: Value = crate::json(resp).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn json_answer_has_the_messages_shape_and_exact_usage() {
    let mock = MockAnthropic::start().await;
    let resp = post(&mock, &hello(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["request-id"].to_str().unwrap().starts_with("req_"));
    let text = resp.text().await.unwrap();
    assert!(text.starts_with(r#"{"id":"msg_01"#), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let words = answer::words(HELLO_ANSWER);
    assert_eq!(
        body,
        json!({
            "id": body["id"], "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": HELLO_ANSWER}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": HELLO_INPUT_TOKENS, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": words},
        })
    );
    let recorded = mock.messages_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].header("x-api-key"), Some(MockAnthropic::API_KEY));
    assert_eq!(recorded[0].json(), hello(false));
}

#[tokio::test]
async fn stream_is_the_named_event_sequence() {
    let mock = MockAnthropic::start().await;
    let resp = post(&mock, &hello(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
    let events = sse::parse(resp.bytes().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    let pieces = answer::pieces(HELLO_ANSWER);
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", pieces.len()));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let data: Vec<Value> = events.iter().map(|e| e.json().unwrap()).collect();
    for (name, value) in names.iter().zip(&data) {
        assert_eq!(value["type"], *name, "the data names its event");
    }
    assert_eq!(data[0]["message"]["content"], json!([]));
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], HELLO_INPUT_TOKENS);
    assert_eq!(data[1]["content_block"], json!({"type": "text", "text": ""}));
    let text: String = data.iter().filter_map(|d| d.pointer("/delta/text").and_then(Value::as_str)).collect();
    assert_eq!(text, HELLO_ANSWER);
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"], json!({"stop_reason": "end_turn", "stop_sequence": null}));
    assert_eq!(delta["usage"], json!({"output_tokens": answer::words(HELLO_ANSWER)}));
}

#[tokio::test]
async fn max_tokens_cuts_the_answer() {
    let mock = MockAnthropic::start().await;
    let mut body = hello(false);
    body["max_tokens"] = json!(2);
    let answer: Value = crate::json(post(&mock, &body).await).await;
    assert_eq!(answer["content"][0]["text"], "Hello from");
    assert_eq!(answer["stop_reason"], "max_tokens");
    assert_eq!(answer["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn tool_call_json_and_stream() {
    let mock = MockAnthropic::start().await;
    let mut body = hello(false);
    body["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    mock.enqueue(AnthropicScenario::ToolCall);
    let answer_json: Value = crate::json(post(&mock, &body).await).await;
    assert_eq!(answer_json["stop_reason"], "tool_use");
    assert_eq!(answer_json["content"][0], json!({"type": "text", "text": TOOL_PREAMBLE}));
    let call = &answer_json["content"][1];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("toolu_01"));
    assert_eq!(call["input"], serde_json::from_str::<Value>(answer::TOOL_ARGUMENTS).unwrap());

    body["stream"] = json!(true);
    mock.enqueue(AnthropicScenario::ToolCall);
    let events = sse::parse(post(&mock, &body).await.bytes().await.unwrap());
    let data: Vec<Value> = events.iter().map(|e| e.json().unwrap()).collect();
    let start = data.iter().find(|d| d.pointer("/content_block/type") == Some(&json!("tool_use"))).unwrap();
    assert_eq!(start["index"], 1);
    assert_eq!(start["content_block"]["input"], json!({}));
    let partial: String = data
        .iter()
        .filter(|d| d["index"] == 1)
        .filter_map(|d| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(partial, answer::TOOL_ARGUMENTS);
    assert!(data.iter().any(|d| d.pointer("/delta/stop_reason") == Some(&json!("tool_use"))));
}

#[tokio::test]
async fn thinking_and_cached_usage() {
    let mock = MockAnthropic::start().await;
    mock.enqueue(AnthropicScenario::Thinking);
    let body: Value = crate::json(post(&mock, &hello(false)).await).await;
    assert_eq!(body["content"][0]["type"], "thinking");
    assert_eq!(body["content"][0]["thinking"], answer::REASONING);
    assert_eq!(body["content"][1]["text"], HELLO_ANSWER);

    mock.enqueue(AnthropicScenario::CachedUsage);
    let body: Value = crate::json(post(&mock, &hello(false)).await).await;
    let cached = answer::cached_tokens(HELLO_INPUT_TOKENS);
    assert_eq!(body["usage"]["cache_read_input_tokens"], cached);
    assert_eq!(body["usage"]["input_tokens"], HELLO_INPUT_TOKENS - cached);
}

#[tokio::test]
async fn built_in_checks() {
    let mock = MockAnthropic::start().await;
    mock.enqueue(AnthropicScenario::Hang);
    assert_eq!(
        error_of(send(&mock, &hello(false), None, true).await, 401, "authentication_error").await,
        "invalid x-api-key"
    );
    // A bearer token is not Anthropic's scheme.
    let bearer = client()
        .post(format!("{}/messages", mock.base_url()))
        .bearer_auth(MockAnthropic::API_KEY)
        .header("anthropic-version", "2023-06-01")
        .body(hello(false).to_string())
        .send()
        .await
        .unwrap();
    error_of(bearer, 401, "authentication_error").await;
    let message =
        error_of(send(&mock, &hello(false), Some(MockAnthropic::API_KEY), false).await, 400, "invalid_request_error")
            .await;
    assert!(message.contains("anthropic-version"));

    let mut no_max = hello(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    assert!(error_of(post(&mock, &no_max).await, 400, "invalid_request_error").await.contains("max_tokens"));

    let mut system_role = hello(false);
    system_role["messages"] = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]);
    assert!(
        error_of(post(&mock, &system_role).await, 400, "invalid_request_error").await.contains("top-level `system`")
    );

    let mut twice = hello(false);
    twice["messages"] = json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]);
    assert!(error_of(post(&mock, &twice).await, 400, "invalid_request_error").await.contains("alternate"));

    let mut hot = hello(false);
    hot["temperature"] = json!(1.5);
    error_of(post(&mock, &hot).await, 400, "invalid_request_error").await;

    let mut gpt = hello(false);
    gpt["model"] = json!("gpt-4o");
    error_of(post(&mock, &gpt).await, 404, "not_found_error").await;

    // None of these took the scripted Hang.
    assert_eq!(mock.messages_requests().len(), 8);
}

#[tokio::test]
async fn scripted_errors_are_json_even_for_streams() {
    let mock = MockAnthropic::start().await;
    mock.enqueue(AnthropicError::overloaded());
    error_of(post(&mock, &hello(true)).await, 529, "overloaded_error").await;
    mock.enqueue(AnthropicError::rate_limited());
    let limited = post(&mock, &hello(false)).await;
    assert_eq!(limited.headers()["retry-after"], "20");
    error_of(limited, 429, "rate_limit_error").await;
    // The next unscripted call is normal again.
    assert_eq!(post(&mock, &hello(false)).await.status(), 200);
}

#[tokio::test]
async fn mid_stream_error_event_after_a_200() {
    let mock = MockAnthropic::start().await;
    mock.enqueue(AnthropicScenario::MidStreamError);
    let resp = post(&mock, &hello(true)).await;
    assert_eq!(resp.status(), 200);
    let events = sse::parse(resp.bytes().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "error"]
    );
    assert_eq!(
        events.last().unwrap().json().unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    mock.enqueue(AnthropicScenario::MidStreamError);
    error_of(post(&mock, &hello(false)).await, 529, "overloaded_error").await;
}

#[tokio::test]
async fn models_list_has_anthropic_shape() {
    let mock = MockAnthropic::start().await;
    let resp = client()
        .get(format!("{}/models", mock.base_url()))
        .header("x-api-key", MockAnthropic::API_KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = crate::json(resp).await;
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, LISTED_MODELS.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["has_more"], false);
    let denied = client().get(format!("{}/models", mock.base_url())).send().await.unwrap();
    error_of(denied, 401, "authentication_error").await;
}
