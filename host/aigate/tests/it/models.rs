//! `/v1/models`: the provider's live list, or the allowlist when it fails.

use aigate_testkit::{MockDashScope, ModelsBehaviour};

use crate::harness::{Setup, start_with_mock};

fn qwen_only() -> Setup {
    Setup {
        plugins: vec![("qwen.wasm", "qwen.wasm")],
        toml: "[upstream]\nmodels_timeout_ms = 400\n".into(),
        ..Default::default()
    }
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn live_list_is_filtered_to_allowed_served_models() {
    let gw = start_with_mock(qwen_only(), MockDashScope::start().await).await;
    let r = gw.http.get(gw.url("/v1/models")).bearer_auth(&gw.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-aigate-models-fallback").is_none());
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["object"], "list");
    let ids = ids(&body);
    // Chat models, and the embeddings models `/v1/embeddings` serves; not rerank or image models.
    for m in ["qwen:qwen-turbo", "qwen:qwen-plus", "qwen:qwen-max", "qwen:text-embedding-v3", "turbo"] {
        assert!(ids.contains(&m.to_owned()), "{m} in {ids:?}");
    }
    assert!(!ids.iter().any(|m| m.contains("rerank") || m.contains("wanx")), "{ids:?}");
    let models_call = gw.mock.requests().into_iter().find(|r| r.path.ends_with("/models")).unwrap();
    assert_eq!(models_call.header("authorization"), Some(format!("Bearer {}", MockDashScope::API_KEY).as_str()));
}

#[tokio::test]
async fn failing_list_falls_back_to_the_allowlist() {
    for behaviour in [ModelsBehaviour::Status(502), ModelsBehaviour::Status(504), ModelsBehaviour::Hang] {
        let mock = MockDashScope::start().await;
        mock.set_models_behaviour(behaviour.clone());
        let gw = start_with_mock(qwen_only(), mock).await;
        let r = gw.http.get(gw.url("/v1/models")).bearer_auth(&gw.key).send().await.unwrap();
        assert_eq!(r.status(), 200, "{behaviour:?}");
        assert_eq!(r.headers()["x-aigate-models-fallback"], "qwen", "{behaviour:?}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let mut ids = ids(&body);
        ids.sort();
        assert_eq!(
            ids,
            [
                "qwen:qwen-max",
                "qwen:qwen-plus",
                "qwen:qwen-turbo",
                "qwen:text-embedding-v3",
                "qwen:text-embedding-v4",
                "turbo"
            ],
            "{behaviour:?}"
        );
    }
}

#[tokio::test]
async fn one_model_by_id() {
    let gw = start_with_mock(qwen_only(), MockDashScope::start().await).await;
    let (status, body) = gw.get_json("/v1/models/qwen:qwen-plus").await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "qwen:qwen-plus");
    let (status, body) = gw.get_json("/v1/models/qwen:nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
}

/// A plugin with no models endpoint (gemini) is not a failing list: its models are served as its
/// list, with no fallback header (and no warning in the log).
#[tokio::test]
async fn a_plugin_without_a_models_endpoint_is_no_fallback() {
    let (gw, gemini) = crate::harness::start_with_gemini(Setup::default()).await;
    let r = gw.http.get(gw.url("/v1/models")).bearer_auth(&gw.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-aigate-models-fallback").is_none(), "{:?}", r.headers());
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let ids = ids(&body);
    for m in ["gemini:gemini-2.5-pro", "gemini:gemini-2.5-flash", "qwen:qwen-plus"] {
        assert!(ids.contains(&m.to_owned()), "{m} in {ids:?}");
    }
    assert!(gemini.requests().is_empty(), "nothing to ask Gemini for");
}

/// Ten listings, some at once, fetch the provider's list once per `models_cache_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_listings_fetch_the_providers_list_once_per_ttl() {
    let mut setup = qwen_only();
    setup.toml.push_str("models_cache_ms = 800\n");
    let gw = start_with_mock(setup, MockDashScope::start().await).await;
    let fetched = || gw.mock.requests().iter().filter(|r| r.path.ends_with("/models")).count();
    let listings = (0..10).map(|_| gw.get_json("/v1/models"));
    for (status, body) in futures_util::future::join_all(listings).await {
        assert_eq!(status, 200);
        assert!(ids(&body).contains(&"qwen:qwen-max".to_owned()));
    }
    assert_eq!(fetched(), 1, "ten concurrent listings, one fetch");
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    for _ in 0..3 {
        assert_eq!(gw.get_json("/v1/models").await.0, 200);
    }
    assert_eq!(fetched(), 2, "refreshed once after the TTL");
}
