//! OpenAI's Responses API as an inbound API (`/v1/responses`, issue 11): the official OpenAI
//! Python SDK against the gateway, and the event sequence it parses.

use std::path::Path;

use aigate_testkit::Scenario;
use serde_json::{Value, json};

use crate::harness::{JsonBody, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_responses_against_qwen_and_openai() {
    if !crate::sdk::sdk_available() {
        assert!(std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"), "the openai package is required");
        eprintln!("skipped: python3 with the `openai` package is not installed");
        return;
    }
    // The qwen plugin, and the openai plugin (OpenAI's own format) against the same mock.
    for model in ["qwen:qwen-turbo", "openai:qwen-turbo"] {
        let gw = start().await;
        for scenario in [Scenario::Normal, Scenario::Normal, Scenario::ToolCall, Scenario::Normal] {
            gw.mock.enqueue(scenario);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_responses_check.py");
        let output = tokio::process::Command::new("python3").arg(script).arg(&gw.base).arg(model).arg(&gw.key).output();
        let output = output.await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{model}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("tool: get_current_weather"), "{stdout}");
        assert_eq!(gw.mock.chat_requests(), 4);
        let last = gw.mock.requests().into_iter().filter(|r| r.path.ends_with("/chat/completions")).last().unwrap();
        let roles: Vec<String> = last.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(roles, ["user", "assistant", "tool"]);
    }
}

#[tokio::test]
async fn a_stream_numbers_its_events_and_ends_with_the_whole_response() {
    let gw = start().await;
    let body = json!({"model": "qwen:qwen-turbo", "input": "Who are you?", "stream": true});
    let r = gw.chat_at("/v1/responses", &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let payloads: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let numbers: Vec<u64> = payloads.iter().map(|p| p["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..payloads.len() as u64).collect::<Vec<_>>(), "increasing from 0");
    assert!(!text.contains("[DONE]"), "no sentinel on this API");
    let last = payloads.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let deltas: String = payloads
        .iter()
        .filter(|p| p["type"] == "response.output_text.delta")
        .map(|p| p["delta"].as_str().unwrap())
        .collect();
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], deltas);
    assert!(last["response"]["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let stateful = json!({"model": "qwen:qwen-turbo", "input": "x", "previous_response_id": "resp_1"});
    let r = gw.chat_at("/v1/responses", &stateful).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json_value().await["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn reasoning_effort_is_mapped_for_the_target() {
    let gw = start().await;
    // qwen: thinking on for a stream; the raw key never reaches DashScope.
    let body = json!({"model": "qwen:qwen-plus", "input": "Think.", "stream": true, "reasoning": {"effort": "high"}});
    assert_eq!(gw.chat_at("/v1/responses", &body).await.status(), 200);
    // openai: OpenAI's own parameter, as is.
    let body = json!({"model": "openai:qwen-turbo", "input": "Think.", "reasoning": {"effort": "low"}});
    assert_eq!(gw.chat_at("/v1/responses", &body).await.status(), 200);
    let sent: Vec<Value> =
        gw.mock.requests().iter().filter(|r| r.path.ends_with("/chat/completions")).map(|r| r.json()).collect();
    assert_eq!(sent[0]["enable_thinking"], true, "{}", sent[0]);
    assert!(sent[0].get("reasoning_effort").is_none(), "{}", sent[0]);
    assert_eq!(sent[1]["reasoning_effort"], "low", "{}", sent[1]);

    let bad = json!({"model": "qwen:qwen-plus", "input": "x", "reasoning": {"effort": "extreme"}});
    let err = crate::harness::assert_error(gw.chat_at("/v1/responses", &bad).await, 400, "invalid_parameter").await;
    assert_eq!(err["error"]["param"], "reasoning.effort");
}
