//! Anthropic Messages passthrough (issue 11): a `/v1/messages` request to a provider whose plugin
//! speaks the Messages API natively goes through byte for byte, and the provider's bytes come
//! back, while auth, limits, idempotency, fallbacks and metering still apply.
//!
//! "The provider's bytes" is checked against a second, direct mock: the mocks' ids come from a
//! seeded counter, so two fresh mocks given the same requests answer the same bytes.

use std::path::Path;
use std::time::Duration;

use aigate_testkit::anthropic::THINKING_SIGNATURE;
use aigate_testkit::{AnthropicError, AnthropicScenario, MockAnthropic, Scenario};
use serde_json::{Value, json};

use crate::harness::{JsonBody, Setup, TestGateway, eventually, start_with_anthropic, unique};

/// The alias makes the client's model name the provider's own: nothing in the body changes.
fn setup() -> Setup {
    Setup { toml: "\"claude-sonnet-4-5\" = \"anthropic:claude-sonnet-4-5\"\n".to_owned(), ..Setup::default() }
}

async fn post(gw: &TestGateway, body: &[u8], extra: &[(&str, &str)]) -> reqwest::Response {
    let mut r = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &gw.key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(body.to_vec()).send().await.unwrap()
}

/// What a fresh mock answers to `bodies`, in order, called directly.
async fn direct(bodies: &[&[u8]], scenarios: &[AnthropicScenario]) -> Vec<Vec<u8>> {
    let mock = MockAnthropic::start().await;
    for s in scenarios {
        mock.enqueue(s.clone());
    }
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for body in bodies {
        let r = http
            .post(format!("{}/messages", mock.base_url()))
            .header("x-api-key", MockAnthropic::API_KEY)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        answers.push(r.bytes().await.unwrap().to_vec());
    }
    answers
}

/// A body no serializer would write: odd spacing, key order, escapes, a signed thinking block.
fn unusual_body(model: &str, stream: bool) -> Vec<u8> {
    format!(
        concat!(
            "{{ \"stream\" : {stream},\n  \"messages\":[",
            "{{\"role\":\"user\",\"content\":\"Caf\\u00e9?  \\ud83d\\ude00\"}},",
            "{{\"role\":\"assistant\",\"content\":[{{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"{sig}\"}},",
            "{{\"type\":\"text\",\"text\":\"Yes.\"}}]}},",
            "{{\"role\":\"user\",\"content\":\"And now?\"}}],\n",
            "  \"max_tokens\":100, \"model\" :\t\"{model}\",\"temperature\":0.50}}"
        ),
        stream = stream,
        sig = THINKING_SIGNATURE,
        model = model
    )
    .into_bytes()
}

async fn ledger(gw: &TestGateway, request_id: &str) -> Value {
    let path = format!("/admin/requests/{request_id}?org=test");
    assert!(eventually(Duration::from_secs(5), async || gw.admin_json(&path).await.0 == 200).await);
    gw.admin_json(&path).await.1
}

#[tokio::test]
async fn a_message_goes_through_byte_for_byte_and_comes_back_the_same() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    let body = unusual_body("claude-sonnet-4-5", false);
    let beta = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
    let r = post(&gw, &body, &[("anthropic-beta", beta), ("anthropic-version", "2023-06-01")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-provider"], "anthropic");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer = r.bytes().await.unwrap();

    let sent = upstream.messages_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body.as_ref(), body.as_slice(), "the provider got the client's exact bytes");
    assert_eq!(sent[0].headers["anthropic-beta"], beta);
    assert_eq!(sent[0].headers["anthropic-version"], "2023-06-01");
    // The provider's credential, never the gateway key.
    assert_eq!(sent[0].headers["x-api-key"], MockAnthropic::API_KEY);

    let expected = direct(&[&body], &[AnthropicScenario::Normal]).await;
    assert_eq!(answer.as_ref(), expected[0].as_slice(), "the client got the provider's exact bytes");

    // Metered from the provider's usage, with the inbound API.
    let record = ledger(&gw, &request_id).await;
    let attempt = &record["attempts"][0];
    assert_eq!(attempt["api"], "messages");
    let provider: Value = serde_json::from_slice(&expected[0]).unwrap();
    assert_eq!(attempt["prompt_tokens"], provider["usage"]["input_tokens"], "{record}");
    assert_eq!(attempt["completion_tokens"], provider["usage"]["output_tokens"], "{record}");
}

