//! A faulty plugin fails only its own request; the gateway and other plugins keep serving.

use serde_json::Value;

use crate::harness::{JsonBody, Setup, TestGateway, assert_error, chat_body, start_with, stream_body};

async fn gateway() -> TestGateway {
    // Tight limits so the faults trip quickly.
    start_with(Setup {
        plugin_limits: "memory_limit_mib = 32\ncpu_timeout_ms = 100\nwall_timeout_ms = 1000\n".into(),
        ..Default::default()
    })
    .await
}

async fn still_serving(gw: &TestGateway) {
    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(r.status(), 200, "qwen still serves");
    let r = gw.chat(&chat_body("faulty:healthy")).await;
    assert_eq!(r.status(), 200, "a fresh instance of the faulty plugin still serves");
}

#[tokio::test]
async fn each_plugin_fault_is_a_502_for_that_request_only() {
    let gw = gateway().await;
    for (model, needle) in [
        ("faulty:trap", "trap"),
        ("faulty:loop", "cpu"),
        ("faulty:oom", "memory"),
        ("faulty:garbage", ""),
        ("faulty:parse-trap", "trap"),
    ] {
        let body: Value = assert_error(gw.chat(&chat_body(model)).await, 502, "plugin_error").await;
        let message = body["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(message.contains("faulty"), "{model}: names the plugin: {message}");
        assert!(message.contains(needle), "{model}: says what happened: {message}");
        assert_eq!(body["error"]["type"], "plugin_error");
        still_serving(&gw).await;
    }
}

#[tokio::test]
async fn a_decoder_that_traps_fails_its_stream_only() {
    let gw = gateway().await;
    assert_error(gw.chat(&stream_body("faulty:stream-trap", true)).await, 502, "plugin_error").await;
    let ok = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    still_serving(&gw).await;
}

#[tokio::test]
async fn concurrent_faults_do_not_disturb_healthy_requests() {
    let gw = gateway().await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let model = if i % 3 == 0 {
            "faulty:loop"
        } else if i % 3 == 1 {
            "faulty:trap"
        } else {
            "qwen:qwen-turbo"
        };
        let http = gw.http.clone();
        let url = gw.url("/v1/chat/completions");
        let key = gw.key.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&chat_body(model)).unwrap())
                .send()
                .await
                .unwrap();
            (model, r.status().as_u16(), r.json_value().await)
        }));
    }
    for t in tasks {
        let (model, status, body) = t.await.unwrap();
        if model.starts_with("qwen") {
            assert_eq!(status, 200, "{body}");
        } else {
            assert_eq!(status, 502, "{body}");
        }
    }
}
