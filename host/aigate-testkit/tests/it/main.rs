//! Starts the mock and talks to it over real HTTP, as the gateway will.

// Helpers outside `#[test]` fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod anthropic;
mod chat;
mod failures;
mod models;
mod timing;

use std::sync::Once;

use aigate_testkit::MockDashScope;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    // reqwest's rustls-no-provider panics without a process-wide provider, even for plain http.
    PROVIDER.call_once(|| {
        rustls::crypto::ring::default_provider().install_default().ok();
    });
    reqwest::Client::new()
}

fn chat_url(mock: &MockDashScope) -> String {
    format!("{}/chat/completions", mock.base_url())
}

async fn post(mock: &MockDashScope, body: &Value) -> reqwest::Response {
    client()
        .post(chat_url(mock))
        .bearer_auth(MockDashScope::API_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn hello(stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({
        "model": "qwen-plus",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who are you?"}
        ],
        "stream": stream,
    });
    if let Some(include) = include_usage {
        body["stream_options"] = json!({"include_usage": include});
    }
    body
}

/// "You are a helpful assistant." (28) + "Who are you?" (12) = 40 chars → 10 tokens.
const HELLO_PROMPT_TOKENS: u64 = 10;
const HELLO_ANSWER: &str = "Hello from qwen-plus! You said: Who are you?";
/// Words of HELLO_ANSWER.
const HELLO_COMPLETION_TOKENS: u64 = 8;

async fn json(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}