#[tokio::test]
async fn only_the_model_and_the_gateways_fallbacks_change_on_the_way() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    let text = String::from_utf8(unusual_body("anthropic:claude-sonnet-4-5", false)).unwrap();
    let with_fallbacks = text.replacen("{ \"stream\"", "{ \"fallbacks\" : [\"qwen:qwen-turbo\"] , \"stream\"", 1);
    let r = post(&gw, with_fallbacks.as_bytes(), &[]).await;
    assert_eq!(r.status(), 200);
    let sent = upstream.messages_requests();
    let expected = String::from_utf8(unusual_body("claude-sonnet-4-5", false)).unwrap();
    // The member goes with its comma; the space before the next key stays.
    let expected = expected.replacen("{ \"stream\"", "{  \"stream\"", 1);
    assert_eq!(String::from_utf8_lossy(&sent[0].body), expected);
}

#[tokio::test]
async fn a_stream_goes_through_and_an_idempotent_retry_replays_the_providers_events() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    upstream.enqueue(AnthropicScenario::Thinking);
    let body = unusual_body("claude-sonnet-4-5", true);
    let key = unique("passthrough-stream");
    let r = post(&gw, &body, &[("idempotency-key", &key)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let streamed = r.bytes().await.unwrap();
    let expected = direct(&[&body], &[AnthropicScenario::Thinking]).await;
    assert_eq!(String::from_utf8_lossy(&streamed), String::from_utf8_lossy(&expected[0]));
    assert!(String::from_utf8_lossy(&streamed).contains("signature_delta"), "thinking signatures reach the client");

    let again = post(&gw, &body, &[("idempotency-key", &key)]).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), streamed);
    assert_eq!(upstream.messages_requests().len(), 1);

    let record = ledger(&gw, &request_id).await;
    let attempt = &record["attempts"][0];
    assert_eq!(attempt["outcome"], "completed", "{record}");
    assert!(attempt["completion_tokens"].as_u64().unwrap() > 1, "usage read from the raw stream: {record}");
}

#[tokio::test]
async fn an_overloaded_provider_falls_back_to_a_translated_one() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    upstream.enqueue(AnthropicError::overloaded());
    let mut body: Value = serde_json::from_slice(&unusual_body("claude-sonnet-4-5", true)).unwrap();
    body["fallbacks"] = json!(["qwen:qwen-turbo"]);
    let r = post(&gw, &serde_json::to_vec(&body).unwrap(), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-model"], "qwen:qwen-turbo");
    let text = r.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    let said: String = events(&text).iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
    assert!(said.starts_with("Hello from qwen-turbo"), "Anthropic's events, translated from qwen: {text}");
    assert_eq!(gw.mock.chat_requests(), 1);
}

#[tokio::test]
async fn a_provider_error_keeps_anthropics_shape() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    upstream.enqueue(AnthropicError::invalid_request("messages.0.content: Field required"));
    let r = post(&gw, &unusual_body("claude-sonnet-4-5", false), &[]).await;
    assert_eq!(r.status(), 400);
    let body = r.json_value().await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("Field required"), "{body}");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/claude-code").join(name)).unwrap()
}

fn events(stream: &str) -> Vec<Value> {
    stream.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect()
}

#[tokio::test]
async fn a_claude_code_session_replays_unchanged_in_passthrough() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    let turns = [fixture("turn-1.json"), fixture("turn-2.json")];
    let scenarios = [AnthropicScenario::ToolCall, AnthropicScenario::Normal];
    for s in &scenarios {
        upstream.enqueue(s.clone());
    }
    let mut answers = Vec::new();
    for turn in &turns {
        let r = post(&gw, turn, &[("anthropic-beta", "claude-code-20250219")]).await;
        assert_eq!(r.status(), 200);
        answers.push(r.bytes().await.unwrap().to_vec());
    }
    let sent = upstream.messages_requests();
    for (turn, request) in turns.iter().zip(&sent) {
        assert_eq!(request.body.as_ref(), turn.as_slice());
        assert_eq!(request.headers["anthropic-beta"], "claude-code-20250219");
    }
    let expected = direct(&[&turns[0], &turns[1]], &scenarios).await;
    assert_eq!(answers, expected, "the client got the provider's exact streams");
    // Turn 1 streamed a tool call whose input came as input_json_delta pieces.
    let first = events(&String::from_utf8_lossy(&answers[0]));
    assert!(first.iter().any(|e| e["delta"]["type"] == "input_json_delta"), "{first:?}");
    assert!(first.iter().any(|e| e["content_block"]["type"] == "tool_use" && e["content_block"]["name"] == "Read"));
}

