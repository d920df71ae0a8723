//! `aigate plugin check`: the real binary against the real plugin components and the repository's
//! fixtures (`fixtures/<provider>/`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::artifact;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

async fn check(plugin: &str) -> (Output, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .args(["plugin", "check"])
        .arg(artifact(plugin))
        .arg("--fixtures")
        .arg(fixtures())
        .env("AIGATE_LOG", "warn")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, report)
}

async fn passes(plugin: &str, provider: &str) {
    let (output, report) = check(plugin).await;
    assert!(output.status.success(), "{plugin} should pass:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains(&format!("fixtures {}", fixtures().join(provider).display())), "{report}");
    for case in ["generic/describe", "generic/build-request", "generic/stream-empty-finish"] {
        assert!(report.contains(&format!("PASS {case}\n")), "{case} missing:\n{report}");
    }
    assert!(report.contains(&format!("PASS {provider}/basic/build-request")), "{report}");
    assert!(report.contains(&format!("PASS {provider}/stream/stream")), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    assert!(report.trim_end().ends_with("0 failed: OK"), "{report}");
}

#[tokio::test]
async fn qwen_passes_its_fixtures() {
    passes("qwen.wasm", "qwen").await;
}

#[tokio::test]
async fn openai_passes_its_fixtures() {
    passes("openai.wasm", "openai").await;
}

#[tokio::test]
async fn anthropic_passes_its_fixtures() {
    passes("anthropic.wasm", "anthropic").await;
}

#[tokio::test]
async fn a_plugin_that_maps_a_field_wrongly_fails_with_a_clear_report() {
    // plugins/mismapped: the openai plugin (it names itself `openai`) sending `max_token`.
    let (output, report) = check("test/mismapped.wasm").await;
    assert!(!output.status.success(), "must fail:\n{report}");
    assert!(report.contains("plugin openai "), "{report}");
    assert!(
        report.contains(
            "FAIL openai/basic/build-request\n     $.body.max_completion_tokens: expected 64, but the key is missing"
        ),
        "{report}"
    );
    // Everything the plugin maps right still passes: the report points at the one mistake.
    assert!(report.contains("PASS openai/basic/parse-response"), "{report}");
    assert!(report.trim_end().ends_with("2 failed: FAILED"), "{report}");
}

#[tokio::test]
async fn a_file_that_is_not_a_plugin_fails_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .args(["plugin", "check"])
        .arg(&bogus)
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{report}");
    assert!(report.contains("FAIL load\n"), "{report}");
    assert!(report.contains("not a valid WebAssembly component"), "{report}");
}
