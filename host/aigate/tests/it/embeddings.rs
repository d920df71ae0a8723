//! `POST /v1/embeddings` (issue 11): the official OpenAI Python SDK against qwen and openai
//! plugins (mock DashScope's OpenAI-compatible embeddings), and what the shared pipeline gives
//! it: scopes, fallbacks, idempotency, metering and billing per input token.

use std::path::Path;
use std::time::Duration;

use aigate_testkit::embeddings::{tokens, vector};
use aigate_testkit::{Scenario, errors};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{JsonBody, Setup, TestGateway, assert_error, eventually, start, start_with, unique};

async fn embed(gw: &TestGateway, body: &Value, idem: Option<&str>) -> reqwest::Response {
    let mut r = gw
        .http
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    if let Some(key) = idem {
        r = r.header("idempotency-key", key);
    }
    r.send().await.unwrap()
}

fn embeddings_requests(gw: &TestGateway) -> Vec<Value> {
    gw.mock.requests().iter().filter(|r| r.path.ends_with("/embeddings")).map(|r| r.json()).collect()
}

async fn ledger(gw: &TestGateway, request_id: &str) -> Value {
    let path = format!("/admin/requests/{request_id}?org=test");
    assert!(eventually(Duration::from_secs(5), async || gw.admin_json(&path).await.0 == 200).await);
    gw.admin_json(&path).await.1
}

