//! The official OpenAI Python SDK against the gateway (scripts/openai_sdk_check.py).
//!
//! Needs `python3` with the `openai` package (`pip install openai`). Without
//! it the test says so and passes, unless AIGATE_REQUIRE_SERVICES=1 (set by
//! .ci/run), where a missing SDK is a failure.

use std::path::Path;

use crate::harness::{Setup, TestGateway, start, start_with_anthropic};

fn sdk_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success())
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
    if run_sdk_check(&gw, "qwen:qwen-turbo").await.is_none() {
        return;
    }
    // The SDK's calls reached the provider: a chat, a stream (plus models).
    assert_eq!(gw.mock.chat_requests(), 2);
}

/// The same script, unchanged, against Anthropic's Messages API behind the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_against_anthropic() {
    let (gw, anthropic) = start_with_anthropic(Setup::default()).await;
    let Some(stdout) = run_sdk_check(&gw, "anthropic:claude-sonnet-4-5").await else {
        return;
    };
    assert!(stdout.contains("Hello from claude-sonnet-4-5!"), "{stdout}");
    assert_eq!(anthropic.messages_requests().len(), 2);
    assert_eq!(gw.mock.chat_requests(), 0);
}
