use aigate_testkit::{MockDashScope, Scenario, errors, sse};
use serde_json::{Value, json};

use crate::{chat_url, client, hello, post};

async fn send_with_key(mock: &MockDashScope, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client().post(chat_url(mock)).header("content-type", "application/json").body(body.to_string());
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn wrong_or_missing_key_is_401_invalid_api_key_whatever_the_script() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::Hang);
    for key in [Some("sk-wrong"), None] {
        let resp = send_with_key(&mock, key, &hello(false, None)).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = crate::json(resp).await;
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["param"].is_null());
        assert!(body["error"]["message"].as_str().unwrap().starts_with("Incorrect API key provided."));
        assert_eq!(body["request_id"], request_id.as_str());
    }
    // Stream requests get it SSE-framed.
    let resp = send_with_key(&mock, Some("sk-wrong"), &hello(true, Some(true))).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "text/event-stream;charset=UTF-8");
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("data: {") && text.ends_with("}\n\n"), "{text:?}");
    let events = sse::data_json(&text).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error"]["code"], "invalid_api_key");
    // The Hang was not consumed by the rejected requests... so it is still first in line.
    let timed = tokio::time::timeout(std::time::Duration::from_millis(200), post(&mock, &hello(false, None))).await;
    assert!(timed.is_err());
}

#[tokio::test]
async fn scripted_error_is_json_or_sse_framed() {
    let mock = MockDashScope::start().await;
    mock.enqueue(errors::rate_limited());
    mock.enqueue(errors::rate_limited());

    let resp = post(&mock, &hello(false, None)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = crate::json(resp).await;
    assert_eq!(body, errors::rate_limited().body);
    assert_eq!(body["error"]["code"], "limit_requests");

    let resp = post(&mock, &hello(true, Some(true))).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["content-type"], "text/event-stream;charset=UTF-8");
    let text = resp.text().await.unwrap();
    assert_eq!(text, format!("data: {}\n\n", errors::rate_limited().body));
}

#[tokio::test]
async fn built_in_validation_errors() {
    let mock = MockDashScope::start().await;
    let cases = [
        (json!({"model": "qwen-plus", "messages": []}), 400, "invalid_parameter_error", "[] is too short"),
        (
            json!({"model": "qwen-plus", "messages": [{"role":"user","content":"x"}], "temperature": 2.0}),
            400,
            "invalid_parameter_error",
            "Temperature should be in [0.0, 2.0)",
        ),
        (
            json!({"model": "", "messages": [{"role":"user","content":"x"}]}),
            404,
            "model_not_found",
            "The model `` does not exist",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role":"user","content":"x"}]}),
            404,
            "model_not_found",
            "The model `gpt-4o` does not exist",
        ),
        (
            json!({"messages": [{"role":"user","content":"x"}]}),
            400,
            "invalid_request_error",
            "you must provide a model parameter.",
        ),
    ];
    for (body, status, code, message) in cases {
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let resp = post(&mock, &body).await;
            assert_eq!(resp.status(), status, "{body}");
            let text = resp.text().await.unwrap();
            let err: Value =
                if stream { sse::data_json(&text).unwrap().remove(0) } else { serde_json::from_str(&text).unwrap() };
            assert_eq!(err["error"]["code"], code, "{body}");
            assert!(err["error"]["message"].as_str().unwrap().starts_with(message), "{err}");
            assert!(err["request_id"].is_string());
        }
    }
    for model in ["qwen-turbo", "qwen-plus", "qwen-max", "qwen3-max", "qwen-flash", "qwen3-32b"] {
        let resp =
            post(&mock, &json!({"model": model, "messages": [{"role":"user","content":"x"}], "temperature": 1.99}))
                .await;
        assert_eq!(resp.status(), 200, "{model}");
    }
}

#[tokio::test]
async fn body_that_is_not_json_is_400() {
    let mock = MockDashScope::start().await;
    let resp = client()
        .post(chat_url(&mock))
        .bearer_auth(MockDashScope::API_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = crate::json(resp).await;
    assert_eq!(body["error"]["message"], "Required body invalid, please check the request body format.");
    assert_eq!(mock.requests()[0].body, "{not json");
}

#[tokio::test]
async fn extra_models_are_accepted() {
    let mock = MockDashScope::start_with(aigate_testkit::MockOptions {
        extra_models: vec!["deepseek-v3".into()],
        ..Default::default()
    })
    .await;
    let resp = post(&mock, &json!({"model": "deepseek-v3", "messages": [{"role":"user","content":"x"}]})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn mid_stream_error_after_content_with_status_200() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::MidStreamError);
    mock.enqueue(Scenario::MidStreamError);
    let resp = post(&mock, &hello(true, Some(true))).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events = sse::parse(&text);
    assert_eq!(events.len(), 4);
    assert!(!events.iter().any(|e| e.is_done()));
    let chunks = sse::data_json(&text).unwrap();
    assert_eq!(sse::content(&chunks), "Hello from");
    assert!(text.ends_with(concat!(
        r#"data: {"error":{"message":"Output data may contain inappropriate content.","type":"data_inspection_failed","param":null,"code":"data_inspection_failed"}}"#,
        "\n\n"
    )));

    let resp = post(&mock, &hello(false, None)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = crate::json(resp).await;
    assert_eq!(body["error"]["code"], "data_inspection_failed");
}

#[tokio::test]
async fn flat_error_event() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::FlatErrorEvent);
    let resp = post(&mock, &hello(true, None)).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(
        text,
        format!(
            "event: error\ndata: {{\"code\":\"invalid_model_error\",\"message\":\"Unsupported model \\\"\\\"\",\"request_id\":\"{request_id}\"}}\n\n"
        )
    );
    let events = sse::parse(&text);
    assert_eq!(events[0].event.as_deref(), Some("error"));
    assert_eq!(events[0].json().unwrap()["message"], "Unsupported model \"\"");
}

#[tokio::test]
async fn raw_response_is_sent_as_is() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::Raw {
        status: 502,
        content_type: "text/html".into(),
        body: "<html>bad gateway</html>".into(),
    });
    let resp = post(&mock, &hello(true, None)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.text().await.unwrap(), "<html>bad gateway</html>");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let mock = MockDashScope::start().await;
    let resp = client().get(format!("{}/v1/chat/completions", mock.root_url())).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client().get(format!("{}/chat/completions", mock.base_url())).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(mock.chat_requests(), 0);
}