#[tokio::test]
async fn vectors_come_back_in_order_as_floats_or_base64() {
    let gw = start().await;
    let texts = ["first text", "a second, longer text"];
    for (model, upstream_model) in
        [("qwen:text-embedding-v4", "text-embedding-v4"), ("openai:text-embedding-3-small", "text-embedding-3-small")]
    {
        let r = embed(&gw, &json!({"model": model, "input": texts, "dimensions": 256}), None).await;
        assert_eq!(r.status(), 200, "{model}");
        assert_eq!(r.headers()["x-aigate-model"], model);
        let body = r.json_value().await;
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], model);
        let expected_tokens = tokens(texts[0]) + tokens(texts[1]);
        assert_eq!(body["usage"], json!({"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}));
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(body["data"][i]["index"], i);
            assert_eq!(body["data"][i]["object"], "embedding");
            assert_eq!(body["data"][i]["embedding"], json!(vector(text, 256)), "{model} vector {i}");
        }
        let sent = embeddings_requests(&gw).pop().unwrap();
        assert_eq!(
            sent,
            json!({"model": upstream_model, "input": texts, "dimensions": 256, "encoding_format": "float"})
        );
    }

    let r = embed(&gw, &json!({"model": "qwen:text-embedding-v3", "input": "one", "encoding_format": "base64"}), None)
        .await;
    let body = r.json_value().await;
    let text = body["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
    let floats: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(floats, vector("one", aigate_testkit::embeddings::DEFAULT_DIMENSIONS));
}

#[tokio::test]
async fn the_openai_python_sdk_gets_the_providers_vectors() {
    if !crate::sdk::sdk_available() {
        assert!(
            std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "python3 with the `openai` package is required here (pip install openai)"
        );
        return;
    }
    let gw = start().await;
    for model in ["qwen:text-embedding-v4", "openai:text-embedding-3-small"] {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_embeddings_check.py");
        let output = tokio::process::Command::new("python3")
            .arg(script)
            .arg(&gw.base)
            .arg(model)
            .arg(&gw.key)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{model}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        let expected = json!([vector("The quick brown fox", 64), vector("jumps over the lazy dog", 64)]);
        for line in &lines {
            assert_eq!(line["vectors"], expected, "{model} {}", line["encoding"]);
            assert_eq!(line["model"], model);
        }
    }
}

#[tokio::test]
async fn metered_per_input_token_with_the_api_in_the_ledger() {
    let gw = start().await;
    let text = "x".repeat(4000);
    let r = embed(&gw, &json!({"model": "openai:text-embedding-3-small", "input": [text]}), None).await;
    assert_eq!(r.status(), 200);
    // 1000 tokens at USD 0.02 per million (prices/openai-usd.toml).
    assert_eq!(r.headers()["x-aigate-cost"], "0.000020000 USD");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let record = ledger(&gw, &request_id).await;
    let attempt = &record["attempts"][0];
    assert_eq!(attempt["api"], "embeddings");
    assert_eq!(attempt["prompt_tokens"], 1000);
    assert_eq!(attempt["completion_tokens"], 0);
    assert_eq!(attempt["outcome"], "completed");
}

#[tokio::test]
async fn bad_requests_are_400s_and_reach_no_provider() {
    let gw = start().await;
    for body in [
        json!({"model": "qwen:text-embedding-v4"}),
        json!({"model": "qwen:text-embedding-v4", "input": []}),
        json!({"model": "qwen:text-embedding-v4", "input": [[1, 2, 3]]}),
        json!({"model": "qwen:text-embedding-v4", "input": "x", "encoding_format": "int8"}),
    ] {
        assert_error(embed(&gw, &body, None).await, 400, "invalid_parameter").await;
    }
    // A plugin without embeddings (the faulty test plugin has the SDK's defaults).
    let err = assert_error(
        embed(&gw, &json!({"model": "faulty:healthy", "input": "x"}), None).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert!(err["error"]["message"].as_str().unwrap().contains("cannot make embeddings"), "{err}");
    assert_error(embed(&gw, &json!({"model": "nobody:nothing", "input": "x"}), None).await, 404, "model_not_found")
        .await;
    assert!(embeddings_requests(&gw).is_empty());
}

#[tokio::test]
async fn a_failing_provider_falls_back_and_an_idempotent_retry_replays() {
    let gw = start().await;
    gw.mock.enqueue(Scenario::Error { status: 503, body: errors::model_unavailable().body });
    let body =
        json!({"model": "qwen:text-embedding-v4", "input": ["a"], "fallbacks": ["openai:text-embedding-3-small"]});
    let key = unique("embeddings");
    let r = embed(&gw, &body, Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-model"], "openai:text-embedding-3-small");
    assert_eq!(r.headers()["x-aigate-attempts"], "2");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let first = r.json_value().await;
    let again = embed(&gw, &body, Some(&key)).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json_value().await, first);
    assert_eq!(embeddings_requests(&gw).len(), 2, "one failure, one success, no call for the replay");
    let record = ledger(&gw, &request_id).await;
    let outcomes: Vec<&str> =
        record["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retried", "completed"], "{record}");
}

#[tokio::test]
async fn the_keys_model_scope_holds() {
    let gw = start_with(Setup::default()).await;
    let (status, created) = gw.admin_post("/admin/keys", &json!({"org": "test", "models": "qwen:qwen-*"})).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    let r = gw
        .http
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(json!({"model": "qwen:text-embedding-v4", "input": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "model_not_allowed").await;
    assert!(embeddings_requests(&gw).is_empty());
}

#[tokio::test]
async fn limits_count_the_input_tokens() {
    let gw = start().await;
    let key = aigate::admin::create_key(
        &gw.gateway.as_ref().unwrap().state().store,
        &aigate::admin::CreateKey { org: "test".into(), tpm: Some(2000), ..Default::default() },
    )
    .await
    .unwrap()
    .key;
    let call = |text: String| {
        let key = key.clone();
        let http = gw.http.clone();
        let url = gw.url("/v1/embeddings");
        async move {
            http.post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(json!({"model": "qwen:text-embedding-v4", "input": text}).to_string())
                .send()
                .await
                .unwrap()
        }
    };
    // ~1,000 input tokens of 2,000 a minute: exactly the input is reserved (no completion
    // tokens for an embeddings call), and settled on the provider's count (the same here).
    let r = call("x".repeat(4000)).await;
    assert_eq!(r.status(), 200);
    let left: u64 = r.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
    assert!((990..=1000).contains(&left), "{left} tokens left");
    // ~2,000 more do not fit: refused before the provider is called.
    assert_error(call("x".repeat(8000)).await, 429, "rate_limit_exceeded").await;
    assert_eq!(embeddings_requests(&gw).len(), 1);
}
