use aigate_plugins::canonical::{HttpResponse, SseEvent};

use crate::support::{chat_request, dist, runtime};

const BASE_URL: &str = "http://127.0.0.1:9/compatible-mode/v1";

#[tokio::test]
async fn build_request_round_trip() {
    let plugin = runtime().load(&dist("qwen.wasm")).await.unwrap();
    let mut instance = plugin.instantiate().await.unwrap();
    let request = instance.build_request(BASE_URL, &chat_request("qwen-plus")).await.unwrap().unwrap();
    assert_eq!(request.method, "POST");
    assert!(request.url.starts_with(BASE_URL), "{}", request.url);
    assert!(String::from_utf8_lossy(&request.body).contains("qwen-plus"));
    // The same instance serves further calls.
    let again = instance.build_request(BASE_URL, &chat_request("qwen-max")).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&again.body).contains("qwen-max"));
    assert!(std::sync::Arc::ptr_eq(instance.plugin(), &plugin));
}

#[tokio::test]
async fn provider_errors_are_results_not_faults() {
    let plugin = runtime().load(&dist("openai.wasm")).await.unwrap();
    let mut instance = plugin.instantiate().await.unwrap();
    let response = HttpResponse {
        status: 401,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#.to_vec(),
    };
    let error = instance.parse_response(&response).await.unwrap().unwrap_err();
    assert!((400..600).contains(&error.status), "{error:?}");
}

#[tokio::test]
async fn stream_decoder_decodes_events() {
    let plugin = runtime().load(&dist("openai.wasm")).await.unwrap();
    let instance = plugin.instantiate().await.unwrap();
    let mut decoder = instance.stream_decoder("gpt-4o-mini").await.unwrap();
    let event = SseEvent {
        event: None,
        data: r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#.into(),
    };
    let chunks = decoder.push(&event).await.unwrap().unwrap();
    let content: String = chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.content.as_deref()).collect();
    assert!(content.contains("Hi"), "{chunks:?}");
    decoder.push(&SseEvent { event: None, data: "[DONE]".into() }).await.unwrap().unwrap();
    decoder.finish().await.unwrap().unwrap();
    assert_eq!(decoder.plugin().name(), "openai");
}

#[tokio::test]
async fn models_request_is_valid_when_present() {
    let plugin = runtime().load(&dist("openai.wasm")).await.unwrap();
    let mut instance = plugin.instantiate().await.unwrap();
    if let Some(request) = instance.build_models_request("https://api.openai.com/v1").await.unwrap() {
        assert!(request.url.starts_with("https://api.openai.com/v1"), "{}", request.url);
    }
}
