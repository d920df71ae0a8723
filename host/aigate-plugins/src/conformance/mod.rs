//! The conformance checker behind `aigate plugin check`: load a component exactly as the gateway
//! does, then run it against a generic set of checks every plugin must pass and against the
//! fixture folders of its provider.
//!
//! # Fixtures
//!
//! Fixtures live in the repository at `fixtures/<provider>/<case>/`, where `<provider>` is the
//! name the plugin's `describe` returns. Each case folder is one scenario and holds some of:
//!
//! | file | meaning |
//! |---|---|
//! | `request.json` | a canonical request (JSON form: see [`json::chat_request`]) |
//! | `expected_upstream.json` | `{"method", "url_suffix", "headers", "body"}`: what `build-request` must produce for `request.json` against the plugin's default base URL |
//! | `response.json` | a recorded provider response body (HTTP 200) for `parse-response` |
//! | `response.sse` | a recorded provider SSE stream, fed event by event to a stream decoder |
//! | `expected.json` | the canonical output of `response.json` (a chat response) or of `response.sse` (`{"chunks": […]}`); `{"error": {…}}` when the provider's error is expected instead |
//! | `error.json` | `{"status", "headers"?, "body", "expected": {"status", "code", "retryable", …}}`: a provider error response and the error class `parse-response` must give it |
//!
//! Expected values are compared semantically ([`json::first_mismatch`]): key order does not
//! matter, only listed keys are compared, arrays must have the same length. Header names are
//! compared in lower case; the body is compared as JSON.

pub mod json;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::canonical::{
    ChatRequest, HttpResponse, Message, MessageContent, ProviderError, Role, SseEvent,
};
use crate::{LoadedPlugin, PluginFault, PluginRuntime};

/// The outcome of checking one plugin file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The component file checked.
    pub file: PathBuf,
    /// `name version (contract x.y.z), sha256 <hex>` once the plugin loaded.
    pub plugin: Option<String>,
    /// The fixture folder used, if the provider has one.
    pub fixtures: Option<PathBuf>,
    /// One entry per check, in the order run.
    pub cases: Vec<CaseResult>,
}

/// One check: `generic/<check>` or `<provider>/<case>/<check>`.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// `None` when the check passed; otherwise the first mismatch, in words.
    pub failure: Option<String>,
}