#[tokio::test]
async fn a_claude_code_session_is_translated_for_qwen() {
    let (gw, _upstream) = start_with_anthropic(Setup {
        toml: "\"claude-sonnet-4-5\" = \"qwen:qwen-plus\"\n".to_owned(),
        ..Setup::default()
    })
    .await;
    gw.mock.enqueue(Scenario::ToolCall);
    let r = post(&gw, &fixture("turn-1.json"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-model"], "qwen:qwen-plus");
    let first = events(&r.text().await.unwrap());
    let start = first.iter().find(|e| e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use");
    assert_eq!(start.unwrap()["content_block"]["name"], "Read", "qwen called the first tool: {first:?}");
    let input: String = first
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert!(serde_json::from_str::<Value>(&input).is_ok(), "the pieces make the tool's JSON input: {input}");
    let stop = first.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(stop["delta"]["stop_reason"], "tool_use");

    let r = post(&gw, &fixture("turn-2.json"), &[]).await;
    assert_eq!(r.status(), 200);
    let sent = gw.mock.requests().into_iter().filter(|r| r.path.ends_with("/chat/completions")).last().unwrap();
    let sent = sent.json();
    let roles: Vec<&str> = sent["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"], "{sent}");
    assert_eq!(sent["messages"][2]["tool_calls"][0]["function"]["name"], "Read");
    assert_eq!(sent["messages"][3]["tool_call_id"], "toolu_01QxT8vY3nWm6Hk2Jp9Rz4Lc");
    assert_eq!(sent["tools"][1]["function"]["name"], "Bash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_in_passthrough() {
    if !crate::messages::sdk_available() {
        assert!(
            std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "python3 with the `anthropic` package is required here (pip install anthropic)"
        );
        return;
    }
    let (gw, upstream) = start_with_anthropic(setup()).await;
    for s in [AnthropicScenario::Normal, AnthropicScenario::Normal, AnthropicScenario::ToolCall] {
        upstream.enqueue(s);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/anthropic_sdk_check.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&gw.base)
        .arg("anthropic:claude-sonnet-4-5")
        .arg(&gw.key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(upstream.messages_requests().len(), 4, "message, stream, tool call, tool result");
    assert_eq!(gw.mock.chat_requests(), 0, "nothing was translated");
    // Every request went upstream as the SDK wrote it, but for the model name.
    assert!(upstream.messages_requests().iter().all(|r| r.json()["model"] == "claude-sonnet-4-5"));
}

#[tokio::test]
async fn content_only_anthropic_takes_goes_to_anthropic_only() {
    let (gw, upstream) = start_with_anthropic(setup()).await;
    let body = |model: &str| {
        json!({
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."}},
                {"type": "text", "text": "What colour is the grass?"}
            ]}],
        })
    };
    // Passed through as written: Anthropic reads documents.
    let sent = serde_json::to_vec(&body("claude-sonnet-4-5")).unwrap();
    assert_eq!(post(&gw, &sent, &[]).await.status(), 200);
    assert_eq!(upstream.messages_requests()[0].body.as_ref(), sent.as_slice());
    // Not to a provider it would have to be translated for: a 400 naming the block.
    let r = post(&gw, &serde_json::to_vec(&body("qwen:qwen-turbo")).unwrap(), &[]).await;
    assert_eq!(r.status(), 400);
    let err = r.json_value().await;
    assert!(
        err["error"]["message"].as_str().unwrap().contains("`messages[0].content[0]` (a `document` block)"),
        "{err}"
    );
    assert_eq!(gw.mock.chat_requests(), 0);
    // A fallback that cannot take it is left out; the one that can serves.
    let mut with_fallback = body("qwen:qwen-turbo");
    with_fallback["fallbacks"] = json!(["claude-sonnet-4-5"]);
    let r = post(&gw, &serde_json::to_vec(&with_fallback).unwrap(), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-provider"], "anthropic");
    assert_eq!(gw.mock.chat_requests(), 0);
}
