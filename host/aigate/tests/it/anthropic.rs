//! One OpenAI-format request, two providers: `qwen:qwen-plus` (MockDashScope,
//! OpenAI-compatible upstream) and `anthropic:claude-sonnet-4-5` (MockAnthropic,
//! the Messages API). The client must not be able to tell them apart by shape:
//! same fields, same finish reasons, same usage (both mocks count tokens with
//! the same formulas), JSON and stream, tool calls included. And the upstream
//! Anthropic request must be the Messages API's, with the provider's key.

use aigate_testkit::anthropic::TOOL_PREAMBLE;
use aigate_testkit::{AnthropicError, AnthropicScenario, MockAnthropic, Scenario, answer};
use serde_json::{Map, Value, json};

use crate::harness::{JsonBody, Setup, TestGateway, sse_payloads, start_with_anthropic};

const QWEN: &str = "qwen:qwen-plus";
const CLAUDE: &str = "anthropic:claude-sonnet-4-5";

async fn gateway() -> (TestGateway, MockAnthropic) {
    start_with_anthropic(Setup::default()).await
}

fn hello(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who are you?"},
        ],
        "temperature": 0.7,
    })
}

fn streamed(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn weather_tools(mut body: Value) -> Value {
    body["tools"] = json!([{
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }]);
    body
}

/// Keys one provider may send and another not, without a client noticing:
/// usage details (DashScope's stream usage has none, Anthropic always reports
/// its cache reads).
const OPTIONAL_KEYS: &[&str] = &["prompt_tokens_details", "completion_tokens_details"];

/// The structure of a JSON value: object keys (recursively) and value kinds,
/// without the values themselves and without [`OPTIONAL_KEYS`]. An empty
/// `content` in a finish chunk's delta (DashScope sends one, OpenAI and the
/// anthropic plugin do not) counts as absent.
fn shape(value: &Value) -> Value {
    let mut value = value.clone();
    strip_optional(&mut value);
    kinds(&value)
}

fn strip_optional(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for key in OPTIONAL_KEYS {
                fields.remove(*key);
            }
            let finishing = fields.get("finish_reason").is_some_and(Value::is_string);
            if finishing
                && let Some(Value::Object(delta)) = fields.get_mut("delta")
                && delta.get("content") == Some(&json!(""))
            {
                delta.remove("content");
            }
            fields.values_mut().for_each(strip_optional);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_optional),
        _ => {}
    }
}

fn kinds(value: &Value) -> Value {
    match value {
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), kinds(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.iter().take(1).map(kinds).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => Value::Null,
    }
}

async fn chat_json(gw: &TestGateway, body: &Value) -> Value {
    let response = gw.chat(body).await;
    let status = response.status().as_u16();
    let value = response.json_value().await;
    assert_eq!(status, 200, "{value}");
    value
}

/// What both providers must agree on in a non-stream answer.
fn assert_openai_answer(answer: &Value, finish_reason: &str) {
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert!(answer["id"].as_str().is_some_and(|id| !id.is_empty()), "{answer}");
    assert!(answer["created"].is_u64(), "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"].get("content").is_some(), "{answer}");
    assert_eq!(choice["finish_reason"], finish_reason, "{answer}");
    let usage = &answer["usage"];
    let (p, c, t) =
        (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64(), usage["total_tokens"].as_u64());
    assert!(p.is_some_and(|p| p > 0) && c.is_some_and(|c| c > 0), "{answer}");
    assert_eq!(t, Some(p.unwrap_or(0) + c.unwrap_or(0)), "{answer}");
}

#[tokio::test]
async fn json_answers_are_equivalent() {
    let (gw, anthropic) = gateway().await;
    let qwen = chat_json(&gw, &hello(QWEN)).await;
    let claude = chat_json(&gw, &hello(CLAUDE)).await;
    assert_openai_answer(&qwen, "stop");
    assert_openai_answer(&claude, "stop");
    assert_eq!(shape(&qwen), shape(&claude), "\nqwen:   {qwen}\nclaude: {claude}");
    assert_eq!(qwen["choices"][0]["message"]["content"], "Hello from qwen-plus! You said: Who are you?");
    assert_eq!(claude["choices"][0]["message"]["content"], "Hello from claude-sonnet-4-5! You said: Who are you?");
    assert_eq!((qwen["model"].as_str(), claude["model"].as_str()), (Some(QWEN), Some(CLAUDE)), "the model as asked");
    // Both mocks count the same text the same way.
    assert_eq!(qwen["usage"], claude["usage"]);

    // The upstream request is the Messages API's, with the provider's key.
    let sent = anthropic.messages_requests();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(MockAnthropic::API_KEY));
    assert_eq!(sent.header("authorization"), None, "the client's Authorization never reaches the provider");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.json(),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": "Who are you?"}],
            "temperature": 0.7,
            "stream": false,
        })
    );
}