impl Report {
    /// Whether every check passed (and there was at least one: a plugin that did not load fails).
    pub fn passed(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(|c| c.failure.is_none())
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_some()).count()
    }

    fn record(&mut self, name: impl Into<String>, outcome: Result<(), String>) {
        self.cases.push(CaseResult {
            name: name.into(),
            failure: outcome.err(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "checking {}", self.file.display())?;
        if let Some(plugin) = &self.plugin {
            writeln!(f, "plugin {plugin}")?;
        }
        match &self.fixtures {
            Some(dir) => writeln!(f, "fixtures {}", dir.display())?,
            None if self.plugin.is_some() => {
                writeln!(f, "fixtures: none for this provider (generic checks only)")?
            }
            None => {}
        }
        for case in &self.cases {
            match &case.failure {
                None => writeln!(f, "PASS {}", case.name)?,
                Some(why) => {
                    writeln!(f, "FAIL {}", case.name)?;
                    for line in why.lines() {
                        writeln!(f, "     {line}")?;
                    }
                }
            }
        }
        let failed = self.failed();
        write!(
            f,
            "{} passed, {failed} failed: {}",
            self.cases.len() - failed,
            if self.passed() { "OK" } else { "FAILED" }
        )
    }
}

/// Load `file` through `runtime` (compile, contract check, `describe`: what the gateway's
/// registry does) and run the generic checks and `fixtures_root/<name>/*` against it.
pub async fn check(runtime: &PluginRuntime, file: &Path, fixtures_root: Option<&Path>) -> Report {
    let mut report = Report {
        file: file.to_path_buf(),
        plugin: None,
        fixtures: None,
        cases: Vec::new(),
    };
    let plugin = match runtime.load(file).await {
        Ok(plugin) => plugin,
        Err(e) => {
            report.record("load", Err(e.to_string()));
            return report;
        }
    };
    // The hash is what `[plugins] trusted_hashes` pins.
    report.plugin = Some(format!(
        "{} {} (contract {}), sha256 {}",
        plugin.name(),
        plugin.version(),
        plugin.contract_version(),
        plugin.hash()
    ));
    report.record("load", Ok(()));
    generic(&plugin, &mut report).await;

    if let Some(root) = fixtures_root {
        let dir = root.join(plugin.name());
        if dir.is_dir() {
            report.fixtures = Some(dir.clone());
            match case_dirs(&dir) {
                Ok(cases) => {
                    for case in cases {
                        run_case(&plugin, &case, &mut report).await;
                    }
                }
                Err(e) => report.record(plugin.name().to_owned(), Err(e)),
            }
        }
    }
    report
}

/// Checks every plugin must pass, whatever its provider.
async fn generic(plugin: &Arc<LoadedPlugin>, report: &mut Report) {
    let info = plugin.info();
    report.record(
        "generic/describe",
        match info.models.iter().position(|m| m.id.trim().is_empty()) {
            Some(i) => Err(format!("models[{i}] has an empty id")),
            None => Ok(()),
        },
    );

    let model = info
        .models
        .first()
        .map_or_else(|| "test-model".to_owned(), |m| m.id.clone());
    let base = info.default_base_url.clone();
    for stream in [false, true] {
        let mut request = minimal_request(&model);
        request.stream = stream;
        let name = if stream {
            "generic/build-request-stream"
        } else {
            "generic/build-request"
        };
        let outcome = match build_request(plugin, &base, &request).await {
            Ok(Ok(http)) => {
                let prefix = base.trim_end_matches('/');
                if !http.method.eq_ignore_ascii_case("POST") {
                    Err(format!("method: expected POST, got {}", http.method))
                } else if !http.url.starts_with(prefix) {
                    Err(format!("url {} is not within the base URL {base}", http.url))
                } else if serde_json::from_slice::<Value>(&http.body).is_err() {
                    Err(format!(
                        "body is not JSON: {}",
                        String::from_utf8_lossy(&http.body)
                    ))
                } else {
                    Ok(())
                }
            }
            Ok(Err(e)) => Err(format!(
                "a minimal request was refused: {}",
                json::short(&json::provider_error(&e))
            )),
            Err(fault) => Err(fault.to_string()),
        };
        report.record(name, outcome);
    }

    let outcome = match decode(plugin, &model, &[]).await {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(e))) => Err(format!(
            "finish of an empty stream returned an error: {}",
            json::short(&json::provider_error(&e))
        )),
        Err(fault) => Err(fault.to_string()),
    };
    report.record("generic/stream-empty-finish", outcome);
}

fn minimal_request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message {
            role: Role::User,
            content: Some(MessageContent::Text("Hello".to_owned())),
            name: None,
            tool_calls: vec![],
            tool_call_id: None,
            reasoning_content: None,
        }],
        tools: vec![],
        tool_choice: None,
        parallel_tool_calls: None,
        temperature: None,
        top_p: None,
        max_tokens: None,
        stop: vec![],
        seed: None,
        n: None,
        presence_penalty: None,
        frequency_penalty: None,
        response_format: None,
        user: None,
        stream: false,
        extra: String::new(),
    }
}

fn case_dirs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

