//! The official OpenAI Python SDK against the gateway (scripts/openai_sdk_check.py).
//!
//! Needs `python3` with the `openai` package (`pip install openai`). Without
//! it the test says so and passes, unless AIGATE_REQUIRE_SERVICES=1 (set by
//! .ci/run), where a missing SDK is a failure.

use std::path::Path;

use crate::harness::start;

fn sdk_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_chat_and_stream() {
    if !sdk_available() {
        assert!(
            std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "python3 with the `openai` package is required here (pip install openai)"
        );
        eprintln!("skipped: python3 with the `openai` package is not installed");
        return;
    }
    let gw = start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai_sdk_check.py");
    let base = gw.base.clone();
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&base)
        .arg("qwen:qwen-turbo")
        .arg(&gw.key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SDK check failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("stream:") && stdout.contains("usage="), "{stdout}");
    // The SDK's calls reached the provider: a chat, a stream (plus models).
    assert_eq!(gw.mock.chat_requests(), 2);
}
