//! `GET /openapi.json`: an OpenAPI 3.1 document of every route, generated from the code's
//! types; validated by `openapi-spec-validator`, and fuzzed by Schemathesis against a live
//! gateway on the mock provider (no input gets a 5xx, every answer matches the document).
//!
//! The Python tools (`pip install schemathesis openapi-spec-validator`, done by .ci/run) are
//! required when AIGATE_REQUIRE_SERVICES=1; elsewhere a test without them says so and passes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{ADMIN_TOKEN, Setup, TestGateway, start, start_with};

async fn document(gw: &TestGateway) -> Value {
    // No credentials: the document is public, like the routes' own 401s that it describes.
    let response = gw.http.get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// `(method, path)` of every route `server.rs` registers, as the document spells paths.
fn served_routes() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server.rs")).unwrap();
    let mut routes = BTreeSet::new();
    for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let path = line.trim_start_matches(".route(\"").split('"').next().unwrap().replace("{*id}", "{model}");
        for method in ["get", "post"] {
            if line.contains(&format!("{method}(")) {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    assert!(routes.len() > 20, "the route table was not found in server.rs: {routes:?}");
    routes
}

/// Every `$ref` in `value` (recursively).
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_of_every_route() {
    let gw = start().await;
    let doc = document(&gw).await;
    assert_eq!(doc["openapi"], "3.1.0");

    // Every route the router serves is described, with the method it answers.
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in served_routes() {
        let op = &paths.get(&path).unwrap_or_else(|| panic!("{path} is not in the document"))[&method];
        assert!(op.is_object(), "{method} {path} is not in the document");
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path} has no responses");
        for (status, response) in responses {
            assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {status}");
        }
    }

    // Every reference resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "$ref {r} does not resolve");
    }

    // The error schema is OpenAI's, on the OpenAI routes; Anthropic's on the Messages routes.
    let error = &schemas["ErrorObject"]["properties"];
    for field in ["message", "type", "param", "code"] {
        assert!(error.get(field).is_some(), "ErrorObject has no {field}: {error}");
    }
    let chat_errors = &paths["/v1/chat/completions"]["post"]["responses"]["4XX"];
    assert_eq!(chat_errors["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
    let messages_errors = &paths["/v1/messages"]["post"]["responses"]["5XX"];
    assert_eq!(messages_errors["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/AnthropicError");

    // Request bodies are the typed ones (not free-form objects).
    for (path, schema) in [
        ("/v1/chat/completions", "CreateChatCompletionRequest"),
        ("/v1/responses", "ResponsesRequest"),
        ("/v1/messages", "MessagesRequest"),
        ("/v1/embeddings", "CreateEmbeddingRequest"),
        ("/admin/keys", "CreateKey"),
    ] {
        let body = &paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(body, &format!("#/components/schemas/{schema}"), "{path}");
    }
    let chat = &schemas["CreateChatCompletionRequest"];
    assert_eq!(chat["required"], serde_json::json!(["model", "messages"]));
    assert_eq!(chat["properties"]["temperature"]["maximum"], 2.0);

    // Security schemes: the gateway key (Bearer, or x-api-key on Messages) and the admin token.
    let security = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in ["api_key", "anthropic_api_key", "admin_token"] {
        assert!(security.contains_key(scheme), "{scheme}");
    }
}

fn python_has(module: &str) -> bool {
    std::process::Command::new("python3").args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success())
}

/// Whether the Python tool `module` is installed; fails under AIGATE_REQUIRE_SERVICES=1 when not.
fn tool(module: &str, package: &str) -> bool {
    if python_has(module) {
        return true;
    }
    assert!(
        std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "python3 with `{package}` is required here (pip install {package})"
    );
    eprintln!("skipped: python3 with `{package}` is not installed");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates() {
    if !tool("openapi_spec_validator", "openapi-spec-validator") {
        return;
    }
    let gw = start().await;
    let file = gw.data_dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&document(&gw).await).unwrap()).unwrap();
    let script = "import sys, json\n\
                  from openapi_spec_validator import validate, OpenAPIV31SpecValidator\n\
                  validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
                  print('valid')";
    let out = tokio::process::Command::new("python3").args(["-c", script]).arg(&file).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("valid"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// One Schemathesis run over `include` (a path regex) with `token`, bounded in examples and
/// time: whether it passed, and what it printed.
async fn schemathesis(gw: &TestGateway, token: &str, include: &str) -> (bool, String) {
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
    let run = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "run", &gw.url("/openapi.json")])
        .args(["--checks", checks, "--include-path-regex", include])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Bounded: at most this many cases per operation and this long per run.
        .args(["--max-examples", "30", "--max-time", "90", "--seed", "1", "--request-timeout", "20"])
        // Not the `examples` phase: `coverage` already sends each schema's boundary and enum
        // values. One worker: Schemathesis' workers are threads, and Hypothesis is not made for
        // threads.
        .args(["--phases", "coverage,fuzzing", "--workers", "1", "--generation-database", "none"])
        .current_dir(gw.data_dir.path())
        .kill_on_drop(true)
        .output();
    // The run stops by itself well before this; a hang is a failure, not a stall.
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.expect("schemathesis ran past 5 minutes");
    let out = out.unwrap();
    let printed = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), printed)
}