async fn run_case(plugin: &Arc<LoadedPlugin>, dir: &Path, report: &mut Report) {
    let case = format!(
        "{}/{}",
        plugin.name(),
        dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    );
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let request = match file("request.json") {
        Some(path) => match read_json(&path).and_then(|v| json::chat_request(&v)) {
            Ok(request) => Some(request),
            Err(e) => {
                report.record(format!("{case}/request"), Err(e));
                return;
            }
        },
        None => None,
    };
    let mut ran = false;

    if let Some(expected) = file("expected_upstream.json") {
        ran = true;
        let outcome = match &request {
            None => Err("expected_upstream.json needs a request.json beside it".to_owned()),
            Some(request) => check_upstream(plugin, request, &expected).await,
        };
        report.record(format!("{case}/build-request"), outcome);
    }
    if let Some(body) = file("response.json") {
        ran = true;
        let outcome = check_response(plugin, &body, &dir.join("expected.json")).await;
        report.record(format!("{case}/parse-response"), outcome);
    }
    if let Some(sse) = file("response.sse") {
        ran = true;
        let model = request
            .as_ref()
            .map_or_else(|| "test-model".to_owned(), |r| r.model.clone());
        let outcome = check_stream(plugin, &model, &sse, &dir.join("expected.json")).await;
        report.record(format!("{case}/stream"), outcome);
    }
    if let Some(error) = file("error.json") {
        ran = true;
        let outcome = check_error(plugin, &error).await;
        report.record(format!("{case}/error"), outcome);
    }
    if !ran {
        report.record(
            case,
            Err("no fixture files (expected_upstream.json, response.json, response.sse or error.json)".to_owned()),
        );
    }
}

async fn build_request(
    plugin: &Arc<LoadedPlugin>,
    base_url: &str,
    request: &ChatRequest,
) -> Result<Result<crate::canonical::HttpRequest, ProviderError>, PluginFault> {
    plugin
        .instantiate()
        .await?
        .build_request(base_url, request)
        .await
}

async fn check_upstream(
    plugin: &Arc<LoadedPlugin>,
    request: &ChatRequest,
    expected_path: &Path,
) -> Result<(), String> {
    let expected = read_json(expected_path)?;
    let base = plugin.info().default_base_url.clone();
    let http = match build_request(plugin, &base, request).await {
        Ok(Ok(http)) => http,
        Ok(Err(e)) => {
            return Err(format!(
                "build-request refused the request: {}",
                json::short(&json::provider_error(&e))
            ));
        }
        Err(fault) => return Err(fault.to_string()),
    };
    let actual = json::http_request(&http);
    if let Some(method) = expected.get("method").and_then(Value::as_str)
        && !http.method.eq_ignore_ascii_case(method)
    {
        return Err(format!("method: expected {method}, got {}", http.method));
    }
    if let Some(suffix) = expected.get("url_suffix").and_then(Value::as_str)
        && !http.url.ends_with(suffix)
    {
        return Err(format!(
            "url: expected a URL ending in {suffix}, got {}",
            http.url
        ));
    }
    if !http.url.starts_with(base.trim_end_matches('/')) {
        return Err(format!("url {} is not within the base URL {base}", http.url));
    }
    if let Some(Value::Object(headers)) = expected.get("headers") {
        let lowered: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        if let Some(why) =
            json::first_mismatch(&json!({ "headers": lowered }), &json!({ "headers": actual["headers"] }))
        {
            return Err(why);
        }
    }
    if let Some(body) = expected.get("body")
        && let Some(why) = json::first_mismatch(&json!({ "body": body }), &json!({ "body": actual["body"] }))
    {
        return Err(why);
    }
    Ok(())
}

/// Compare an outcome with `expected.json`: `{"error": …}` expects the provider's error,
/// anything else the canonical value.
fn compare_outcome(expected_path: &Path, actual: Value, error: Option<ProviderError>) -> Result<(), String> {
    let expected = read_json(expected_path)?;
    let expects_error = expected.get("error").is_some_and(|e| !e.is_null());
    match error {
        Some(error) if !expects_error => Err(format!(
            "unexpected provider error: {}",
            json::short(&json::provider_error(&error))
        )),
        Some(error) => {
            let mut actual = actual;
            if let Value::Object(map) = &mut actual {
                map.insert("error".to_owned(), json::provider_error(&error));
            }
            json::first_mismatch(&expected, &actual).map_or(Ok(()), Err)
        }
        None if expects_error => Err(format!(
            "expected the provider error {}, got a result: {}",
            json::short(&expected["error"]),
            json::short(&actual)
        )),
        None => json::first_mismatch(&expected, &actual).map_or(Ok(()), Err),
    }
}

