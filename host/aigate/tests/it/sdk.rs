//! The official OpenAI Python SDK against the gateway (scripts/openai_sdk_check.py).
//!
//! Needs `python3` with the `openai` package (`pip install openai`). Without
//! it the test says so and passes, unless AIGATE_REQUIRE_SERVICES=1 (set by
//! .ci/run), where a missing SDK is a failure.

use std::path::Path;

use aigate_testkit::{AnthropicScenario, GeminiScenario, Scenario};

use crate::harness::{Setup, TestGateway, start, start_with_anthropic, start_with_gemini};

pub(crate) fn sdk_available() -> bool {
    std::process::Command::new("python3").args(["-c", "import openai"]).status().is_ok_and(|s| s.success())
}

/// Runs the script against `model` through `gw`; `None` when the SDK is not
/// installed (and not required).
async fn run_sdk_check(gw: &TestGateway, model: &str) -> Option<String> {
    if !sdk_available() {
        assert!(
            std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "python3 with the `openai` package is required here (pip install openai)"
        );
        eprintln!("skipped: python3 with the `openai` package is not installed");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_sdk_check.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&gw.base)
        .arg(model)
        .arg(&gw.key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("stream:") && stdout.contains("usage="), "{stdout}");
    Some(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_chat_and_stream() {
    let gw = start().await;
    // The script's calls in order: chat, stream, the tool call, the answer to its result.
    for scenario in [Scenario::Normal, Scenario::Normal, Scenario::ToolCall, Scenario::Normal] {
        gw.mock.enqueue(scenario);
    }
    if run_sdk_check(&gw, "qwen:qwen-turbo").await.is_none() {
        return;
    }
    // The SDK's calls reached the provider: a chat, a stream, a tool round trip (plus models).
    assert_eq!(gw.mock.chat_requests(), 4);
}

/// The same script, unchanged, against Anthropic's Messages API behind the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_against_anthropic() {
    let (gw, anthropic) = start_with_anthropic(Setup::default()).await;
    for scenario in [AnthropicScenario::Normal, AnthropicScenario::Normal, AnthropicScenario::ToolCall] {
        anthropic.enqueue(scenario);
    }
    let Some(stdout) = run_sdk_check(&gw, "anthropic:claude-sonnet-4-5").await else {
        return;
    };
    assert!(stdout.contains("Hello from claude-sonnet-4-5!"), "{stdout}");
    assert_eq!(anthropic.messages_requests().len(), 4);
    assert_eq!(gw.mock.chat_requests(), 0);
}

/// The same script, unchanged, against Google's Gemini API behind the gateway: JSON, a stream
/// with usage, a tool call round trip (Gemini gives calls no ids: the plugin makes them, and
/// maps the result back to the function's name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_against_gemini() {
    let (gw, gemini) = start_with_gemini(Setup::default()).await;
    for scenario in [GeminiScenario::Normal, GeminiScenario::Normal, GeminiScenario::ToolCall] {
        gemini.enqueue(scenario);
    }
    let Some(stdout) = run_sdk_check(&gw, "gemini:gemini-2.5-flash").await else {
        return;
    };
    assert!(stdout.contains("Hello from gemini-2.5-flash!"), "{stdout}");
    let calls = gemini.generate_requests();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|r| r.header("x-goog-api-key") == Some(aigate_testkit::MockGemini::API_KEY)));
    assert_eq!(calls[1].query.as_deref(), Some("alt=sse"), "the stream asks for SSE");
    // The tool result went back as the named function's response.
    let round_trip = calls[3].json();
    assert_eq!(
        round_trip.pointer("/contents/2/parts/0/functionResponse/name").and_then(|v| v.as_str()),
        Some("get_current_weather"),
        "{round_trip}"
    );
    assert_eq!(gw.mock.chat_requests(), 0);
}
