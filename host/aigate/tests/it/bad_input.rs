//! Bad input gets a clear 4xx OpenAI-shaped error and never reaches the provider.

use serde_json::json;

use crate::harness::{assert_error, chat_body, start};

#[tokio::test]
async fn every_bad_input_is_a_4xx_and_the_provider_is_never_called() {
    let gw = start().await;
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("malformed JSON", b"{\"model\": ".to_vec(), "application/json", 400, "invalid_json"),
        ("not an object", b"[1, 2, 3]".to_vec(), "application/json", 400, "invalid_json"),
        ("a string", b"\"hello\"".to_vec(), "application/json", 400, "invalid_json"),
        ("missing model", br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(), "application/json", 400, "invalid_parameter"),
        ("missing messages", br#"{"model":"qwen:qwen-turbo"}"#.to_vec(), "application/json", 400, "invalid_parameter"),
        ("empty messages", br#"{"model":"qwen:qwen-turbo","messages":[]}"#.to_vec(), "application/json", 400, "invalid_parameter"),
        ("model of the wrong type", br#"{"model":7,"messages":[{"role":"user","content":"x"}]}"#.to_vec(), "application/json", 400, "invalid_parameter"),
        ("unknown provider", serde_json::to_vec(&chat_body("nope:qwen-turbo")).unwrap(), "application/json", 404, "model_not_found"),
        ("unknown model", serde_json::to_vec(&chat_body("qwen:gpt-17")).unwrap(), "application/json", 404, "model_not_found"),
        ("bare unknown name", serde_json::to_vec(&chat_body("qwen-turbo-ish")).unwrap(), "application/json", 404, "model_not_found"),
        ("invalid UTF-8", b"{\"model\":\"qwen:qwen-turbo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(), "application/json", 400, "invalid_json"),
        ("wrong content type", serde_json::to_vec(&chat_body("qwen:qwen-turbo")).unwrap(), "text/plain", 415, "unsupported_media_type"),
        ("form content type", b"model=qwen".to_vec(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (
            "temperature out of range",
            serde_json::to_vec(&json!({"model":"qwen:qwen-turbo","messages":[{"role":"user","content":"x"}],"temperature":2.5})).unwrap(),
            "application/json",
            400,
            "invalid_parameter",
        ),
        (
            "a parameter of the wrong type",
            serde_json::to_vec(&json!({"model":"qwen:qwen-turbo","messages":[{"role":"user","content":"x"}],"max_tokens":"many"})).unwrap(),
            "application/json",
            400,
            "invalid_request_error",
        ),
        (
            "unsupported content part",
            serde_json::to_vec(&json!({"model":"qwen:qwen-turbo","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]})).unwrap(),
            "application/json",
            400,
            "invalid_parameter",
        ),
    ];
    for (what, body, content_type, status, code) in cases {
        let response = gw.post_raw(body, content_type).await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{what}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        let actual = v["error"]["code"].as_str().or(v["error"]["type"].as_str()).unwrap_or_default().to_owned();
        assert!(actual == code || v["error"]["type"] == code, "{what}: expected {code}, got {text}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{what}");
    }
    assert_eq!(gw.mock.chat_requests(), 0, "no bad input reached the provider");
}

#[tokio::test]
async fn oversized_body_is_413() {
    let gw = start().await;
    let mut body = chat_body("qwen:qwen-turbo");
    body["messages"][0]["content"] = json!("x".repeat(70 * 1024));
    let r = gw.chat(&body).await;
    // The unread rest of the body ends the connection; the client is told not to reuse it.
    assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    assert_error(r, 413, "request_too_large").await;

    // Without a Content-Length (chunked), the limit still holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"{\"model\":\"qwen:qwen-turbo\",\"x\":\"".to_vec()), Ok(vec![b'a'; 80 * 1024]), Ok(b"\"}".to_vec())];
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "request_too_large").await;
    assert_eq!(gw.mock.chat_requests(), 0);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_openai_errors() {
    let gw = start().await;
    let r = gw.http.get(gw.url("/v1/nothing")).send().await.unwrap();
    assert_error(r, 404, "not_found").await;
    let r = gw.http.get(gw.url("/v1/chat/completions")).send().await.unwrap();
    assert_error(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn provider_without_a_key_is_refused_before_calling_it() {
    let gw = crate::harness::start_with(crate::harness::Setup {
        env: [("QWEN_API_KEY".to_owned(), String::new())].into_iter().collect(),
        ..Default::default()
    })
    .await;
    let body = assert_error(gw.chat(&chat_body("qwen:qwen-turbo")).await, 503, "provider_not_configured").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("QWEN_API_KEY"));
    assert_eq!(gw.mock.chat_requests(), 0);
}