/// Whether a failed run's only complaint is Hypothesis' own `FlakyFailure` while generating
/// cases (seen in CI, about one run in three there, before any request was sent): a fault of
/// the tool, not a finding. Any check failure, or any other error (a refused connection
/// included), is a finding.
fn only_a_generation_flake(printed: &str) -> bool {
    let Some((_, errors)) = printed.split_once("= ERRORS =") else { return false };
    // One block per operation, each headed by a `____ METHOD /path ____` line.
    let mut blocks = errors.split("\n___").skip(1).peekable();
    !printed.contains("= FAILURES =")
        && blocks.peek().is_some()
        && blocks.all(|block| block.contains("hypothesis.errors.FlakyFailure"))
}

/// Schemathesis over `include` with `token`; run again once when the tool itself flaked.
async fn fuzz(gw: &TestGateway, token: &str, include: &str) {
    let (mut passed, mut printed) = schemathesis(gw, token, include).await;
    if !passed && only_a_generation_flake(&printed) {
        eprintln!("schemathesis flaked in its own case generation on {include}; running it again:\n{printed}");
        (passed, printed) = schemathesis(gw, token, include).await;
    }
    assert!(passed, "schemathesis found failures on {include}:\n{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    if !tool("schemathesis", "schemathesis") {
        return;
    }
    // The qwen plugin only: every call a fuzzed body can make reaches the mock DashScope.
    let gw = start_with(Setup { plugins: vec![("qwen.wasm", "qwen.wasm")], ..Setup::default() }).await;
    fuzz(&gw, &gw.key, "^/(v1|health|openapi)").await;
    fuzz(&gw, ADMIN_TOKEN, "^/(admin|metrics)").await;
}

#[test]
fn only_the_tools_own_flake_is_run_again() {
    let flake = "✅ Fuzzing\n==== ERRORS ====\n____ POST /v1/chat/completions ____\nRuntime Error\n\n\
                 | hypothesis.errors.FlakyFailure: Inconsistent results\n==== SUMMARY ====\n";
    assert!(only_a_generation_flake(flake));
    let refused = "==== ERRORS ====\n____ POST /v1/chat/completions ____\nRuntime Error\n\
                   hypothesis.errors.FlakyFailure\n____ GET /v1/models ____\nNetwork Error\nConnection refused\n";
    assert!(!only_a_generation_flake(refused));
    let finding = "==== ERRORS ====\n____ POST /v1/chat/completions ____\nhypothesis.errors.FlakyFailure\n\
                   ==== FAILURES ====\n____ GET /v1/models ____\nServer error\n";
    assert!(!only_a_generation_flake(finding));
    assert!(!only_a_generation_flake("==== FAILURES ====\n____ GET /v1/models ____\nServer error\n"));
}
