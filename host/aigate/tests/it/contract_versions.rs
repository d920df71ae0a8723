//! Plugins built against the older contracts (plugins/legacy-0-1 and plugins/legacy-0-2,
//! wit-bindgen directly, no SDK) serve chats through the gateway, JSON and stream: 0.1 via the
//! host's adapter, 0.2 through its own bindings of the same types. Neither has capabilities: an
//! embeddings call to one is refused before the plugin is entered.

use aigate_testkit::{MockDashScope, MockOptions};
use serde_json::Value;

use crate::harness::{JsonBody, Setup, assert_error, chat_body, sse_payloads, start_with_mock, stream_body};

async fn legacy_gateway() -> crate::harness::TestGateway {
    let mock = MockDashScope::start_with(MockOptions::default()).await;
    let mut setup = Setup {
        plugins: vec![("test/legacy_0_1.wasm", "legacy.wasm"), ("test/legacy_0_2.wasm", "legacy2.wasm")],
        toml: format!(
            "\n[providers.legacy]\nbase_url = \"{base}\"\nmodels = [\"*\"]\n\n[providers.legacy2]\nbase_url = \"{base}\"\nmodels = [\"*\"]\n",
            base = mock.base_url()
        ),
        ..Default::default()
    };
    setup.env.insert("LEGACY_API_KEY".to_owned(), MockDashScope::API_KEY.to_owned());
    setup.env.insert("LEGACY2_API_KEY".to_owned(), MockDashScope::API_KEY.to_owned());
    start_with_mock(setup, mock).await
}

#[tokio::test]
async fn a_0_2_plugin_serves_a_chat_and_a_stream_and_no_embeddings() {
    let gw = legacy_gateway().await;
    let (_, plugins) = gw.admin_json("/admin/plugins").await;
    let legacy2 = plugins["data"].as_array().unwrap().iter().find(|p| p["name"] == "legacy2").unwrap().clone();
    assert_eq!(legacy2["contract_version"], "0.2.0", "{legacy2}");
    assert_eq!(legacy2["embeddings"], false);
    assert_eq!(legacy2["native_apis"], serde_json::json!([]));

    let body: Value = gw.chat(&chat_body("legacy2:qwen-turbo")).await.json_value().await;
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from qwen-turbo! You said: Who are you?", "{body}");
    let events = sse_payloads(gw.chat(&stream_body("legacy2:qwen-turbo", true)).await).await;
    let content: String = events.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Hello from qwen-turbo! You said: Who are you?");

    let r = gw
        .http
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(r#"{"model":"legacy2:text-embedding-v4","input":"x"}"#)
        .send()
        .await
        .unwrap();
    let err = assert_error(r, 400, "invalid_parameter").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("contract 0.2.0"), "{err}");
    assert_eq!(gw.mock.requests().iter().filter(|r| r.path.ends_with("/embeddings")).count(), 0);
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
