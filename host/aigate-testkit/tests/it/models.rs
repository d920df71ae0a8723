use std::time::Duration;

use aigate_testkit::{MockDashScope, MockOptions, ModelsBehaviour, errors};
use serde_json::Value;

use crate::client;

async fn get_models(mock: &MockDashScope, key: &str) -> reqwest::Response {
    client().get(format!("{}/models", mock.base_url())).bearer_auth(key).send().await.unwrap()
}

#[tokio::test]
async fn models_list_has_openai_shape_and_mixed_models() {
    let mock =
        MockDashScope::start_with(MockOptions { extra_models: vec!["deepseek-v3".into()], ..Default::default() }).await;
    let resp = get_models(&mock, MockDashScope::API_KEY).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(
            r#"{"object":"list","data":[{"id":"qwen-turbo","object":"model","created":1726132850,"owned_by":"system"}"#
        ),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "qwen-turbo",
            "qwen-plus",
            "qwen-max",
            "qwen3-max",
            "qwen-flash",
            "text-embedding-v3",
            "gte-rerank",
            "wanx2.1-t2i-turbo",
            "deepseek-v3"
        ]
    );
    assert!(body["data"].as_array().unwrap().iter().all(|m| m["object"] == "model"));
    assert_eq!(mock.requests()[0].path, "/compatible-mode/v1/models");
    assert_eq!(mock.chat_requests(), 0);
}

#[tokio::test]
async fn models_with_a_wrong_key_is_401() {
    let mock = MockDashScope::start().await;
    let resp = get_models(&mock, "sk-wrong").await;
    assert_eq!(resp.status(), 401);
    let body: Value = crate::json(resp).await;
    assert_eq!(body["error"]["code"], "invalid_api_key");
}

#[tokio::test]
async fn models_failure_behaviours() {
    let mock = MockDashScope::start().await;
    mock.set_models_behaviour(ModelsBehaviour::Status(502));
    let resp = get_models(&mock, MockDashScope::API_KEY).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.text().await.unwrap(), "502 Bad Gateway");

    mock.set_models_behaviour(ModelsBehaviour::Status(504));
    assert_eq!(get_models(&mock, MockDashScope::API_KEY).await.status(), 504);

    let internal = errors::internal();
    mock.set_models_behaviour(ModelsBehaviour::Error { status: internal.status, body: internal.body.clone() });
    let resp = get_models(&mock, MockDashScope::API_KEY).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(crate::json(resp).await, internal.body);

    mock.set_models_behaviour(ModelsBehaviour::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(300), get_models(&mock, MockDashScope::API_KEY)).await;
    assert!(hung.is_err());

    mock.set_models_behaviour(ModelsBehaviour::Normal);
    assert_eq!(get_models(&mock, MockDashScope::API_KEY).await.status(), 200);
}
