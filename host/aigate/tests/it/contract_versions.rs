//! A plugin built against the older contract 0.1.0 (plugins/legacy-0-1, wit-bindgen directly, no
//! SDK) serves chats through the gateway, JSON and stream, via the host's 0.1 adapter.

use aigate_testkit::{MockDashScope, MockOptions};
use serde_json::Value;

use crate::harness::{JsonBody, Setup, chat_body, sse_payloads, start_with_mock, stream_body};

async fn legacy_gateway() -> crate::harness::TestGateway {
    let mock = MockDashScope::start_with(MockOptions::default()).await;
    let mut setup = Setup {
        plugins: vec![("test/legacy_0_1.wasm", "legacy.wasm")],
        toml: format!("\n[providers.legacy]\nbase_url = \"{}\"\nmodels = [\"*\"]\n", mock.base_url()),
        ..Default::default()
    };
    setup.env.insert("LEGACY_API_KEY".to_owned(), MockDashScope::API_KEY.to_owned());
    start_with_mock(setup, mock).await
}

#[tokio::test]
async fn a_0_1_plugin_serves_a_chat() {
    let gw = legacy_gateway().await;
    let response = gw.chat(&chat_body("legacy:qwen-turbo")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json_value().await;
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from qwen-turbo! You said: Who are you?", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0, "{body}");
}

#[tokio::test]
async fn a_0_1_plugin_serves_a_stream() {
    let gw = legacy_gateway().await;
    let response = gw.chat(&stream_body("legacy:qwen-turbo", true)).await;
    assert_eq!(response.status(), 200);
    let events = sse_payloads(response).await;
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    let chunks = &events[..events.len() - 1];
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Hello from qwen-turbo! You said: Who are you?");
    assert!(
        chunks.iter().all(|c| c["choices"][0]["delta"].get("refusal").is_none()),
        "no refusal key from a 0.1 plugin"
    );
    assert!(chunks.last().unwrap()["usage"]["total_tokens"].as_u64().unwrap() > 0, "{chunks:?}");
}
