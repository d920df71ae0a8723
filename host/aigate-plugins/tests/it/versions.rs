//! Contract versions: plugins built against the older 0.1.0 (through the host's adapter) and
//! 0.2.0 (through bindings of the same types) contracts load and work; a plugin built against a version the host does not support is refused
//! with a message naming both versions.

use aigate_plugins::canonical::{FinishReason, HttpResponse, SseEvent};
use aigate_plugins::{CONTRACT_VERSION, LoadError, SUPPORTED_CONTRACTS};

use crate::support::{bytes, chat_request, dist, runtime};

const BASE_URL: &str = "http://127.0.0.1:9/v1";

#[tokio::test]
async fn a_plugin_built_against_0_1_loads_and_works_through_the_adapter() {
    assert_eq!(CONTRACT_VERSION, "0.3.0");
    assert!(SUPPORTED_CONTRACTS.contains(&"0.1.0"));
    // plugins/legacy-0-1: wit-bindgen directly on wit/provider@0.1.0, no SDK.
    let plugin = runtime().load(&dist("test/legacy_0_1.wasm")).await.unwrap();
    assert_eq!((plugin.name(), plugin.contract_version()), ("legacy", "0.1.0"));

    let mut instance = plugin.instantiate().await.unwrap();
    let mut request = chat_request("qwen-turbo");
    request.stream = true;
    let http = instance.build_request(BASE_URL, &request).await.unwrap().unwrap();
    assert_eq!(http.url, format!("{BASE_URL}/chat/completions"));
    let body = String::from_utf8_lossy(&http.body);
    assert!(body.contains(r#""max_tokens":64"#) && body.contains(r#""include_usage":true"#), "{body}");

    let response = HttpResponse {
        status: 200,
        headers: vec![],
        body: br#"{"id":"c1","created":5,"model":"qwen-turbo","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#.to_vec(),
    };
    let parsed = instance.parse_response(&response).await.unwrap().unwrap();
    assert_eq!(parsed.choices[0].message.content.as_deref(), Some("Hi"));
    assert_eq!(parsed.usage.unwrap().total_tokens, 4);

    let error = HttpResponse { status: 503, headers: vec![], body: br#"{"error":{"message":"overloaded"}}"#.to_vec() };
    let error = instance.parse_response(&error).await.unwrap().unwrap_err();
    assert!(error.retryable && error.status == 503, "{error:?}");

    let mut decoder = plugin.instantiate().await.unwrap().stream_decoder("qwen-turbo").await.unwrap();
    let event = SseEvent {
        event: None,
        data: r#"{"id":"c2","created":6,"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":"length"}]}"#
            .into(),
    };
    let chunks = decoder.push(&event).await.unwrap().unwrap();
    let delta = &chunks[0].choices[0];
    assert_eq!(delta.content.as_deref(), Some("Hello"));
    assert_eq!(delta.finish_reason, Some(FinishReason::Length));
    assert_eq!(delta.refusal, None, "0.1.0 has no streamed refusal: adapted as None");
    assert!(decoder.finish().await.unwrap().unwrap().is_empty());
}

/// The legacy plugin with every `@0.1.0` of its interface names (and its `describe`) rewritten
/// to `0.0.9`: a component built against a contract this host never supported.
#[tokio::test]
async fn a_plugin_built_against_an_unsupported_version_is_refused_naming_both() {
    let mut wasm = bytes("test/legacy_0_1.wasm");
    let mut patched = 0;
    for i in 0..wasm.len().saturating_sub(5) {
        if &wasm[i..i + 5] == b"0.1.0" {
            wasm[i..i + 5].copy_from_slice(b"0.0.9");
            patched += 1;
        }
    }
    assert!(patched >= 2, "interface names and describe both carry the version");
    let err = runtime().load_bytes("old.wasm".into(), wasm).await.unwrap_err();
    assert!(
        matches!(&err, LoadError::IncompatibleContract { plugin_contract, .. } if plugin_contract == "0.0.9"),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("0.0.9") && message.contains(CONTRACT_VERSION) && message.contains("0.1.x"), "{message}");
}

/// plugins/legacy-0-2: wit-bindgen directly on wit/provider@0.2.0. Served through bindings of
/// the current types (no conversion): its streamed refusal arrives; it has no capabilities, and
/// an embeddings call is answered by the host without entering it.
#[tokio::test]
async fn a_plugin_built_against_0_2_loads_with_the_same_types_and_no_capabilities() {
    use aigate_plugins::canonical::EmbeddingsRequest;

    assert!(SUPPORTED_CONTRACTS.contains(&"0.2.0"));
    let plugin = runtime().load(&dist("test/legacy_0_2.wasm")).await.unwrap();
    assert_eq!((plugin.name(), plugin.contract_version()), ("legacy2", "0.2.0"));
    assert!(!plugin.capabilities().embeddings && plugin.capabilities().native_apis.is_empty());

    let mut instance = plugin.instantiate().await.unwrap();
    let http = instance.build_request(BASE_URL, &chat_request("qwen-turbo")).await.unwrap().unwrap();
    assert_eq!(http.url, format!("{BASE_URL}/chat/completions"));
    let request = EmbeddingsRequest { model: "m".into(), input: vec!["x".into()], dimensions: None, user: None };
    let refused = instance.build_embeddings_request(BASE_URL, &request).await.unwrap().unwrap_err();
    assert_eq!((refused.status, refused.code.as_deref()), (400, Some("embeddings_unsupported")));
    assert!(refused.message.contains("contract 0.2.0"), "{}", refused.message);

    let mut decoder = plugin.instantiate().await.unwrap().stream_decoder("qwen-turbo").await.unwrap();
    let event = SseEvent {
        event: None,
        data: r#"{"id":"c3","created":6,"choices":[{"index":0,"delta":{"refusal":"No."},"finish_reason":null}]}"#
            .into(),
    };
    let chunks = decoder.push(&event).await.unwrap().unwrap();
    assert_eq!(chunks[0].choices[0].refusal.as_deref(), Some("No."), "0.2.0 carries streamed refusals");
}