/// The kinds of chunk in a gateway stream, in order: what a client's loop sees.
fn chunk_kinds(payloads: &[Value]) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = payloads
        .iter()
        .map(|p| {
            if p == "[DONE]" {
                return "done";
            }
            let choice = &p["choices"][0];
            if p["choices"].as_array().is_some_and(Vec::is_empty) {
                "usage"
            } else if choice["delta"]["role"] == "assistant" {
                "role"
            } else if !choice["finish_reason"].is_null() {
                "finish"
            } else if choice["delta"]["tool_calls"].is_array() {
                "tool"
            } else {
                "content"
            }
        })
        .collect();
    kinds.dedup();
    kinds
}

fn streamed_content(payloads: &[Value]) -> String {
    payloads.iter().filter_map(|p| p["choices"][0]["delta"]["content"].as_str()).collect()
}

fn finish_reasons(payloads: &[Value]) -> Vec<&str> {
    payloads.iter().filter_map(|p| p["choices"][0]["finish_reason"].as_str()).collect()
}

async fn stream(gw: &TestGateway, body: &Value) -> Vec<Value> {
    let response = gw.chat(body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    sse_payloads(response).await
}

#[tokio::test]
async fn streams_are_equivalent() {
    let (gw, anthropic) = gateway().await;
    for include_usage in [true, false] {
        let qwen = stream(&gw, &streamed(hello(QWEN), include_usage)).await;
        let claude = stream(&gw, &streamed(hello(CLAUDE), include_usage)).await;
        for payloads in [&qwen, &claude] {
            assert_eq!(payloads.last(), Some(&json!("[DONE]")), "{payloads:#?}");
            let chunks = &payloads[..payloads.len() - 1];
            assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"), "{chunks:#?}");
            assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]), "one id per stream: {chunks:#?}");
            assert_eq!(finish_reasons(chunks), ["stop"]);
        }
        let expected: &[&str] = if include_usage {
            &["role", "content", "finish", "usage", "done"]
        } else {
            &["role", "content", "finish", "done"]
        };
        assert_eq!(chunk_kinds(&qwen), expected, "{qwen:#?}");
        assert_eq!(chunk_kinds(&claude), expected, "{claude:#?}");
        assert_eq!(streamed_content(&qwen), "Hello from qwen-plus! You said: Who are you?");
        assert_eq!(streamed_content(&claude), "Hello from claude-sonnet-4-5! You said: Who are you?");
        // Chunk by chunk, the same fields.
        let shapes = |payloads: &[Value]| {
            let mut shapes: Vec<Value> = payloads.iter().map(shape).collect();
            shapes.dedup();
            shapes
        };
        assert_eq!(shapes(&qwen), shapes(&claude), "\nqwen:   {qwen:#?}\nclaude: {claude:#?}");
        if include_usage {
            let usage = |payloads: &[Value]| {
                let usage = &payloads[payloads.len() - 2]["usage"];
                ["prompt_tokens", "completion_tokens", "total_tokens"].map(|k| usage[k].clone())
            };
            assert_eq!(usage(&qwen), usage(&claude));
            assert!(usage(&claude)[2].as_u64().is_some_and(|t| t > 0));
        }
    }
    let sent = anthropic.messages_requests();
    assert_eq!(sent.len(), 2);
    for request in sent {
        let body = request.json();
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 4096);
        assert!(body.get("stream_options").is_none(), "an OpenAI key Anthropic does not know: {body}");
        assert_eq!(request.header("accept"), Some("text/event-stream"));
    }
}