async fn check_response(
    plugin: &Arc<LoadedPlugin>,
    body_path: &Path,
    expected_path: &Path,
) -> Result<(), String> {
    let body = std::fs::read(body_path)
        .map_err(|e| format!("cannot read {}: {e}", body_path.display()))?;
    let response = HttpResponse {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
    };
    let mut instance = plugin.instantiate().await.map_err(|f| f.to_string())?;
    match instance.parse_response(&response).await {
        Ok(Ok(parsed)) => compare_outcome(expected_path, json::chat_response(&parsed), None),
        Ok(Err(e)) => compare_outcome(expected_path, json!({}), Some(e)),
        Err(fault) => Err(fault.to_string()),
    }
}

/// Feed `events` to a fresh decoder, then `finish`. Returns the chunks and the provider error
/// that stopped the stream, if any.
async fn decode(
    plugin: &Arc<LoadedPlugin>,
    model: &str,
    events: &[SseEvent],
) -> Result<(Vec<Value>, Option<ProviderError>), PluginFault> {
    let mut decoder = plugin.instantiate().await?.stream_decoder(model).await?;
    let mut chunks = Vec::new();
    for event in events {
        match decoder.push(event).await? {
            Ok(more) => chunks.extend(more.iter().map(json::stream_chunk)),
            Err(e) => return Ok((chunks, Some(e))),
        }
    }
    match decoder.finish().await? {
        Ok(more) => chunks.extend(more.iter().map(json::stream_chunk)),
        Err(e) => return Ok((chunks, Some(e))),
    }
    Ok((chunks, None))
}

async fn check_stream(
    plugin: &Arc<LoadedPlugin>,
    model: &str,
    sse_path: &Path,
    expected_path: &Path,
) -> Result<(), String> {
    let text = std::fs::read_to_string(sse_path)
        .map_err(|e| format!("cannot read {}: {e}", sse_path.display()))?;
    let events = sse_events(&text);
    let (chunks, error) = decode(plugin, model, &events)
        .await
        .map_err(|f| f.to_string())?;
    compare_outcome(expected_path, json!({ "chunks": chunks }), error)
}

async fn check_error(plugin: &Arc<LoadedPlugin>, path: &Path) -> Result<(), String> {
    let fixture = read_json(path)?;
    let status = fixture
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or("error.json: `status` (the provider's HTTP status) is required")?;
    let expected = fixture
        .get("expected")
        .ok_or("error.json: `expected` (the error class) is required")?;
    let body = match fixture.get("body") {
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(value) => value.to_string().into_bytes(),
        None => Vec::new(),
    };
    let headers = match fixture.get("headers") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        _ => vec![("content-type".to_owned(), "application/json".to_owned())],
    };
    let response = HttpResponse {
        status,
        headers,
        body,
    };
    let mut instance = plugin.instantiate().await.map_err(|f| f.to_string())?;
    match instance.parse_response(&response).await {
        Ok(Err(e)) => json::first_mismatch(expected, &json::provider_error(&e)).map_or(Ok(()), Err),
        Ok(Ok(parsed)) => Err(format!(
            "expected a provider error for HTTP {status}, got a response: {}",
            json::short(&json::chat_response(&parsed))
        )),
        Err(fault) => Err(fault.to_string()),
    }
}

/// Split an SSE body into events the way the host does: events end at a blank line, `data:`
/// lines are joined with `\n`, `event:` names the event, comments (`:`) and other fields are
/// ignored, and an event without data is not dispatched.
pub fn sse_events(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Option<String> = None;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in text.split('\n').chain(std::iter::once("")) {
        if line.is_empty() {
            if let Some(data) = data.take() {
                events.push(SseEvent {
                    event: event.take(),
                    data,
                });
            }
            event = None;
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn sse_splitting_follows_the_host() {
        let events = sse_events(": ping\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: x\ndata: y\r\n\r\ndata: [DONE]");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].data, "x\ny");
        assert_eq!(events[2].data, "[DONE]");
    }
}
