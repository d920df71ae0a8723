//! `aigate plugin check`: the real binary against the real plugin components and the repository's
//! fixtures (`fixtures/<provider>/`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::artifact;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

async fn check(plugin: &str) -> (Output, String) {
    check_with(plugin, &fixtures()).await
}

async fn check_with(plugin: &str, fixtures: &Path) -> (Output, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .args(["plugin", "check"])
        .arg(artifact(plugin))
        .arg("--fixtures")
        .arg(fixtures)
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
    for case in [
        "generic/describe",
        "generic/build-request",
        "generic/build-request-stream",
        "generic/stream-empty-finish",
        "generic/parse-response-garbage",
        "generic/stream-garbage",
        "generic/stream-usage",
    ] {
        assert!(report.contains(&format!("PASS {case}\n")), "{case} missing:\n{report}");
    }
    assert!(report.contains(&format!("PASS {provider}/basic/build-request")), "{report}");
    assert!(report.contains(&format!("PASS {provider}/stream/stream")), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    assert!(!report.contains("WARN"), "{report}");
    assert!(report.contains("coverage: "), "{report}");
    assert!(report.trim_end().ends_with("0 failed: OK"), "{report}");
}

/// The embeddings interface of a plugin that declares it: generic checks and fixtures.
async fn passes_embeddings(plugin: &str, provider: &str, cases: &[&str]) {
    let (_, report) = check(plugin).await;
    for case in ["generic/build-embeddings-request", "generic/parse-embeddings-garbage"] {
        assert!(report.contains(&format!("PASS {case}\n")), "{case} missing:\n{report}");
    }
    for case in cases {
        assert!(report.contains(&format!("PASS {provider}/{case}\n")), "{case} missing:\n{report}");
    }
}

#[tokio::test]
async fn qwen_passes_its_fixtures() {
    passes("qwen.wasm", "qwen").await;
    passes_embeddings(
        "qwen.wasm",
        "qwen",
        &["embeddings/build-embeddings-request", "embeddings/parse-embeddings-response"],
    )
    .await;
}

#[tokio::test]
async fn openai_passes_its_fixtures() {
    passes("openai.wasm", "openai").await;
    passes_embeddings(
        "openai.wasm",
        "openai",
        &[
            "embeddings/build-embeddings-request",
            "embeddings/parse-embeddings-response",
            "embeddings-error-invalid-api-key/embeddings-error",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_plugin_without_embeddings_is_not_checked_for_them() {
    let (_, report) = check("anthropic.wasm").await;
    assert!(!report.contains("embeddings-request"), "{report}");
    assert!(report.contains(", embeddings 0"), "{report}");
}

#[tokio::test]
async fn anthropic_passes_its_fixtures() {
    passes("anthropic.wasm", "anthropic").await;
}

#[tokio::test]
async fn gemini_passes_its_fixtures() {
    // Written on the custom scaffold: no `stream` case, its streams are named by what they hold.
    let (output, report) = check("gemini.wasm").await;
    assert!(output.status.success(), "gemini should pass:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    for case in [
        "gemini/basic/build-request",
        "gemini/basic/parse-response",
        "gemini/stream-thoughts/stream",
        "gemini/stream-tool-call/stream",
    ] {
        assert!(report.contains(&format!("PASS {case}")), "{case} missing:\n{report}");
    }
    assert!(!report.contains("FAIL"), "{report}");
    assert!(report.trim_end().ends_with("0 failed: OK"), "{report}");
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
    // It serves no embeddings: the provider's embeddings cases are skipped, not failed.
    assert!(report.contains("openai/embeddings: skipped, the plugin's capabilities declare no embeddings"), "{report}");
    assert!(report.trim_end().ends_with("2 failed, 2 warning(s): FAILED"), "{report}");
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

/// `plugins/careless`'s own fixtures (its mistakes are written down there as its author believed).
fn careless_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures")
}

/// A failed check's report lines: `FAIL name` and the indented lines under it.
fn failure<'a>(report: &'a str, name: &str) -> &'a str {
    let start = report.find(&format!("FAIL {name}\n")).unwrap_or_else(|| panic!("no FAIL {name}:\n{report}"));
    let rest = &report[start..];
    let end = rest[1..].find("\nPASS ").or_else(|| rest[1..].find("\nFAIL ")).or_else(|| rest[1..].find("\ncoverage"));
    end.map_or(rest, |end| &rest[..=end])
}

#[tokio::test]
async fn without_fixtures_the_generic_checks_report_every_silent_mistake() {
    // plugins/careless: the mistakes a Gemini plugin once made while the checker said "5 passed, OK".
    let empty = tempfile::tempdir().unwrap();
    let (output, report) = check_with("test/careless.wasm", empty.path()).await;
    assert!(!output.status.success(), "must fail:\n{report}");
    assert!(failure(&report, "generic/build-request").contains("`text/plain`"), "{report}");
    assert!(failure(&report, "generic/build-request-stream").contains("?alt=sse"), "{report}");
    let garbage = failure(&report, "generic/parse-response-garbage");
    assert!(garbage.contains("an HTML 502 page:") && garbage.contains("an empty 200 body:"), "{report}");
    assert!(report.contains("PASS generic/stream-garbage\n"), "{report}");
    // No fixture can show usage or a max-tokens stop: said, not passed over.
    assert!(report.contains("WARN no stream fixture (response.sse)") && report.contains("billed at zero"), "{report}");
    assert!(report.contains("WARN no fixture ends with finish_reason `length`"), "{report}");
    assert!(report.contains("WARN no error fixture"), "{report}");
    assert!(report.contains("coverage: 0 case(s): request.json 0, expected_upstream.json 0, response.json 0, response.sse 0, error.json 0"), "{report}");
    assert!(report.trim_end().ends_with("warning(s): FAILED"), "{report}");
}

#[tokio::test]
async fn with_fixtures_the_checker_reports_what_each_case_hides() {
    let (output, report) = check_with("test/careless.wasm", &careless_fixtures()).await;
    assert!(!output.status.success(), "must fail:\n{report}");
    // Its stream fixtures pass one by one, yet none of them yields usage.
    assert!(report.contains("PASS careless/stream/stream\n"), "{report}");
    assert!(failure(&report, "generic/stream-usage").contains("billed at zero"), "{report}");
    // MAX_TOKENS mapped to stop, although the fixture expects what the plugin does.
    assert!(report.contains("PASS careless/max-tokens/parse-response\n"), "{report}");
    assert!(
        failure(&report, "careless/max-tokens/finish-length")
            .contains("exactly the request's max_tokens (5 completion tokens) but finish_reason is `stop`"),
        "{report}"
    );
    // A misspelt file is named, twice: as unknown, and as the reason the case checks nothing.
    assert!(failure(&report, "careless/misspelt/files").contains("`respnse.json`"), "{report}");
    assert!(failure(&report, "careless/misspelt").contains("holds request.json, respnse.json"), "{report}");
    // A wrong chunk count names the extra chunk.
    assert!(
        failure(&report, "careless/stream-count/stream")
            .contains(r#"$.chunks[2]: extra (expected 2 element(s), got 3)"#),
        "{report}"
    );
    // Every mismatch of a case, not the first.
    let error = failure(&report, "careless/error-rate-limit/error");
    assert!(error.contains("$.code: expected") && error.contains("$.retryable: expected true, got false"), "{report}");
    assert!(report.contains("coverage: 5 case(s): request.json 4, expected_upstream.json 0, response.json 1, response.sse 2, error.json 1"), "{report}");
}