#[tokio::test]
async fn tool_call_round_trip() {
    let (gw, anthropic) = gateway().await;
    let (mut qwen_calls, mut claude_calls) = (Value::Null, Value::Null);
    for model in [QWEN, CLAUDE] {
        // 1. The model asks for the tool.
        let first_request = weather_tools(hello(model));
        if model == QWEN {
            gw.mock.enqueue(Scenario::ToolCall);
        } else {
            anthropic.enqueue(AnthropicScenario::ToolCall);
        }
        let first = chat_json(&gw, &first_request).await;
        assert_openai_answer(&first, "tool_calls");
        let message = first["choices"][0]["message"].clone();
        let calls = message["tool_calls"].clone();
        assert_eq!(calls.as_array().map(Vec::len), Some(1), "{first}");
        let call = &calls[0];
        assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_current_weather");
        let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"location": "Hangzhou"}));
        if model == QWEN {
            qwen_calls = calls.clone()
        } else {
            claude_calls = calls.clone()
        }

        // 2. The client runs it and sends the result back.
        let mut second_request = first_request.clone();
        let messages = second_request["messages"].as_array_mut().unwrap();
        messages.push(json!({"role": "assistant", "content": message["content"], "tool_calls": calls}));
        messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 25 degrees"}));
        let second = chat_json(&gw, &second_request).await;
        assert_openai_answer(&second, "stop");
        assert!(second["choices"][0]["message"]["content"].as_str().is_some_and(|t| t.starts_with("Hello from")));
        assert!(second["choices"][0]["message"].get("tool_calls").is_none_or(|c| c.is_null() || c == &json!([])));
    }
    assert_eq!(shape(&qwen_calls), shape(&claude_calls));

    // What Anthropic received: tools with input_schema, then tool_use and tool_result blocks.
    let sent = anthropic.messages_requests();
    assert_eq!(sent.len(), 2);
    let first = sent[0].json();
    assert_eq!(
        first["tools"],
        json!([{
            "name": "get_current_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        }])
    );
    let second = sent[1].json();
    let id = claude_calls[0]["id"].as_str().unwrap();
    assert_eq!(second["system"], "You are a helpful assistant.");
    assert_eq!(
        second["messages"],
        json!([
            {"role": "user", "content": "Who are you?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": TOOL_PREAMBLE},
                {"type": "tool_use", "id": id, "name": "get_current_weather", "input": {"location": "Hangzhou"}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "Sunny, 25 degrees"}]},
        ])
    );
}

#[tokio::test]
async fn streamed_tool_calls_are_equivalent() {
    let (gw, anthropic) = gateway().await;
    gw.mock.enqueue(Scenario::ToolCall);
    anthropic.enqueue(AnthropicScenario::ToolCall);
    let qwen = stream(&gw, &streamed(weather_tools(hello(QWEN)), true)).await;
    let claude = stream(&gw, &streamed(weather_tools(hello(CLAUDE)), true)).await;
    for payloads in [&qwen, &claude] {
        assert_eq!(finish_reasons(payloads), ["tool_calls"], "{payloads:#?}");
        let deltas: Vec<&Value> =
            payloads.iter().filter_map(|p| p["choices"][0]["delta"]["tool_calls"].as_array()).flatten().collect();
        assert!(deltas.iter().all(|d| d["index"] == 0), "one call, index 0: {deltas:#?}");
        assert!(deltas[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(deltas[0]["function"]["name"], "get_current_weather");
        assert_eq!(deltas.iter().filter(|d| d["function"]["name"].is_string()).count(), 1, "the name comes once");
        let arguments: String = deltas.iter().filter_map(|d| d["function"]["arguments"].as_str()).collect();
        assert_eq!(arguments, answer::TOOL_ARGUMENTS);
        assert!(payloads[payloads.len() - 2]["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0));
    }
    assert_eq!(streamed_content(&claude), TOOL_PREAMBLE);
}

#[tokio::test]
async fn provider_errors_keep_their_meaning() {
    let (gw, anthropic) = gateway().await;
    // 529 overloaded: the client sees a retryable 503, as for any provider overload.
    anthropic.enqueue(AnthropicError::overloaded());
    let response = gw.chat(&hello(CLAUDE)).await;
    assert_eq!(response.status(), 503);
    let body = response.json_value().await;
    assert_eq!(body["error"]["code"], "overloaded_error", "{body}");

    // Anthropic's temperature range is 0..1: refused before any upstream call.
    let mut hot = hello(CLAUDE);
    hot["temperature"] = json!(1.5);
    let response = gw.chat(&hot).await;
    assert_eq!(response.status(), 400);
    let body = response.json_value().await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("0 to 1")), "{body}");
    assert_eq!(anthropic.messages_requests().len(), 1);

    // An overload after the 200: the stream carries the content so far, then an error.
    anthropic.enqueue(AnthropicScenario::MidStreamError);
    let payloads = stream(&gw, &streamed(hello(CLAUDE), true)).await;
    assert_eq!(streamed_content(&payloads), "Hello from");
    assert!(
        payloads.iter().any(|p| p["error"]["code"] == "overloaded_error"),
        "the stream ends with the provider's error: {payloads:#?}"
    );
}
