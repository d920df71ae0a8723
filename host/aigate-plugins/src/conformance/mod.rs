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
//! | `embeddings_request.json` | a canonical embeddings request (`{"model", "input": [texts], "dimensions"?, "user"?}`): makes the case an embeddings case, whose `expected_upstream.json` is checked against `build-embeddings-request` and whose `error.json` against `parse-embeddings-response` |
//! | `embeddings_response.json` | a recorded provider embeddings body (HTTP 200) for `parse-embeddings-response`; `expected.json` is then `{"model", "embeddings", "usage"}` |
//!
//! Expected values are compared semantically ([`json::mismatches`], every difference reported): key order does not
//! matter, only listed keys are compared, arrays must have the same length. Header names are
//! compared in lower case; the body is compared as JSON.

pub mod json;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::canonical::{
    ChatRequest, EmbeddingsRequest, HttpRequest, HttpResponse, Message, MessageContent, ProviderError, Role, SseEvent,
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
    /// What the fixtures cover, once they were read.
    pub coverage: Option<Coverage>,
    /// Gaps that do not fail the check but leave a mistake undetectable (no stream fixture, no
    /// `length` finish): printed as `WARN` lines.
    pub warnings: Vec<String>,
}

/// How many fixture cases hold each kind of file, for the report's coverage line.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub cases: usize,
    pub requests: usize,
    pub upstreams: usize,
    pub responses: usize,
    pub streams: usize,
    pub errors: usize,
    /// Cases of the embeddings interface (`embeddings_request.json` or `embeddings_response.json`).
    pub embeddings: usize,
}

/// What the fixtures' actual outputs showed, for the checks that look across cases.
#[derive(Debug, Default)]
struct Facts {
    /// Stream fixtures decoded, and how many of them produced a chunk with usage.
    streams: usize,
    streams_with_usage: usize,
    /// Whether any output carried finish reason `length`.
    length_seen: bool,
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
        self.cases.push(CaseResult { name: name.into(), failure: outcome.err() });
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
            None if self.plugin.is_some() => writeln!(f, "fixtures: none for this provider (generic checks only)")?,
            None => {}
        }
        if let Some(c) = &self.coverage {
            writeln!(
                f,
                "coverage: {} case(s): request.json {}, expected_upstream.json {}, response.json {}, response.sse {}, error.json {}, embeddings {}",
                c.cases, c.requests, c.upstreams, c.responses, c.streams, c.errors, c.embeddings
            )?;
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
        for warning in &self.warnings {
            writeln!(f, "WARN {warning}")?;
        }
        let failed = self.failed();
        let warned = match self.warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning(s)"),
        };
        write!(
            f,
            "{} passed, {failed} failed{warned}: {}",
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
        coverage: None,
        warnings: Vec::new(),
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

    let mut facts = Facts::default();
    let mut coverage = Coverage::default();
    if let Some(root) = fixtures_root {
        let dir = root.join(plugin.name());
        if dir.is_dir() {
            report.fixtures = Some(dir.clone());
            match case_dirs(&dir) {
                Ok(cases) => {
                    for case in cases {
                        run_case(&plugin, &case, &mut report, &mut facts, &mut coverage).await;
                    }
                }
                Err(e) => report.record(plugin.name().to_owned(), Err(e)),
            }
        }
    }
    across_fixtures(&facts, &coverage, &mut report);
    if plugin.capabilities().embeddings && coverage.embeddings == 0 {
        report.warnings.push(
            "the plugin serves embeddings but no fixture covers them (embeddings_request.json, embeddings_response.json): the vectors' order and usage are only checked against garbage".to_owned(),
        );
    }
    report.coverage = Some(coverage);
    report
}

/// Checks that look at all the fixtures' outputs at once: a mistake no single case shows.
fn across_fixtures(facts: &Facts, coverage: &Coverage, report: &mut Report) {
    if facts.streams == 0 {
        report.warnings.push(
            "no stream fixture (response.sse): nothing shows that a streamed call reports usage, and one that does not is billed at zero".to_owned(),
        );
    } else {
        report.record(
            "generic/stream-usage",
            if facts.streams_with_usage > 0 {
                Ok(())
            } else {
                Err(format!(
                    "none of the {} stream fixture(s) produced a chunk with usage: streamed calls would be billed at zero (hold the provider's usage and return it as the last chunk, at the latest from finish)",
                    facts.streams
                ))
            },
        );
    }
    if coverage.responses + coverage.streams == 0 {
        report.warnings.push(
            "no response fixture (response.json, response.sse): parse-response and the stream decoder are only checked against garbage".to_owned(),
        );
    }
    if !facts.length_seen {
        report.warnings.push(
            "no fixture ends with finish_reason `length`: record the provider's answer cut at max_tokens, or a wrong mapping (to `stop`) goes unnoticed".to_owned(),
        );
    }
    if coverage.errors == 0 {
        report.warnings.push(
            "no error fixture (error.json): nothing shows how the provider's errors (bad key, 429, 5xx) reach the client".to_owned(),
        );
    }
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

    let model = info.models.first().map_or_else(|| "test-model".to_owned(), |m| m.id.clone());
    let base = info.default_base_url.clone();
    for stream in [false, true] {
        let mut request = minimal_request(&model);
        request.stream = stream;
        let name = if stream { "generic/build-request-stream" } else { "generic/build-request" };
        let outcome = match build_request(plugin, &base, &request).await {
            Ok(Ok(http)) => {
                let prefix = base.trim_end_matches('/');
                let mut problems = Vec::new();
                if !http.method.eq_ignore_ascii_case("POST") {
                    problems.push(format!("method: expected POST, got {}", http.method));
                }
                if !http.url.starts_with(prefix) {
                    problems.push(format!("url {} is not within the base URL {base}", http.url));
                }
                if serde_json::from_slice::<Value>(&http.body).is_err() {
                    problems.push(format!("body is not JSON: {}", String::from_utf8_lossy(&http.body)));
                } else if let Some(why) = not_json_content_type(&http) {
                    problems.push(why);
                }
                if stream && !asks_for_a_stream(&http) {
                    problems.push(format!(
                        "the streaming request does not ask for a stream: no `\"stream\": true` in the body, no `accept: text/event-stream` header, no `sse` in the URL's query (e.g. Gemini's `?alt=sse`), so the provider would answer one JSON body: {}",
                        http.url
                    ));
                }
                all_of(problems)
            }
            Ok(Err(e)) => Err(format!("a minimal request was refused: {}", json::short(&json::provider_error(&e)))),
            Err(fault) => Err(fault.to_string()),
        };
        report.record(name, outcome);
    }

    let outcome = match decode(plugin, &model, &[]).await {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(e))) => {
            Err(format!("finish of an empty stream returned an error: {}", json::short(&json::provider_error(&e))))
        }
        Err(fault) => Err(fault.to_string()),
    };
    report.record("generic/stream-empty-finish", outcome);

    report.record("generic/parse-response-garbage", parse_garbage(plugin).await);
    report.record("generic/stream-garbage", stream_garbage(plugin, &model).await);
    if plugin.capabilities().embeddings {
        generic_embeddings(plugin, &model, report).await;
    }
}

/// The checks of a plugin that declares embeddings: a minimal request is a JSON POST within the
/// base URL, and garbage bodies are the provider's error, never a fault.
async fn generic_embeddings(plugin: &Arc<LoadedPlugin>, model: &str, report: &mut Report) {
    let base = plugin.info().default_base_url.clone();
    let request =
        EmbeddingsRequest { model: model.to_owned(), input: vec!["Hello!".to_owned()], dimensions: None, user: None };
    let outcome = match build_embeddings(plugin, &base, &request).await {
        Ok(Ok(http)) => {
            let mut problems = upstream_mismatches(&json!({"method": "POST"}), &http, &base);
            if serde_json::from_slice::<Value>(&http.body).is_err() {
                problems.push(format!("body is not JSON: {}", String::from_utf8_lossy(&http.body)));
            } else if let Some(why) = not_json_content_type(&http) {
                problems.push(why);
            }
            all_of(problems)
        }
        Ok(Err(e)) => Err(format!("a minimal request was refused: {}", json::short(&json::provider_error(&e)))),
        Err(fault) => Err(fault.to_string()),
    };
    report.record("generic/build-embeddings-request", outcome);

    let parse = async |response: &HttpResponse| parse_embeddings(plugin, response).await;
    let outcome =
        garbage(parse, |parsed| format!("vectors: {}", json::short(&json::embeddings_response(parsed)))).await;
    report.record("generic/parse-embeddings-garbage", outcome);
}

/// A header's value, by case-insensitive name.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Why a request with a JSON body does not say so (providers reject or misread `text/plain`).
fn not_json_content_type(http: &crate::canonical::HttpRequest) -> Option<String> {
    let value = header(&http.headers, "content-type");
    let essence = value.and_then(|v| v.split(';').next()).map(|v| v.trim().to_ascii_lowercase());
    match essence {
        Some(t) if t == "application/json" || t.ends_with("+json") => None,
        Some(_) => Some(format!(
            "content-type: the body is JSON but the request says `{}`: send `content-type: application/json`",
            value.unwrap_or_default()
        )),
        None => Some("content-type: the body is JSON but the request has no content-type header: send `content-type: application/json`".to_owned()),
    }
}

/// Whether a request asks the provider for SSE: `"stream": true` in the body (OpenAI, Anthropic),
/// an `accept: text/event-stream` header, or `sse` in the URL's query (Gemini's `alt=sse`).
fn asks_for_a_stream(http: &crate::canonical::HttpRequest) -> bool {
    let body_flag =
        serde_json::from_slice::<Value>(&http.body).is_ok_and(|body| body.get("stream") == Some(&Value::Bool(true)));
    let accept = header(&http.headers, "accept").is_some_and(|v| v.to_ascii_lowercase().contains("text/event-stream"));
    let query = http.url.split_once('?').is_some_and(|(_, query)| query.to_ascii_lowercase().contains("sse"));
    body_flag || accept || query
}

/// Bodies a provider or a proxy in front of it really sends: an HTML error page, an empty body,
/// JSON cut off mid-way. `parse-response` must answer each with a provider error (never a
/// response, never a trap), keeping the status of a failed response.
const GARBAGE_RESPONSES: &[(u16, &str, &str)] = &[
    (
        502,
        "an HTML 502 page",
        "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
    ),
    (200, "an empty 200 body", ""),
    (200, "a truncated 200 JSON body", r#"{"id":"x","choices":[{"index":0,"message":{"content":"Hel"#),
    (500, "an empty 500 body", ""),
];

async fn parse_garbage(plugin: &Arc<LoadedPlugin>) -> Result<(), String> {
    let parse = async |response: &HttpResponse| plugin.instantiate().await?.parse_response(response).await;
    garbage(parse, |parsed| format!("a response: {}", json::short(&json::chat_response(parsed)))).await
}

/// Feeds each of [`GARBAGE_RESPONSES`] to `parse`: every one must be the provider's error (with
/// the provider's status when that is an error status), never a result nor a fault. `shown`
/// words a result that came back.
async fn garbage<T>(
    parse: impl AsyncFn(&HttpResponse) -> Result<Result<T, ProviderError>, PluginFault>,
    shown: impl Fn(&T) -> String,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (status, what, body) in GARBAGE_RESPONSES {
        let content_type = if body.starts_with('<') { "text/html" } else { "application/json" };
        let response = HttpResponse {
            status: *status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.as_bytes().to_vec(),
        };
        match parse(&response).await {
            Err(fault) => problems.push(format!("{what}: {fault}")),
            Ok(Ok(parsed)) => problems.push(format!("{what}: returned {} instead of a provider error", shown(&parsed))),
            Ok(Err(e)) if *status >= 400 && e.status != *status => problems
                .push(format!("{what}: the provider error has status {}, not the provider's {status}", e.status)),
            Ok(Err(_)) => {}
        }
    }
    all_of(problems)
}

/// Stream events that are not what the decoder expects: each in a fresh decoder, which may return
/// chunks or an error but must not trap.
const GARBAGE_EVENTS: &[(&str, &str)] = &[
    ("an HTML event", "<html><body>502 Bad Gateway</body></html>"),
    ("an empty event", ""),
    ("a truncated JSON event", r#"{"id":"x","choices":[{"index":0,"delta":{"content":"Hel"#),
    ("a JSON event of another shape", r#"[1, "two", {"three": null}]"#),
];

async fn stream_garbage(plugin: &Arc<LoadedPlugin>, model: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    for (what, data) in GARBAGE_EVENTS {
        let event = SseEvent { event: None, data: (*data).to_owned() };
        if let Err(fault) = decode(plugin, model, &[event]).await {
            problems.push(format!("{what}: {fault}"));
        }
    }
    all_of(problems)
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
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    Ok(dirs)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// The files a case folder may hold (besides notes in `*.md`).
const CASE_FILES: &[&str] = &[
    "request.json",
    "expected_upstream.json",
    "response.json",
    "response.sse",
    "expected.json",
    "error.json",
    "embeddings_request.json",
    "embeddings_response.json",
];

/// Files in a case folder the checker would silently skip: a misspelt `respnse.json` must fail.
fn unknown_files(dir: &Path) -> Vec<String> {
    let mut unknown: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !CASE_FILES.contains(&name.as_str()) && !name.ends_with(".md") && !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    unknown.sort();
    unknown
}

async fn run_case(
    plugin: &Arc<LoadedPlugin>,
    dir: &Path,
    report: &mut Report,
    facts: &mut Facts,
    coverage: &mut Coverage,
) {
    let case = format!("{}/{}", plugin.name(), dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    coverage.cases += 1;
    let unknown = unknown_files(dir);
    if !unknown.is_empty() {
        report.record(
            format!("{case}/files"),
            Err(format!(
                "unknown fixture file(s) {}: a case holds {} (and notes in *.md)",
                unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                CASE_FILES.join(", ")
            )),
        );
    }
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    if file("embeddings_request.json").is_some() || file("embeddings_response.json").is_some() {
        coverage.embeddings += 1;
        return run_embeddings_case(plugin, dir, &case, report).await;
    }
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
    coverage.requests += usize::from(request.is_some());
    let mut ran = false;

    if let Some(expected) = file("expected_upstream.json") {
        ran = true;
        coverage.upstreams += 1;
        let outcome = match &request {
            None => Err("expected_upstream.json needs a request.json beside it".to_owned()),
            Some(request) => check_upstream(plugin, request, &expected).await,
        };
        report.record(format!("{case}/build-request"), outcome);
    }
    if let Some(body) = file("response.json") {
        ran = true;
        coverage.responses += 1;
        let (outcome, actual) = check_response(plugin, &body, &dir.join("expected.json")).await;
        report.record(format!("{case}/parse-response"), outcome);
        observe(&case, request.as_ref(), actual.as_ref(), false, facts, report);
    }
    if let Some(sse) = file("response.sse") {
        ran = true;
        coverage.streams += 1;
        let model = request.as_ref().map_or_else(|| "test-model".to_owned(), |r| r.model.clone());
        let (outcome, actual) = check_stream(plugin, &model, &sse, &dir.join("expected.json")).await;
        report.record(format!("{case}/stream"), outcome);
        facts.streams += 1;
        observe(&case, request.as_ref(), actual.as_ref(), true, facts, report);
    }
    if let Some(error) = file("error.json") {
        ran = true;
        coverage.errors += 1;
        let outcome = check_error(plugin, &error).await;
        report.record(format!("{case}/error"), outcome);
    }
    if !ran {
        let present: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        report.record(
            case,
            Err(format!(
                "nothing to check: a case needs expected_upstream.json, response.json, response.sse or error.json; the folder holds {}",
                if present.is_empty() { "no files".to_owned() } else { present.join(", ") }
            )),
        );
    }
}

/// Notes what one case's actual output shows for the checks across cases, and flags a stop at
/// `max_tokens` reported as `stop`: a provider's max-tokens reason mapped to the wrong value.
fn observe(
    case: &str,
    request: Option<&ChatRequest>,
    actual: Option<&Value>,
    stream: bool,
    facts: &mut Facts,
    report: &mut Report,
) {
    let Some(actual) = actual else { return };
    let (reasons, usage): (Vec<&Value>, Option<&Value>) = if stream {
        let chunks = actual["chunks"].as_array().map_or(&[][..], Vec::as_slice);
        let reasons = chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().map_or(&[][..], Vec::as_slice))
            .map(|c| &c["finish_reason"])
            .collect();
        let usage = chunks.iter().rev().map(|c| &c["usage"]).find(|u| u.is_object());
        (reasons, usage)
    } else {
        let choices = actual["choices"].as_array().map_or(&[][..], Vec::as_slice);
        let usage = Some(&actual["usage"]).filter(|u| u.is_object());
        (choices.iter().map(|c| &c["finish_reason"]).collect(), usage)
    };
    if stream && usage.is_some() {
        facts.streams_with_usage += 1;
    }
    if reasons.iter().any(|r| r.as_str() == Some("length")) {
        facts.length_seen = true;
    }
    // Exactly `max_tokens` generated (reasoning aside: some providers do not count it against
    // the limit) is the signature of an answer cut at the limit.
    let max_tokens = request.and_then(|r| r.max_tokens).filter(|n| *n > 0);
    let answer_tokens = usage.and_then(|u| {
        let reasoning = u["reasoning_tokens"].as_u64().unwrap_or(0);
        u["completion_tokens"].as_u64().map(|c| c.saturating_sub(reasoning))
    });
    if let (Some(max), Some(answer)) = (max_tokens, answer_tokens)
        && answer == u64::from(max)
        && reasons.iter().any(|r| r.as_str() == Some("stop"))
    {
        report.record(
            format!("{case}/finish-length"),
            Err(format!(
                "the answer used exactly the request's max_tokens ({max} completion tokens) but finish_reason is `stop`: the provider's max-tokens stop reason must map to `length`"
            )),
        );
    }
}

/// A case of the embeddings interface: `embeddings_request.json` with `expected_upstream.json`,
/// `embeddings_response.json` with `expected.json`, `error.json`.
async fn run_embeddings_case(plugin: &Arc<LoadedPlugin>, dir: &Path, case: &str, report: &mut Report) {
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    if !plugin.capabilities().embeddings {
        // The provider's fixtures cover more than this plugin serves: nothing to hold it to.
        report.warnings.push(format!("{case}: skipped, the plugin's capabilities declare no embeddings"));
        return;
    }
    let request =
        match file("embeddings_request.json").map(|p| read_json(&p).and_then(|v| json::embeddings_request(&v))) {
            Some(Ok(request)) => Some(request),
            Some(Err(e)) => return report.record(format!("{case}/embeddings-request"), Err(e)),
            None => None,
        };
    if let Some(expected) = file("expected_upstream.json") {
        let outcome = match &request {
            None => Err("expected_upstream.json needs an embeddings_request.json beside it".to_owned()),
            Some(request) => check_embeddings_upstream(plugin, request, &expected).await,
        };
        report.record(format!("{case}/build-embeddings-request"), outcome);
    }
    if let Some(body) = file("embeddings_response.json") {
        let outcome = match std::fs::read(&body) {
            Ok(body) => {
                let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
                let response = HttpResponse { status: 200, headers, body };
                match parse_embeddings(plugin, &response).await {
                    Ok(Ok(parsed)) => {
                        compare_outcome(&dir.join("expected.json"), json::embeddings_response(&parsed), None)
                    }
                    Ok(Err(e)) => compare_outcome(&dir.join("expected.json"), json!({}), Some(e)),
                    Err(fault) => Err(fault.to_string()),
                }
            }
            Err(e) => Err(format!("cannot read {}: {e}", body.display())),
        };
        report.record(format!("{case}/parse-embeddings-response"), outcome);
    }
    if let Some(error) = file("error.json") {
        let outcome = match error_fixture(&error) {
            Ok((response, expected)) => match parse_embeddings(plugin, &response).await {
                Ok(Err(e)) => all_of(json::mismatches(&expected, &json::provider_error(&e))),
                Ok(Ok(parsed)) => Err(format!(
                    "expected a provider error for HTTP {}, got vectors: {}",
                    response.status,
                    json::short(&json::embeddings_response(&parsed))
                )),
                Err(fault) => Err(fault.to_string()),
            },
            Err(e) => Err(e),
        };
        report.record(format!("{case}/embeddings-error"), outcome);
    }
}

async fn parse_embeddings(
    plugin: &Arc<LoadedPlugin>,
    response: &HttpResponse,
) -> Result<Result<crate::canonical::EmbeddingsResponse, ProviderError>, PluginFault> {
    plugin.instantiate().await?.parse_embeddings_response(response).await
}

async fn build_embeddings(
    plugin: &Arc<LoadedPlugin>,
    base_url: &str,
    request: &EmbeddingsRequest,
) -> Result<Result<HttpRequest, ProviderError>, PluginFault> {
    plugin.instantiate().await?.build_embeddings_request(base_url, request).await
}

async fn check_embeddings_upstream(
    plugin: &Arc<LoadedPlugin>,
    request: &EmbeddingsRequest,
    expected_path: &Path,
) -> Result<(), String> {
    let expected = read_json(expected_path)?;
    let base = plugin.info().default_base_url.clone();
    match build_embeddings(plugin, &base, request).await {
        Ok(Ok(http)) => all_of(upstream_mismatches(&expected, &http, &base)),
        Ok(Err(e)) => {
            Err(format!("build-embeddings-request refused the request: {}", json::short(&json::provider_error(&e))))
        }
        Err(fault) => Err(fault.to_string()),
    }
}

async fn build_request(
    plugin: &Arc<LoadedPlugin>,
    base_url: &str,
    request: &ChatRequest,
) -> Result<Result<crate::canonical::HttpRequest, ProviderError>, PluginFault> {
    plugin.instantiate().await?.build_request(base_url, request).await
}

async fn check_upstream(plugin: &Arc<LoadedPlugin>, request: &ChatRequest, expected_path: &Path) -> Result<(), String> {
    let expected = read_json(expected_path)?;
    let base = plugin.info().default_base_url.clone();
    let http = match build_request(plugin, &base, request).await {
        Ok(Ok(http)) => http,
        Ok(Err(e)) => {
            return Err(format!("build-request refused the request: {}", json::short(&json::provider_error(&e))));
        }
        Err(fault) => return Err(fault.to_string()),
    };
    all_of(upstream_mismatches(&expected, &http, &base))
}

/// What differs between `expected_upstream.json` and the request a plugin built.
fn upstream_mismatches(expected: &Value, http: &HttpRequest, base: &str) -> Vec<String> {
    let actual = json::http_request(http);
    let mut problems = Vec::new();
    if let Some(method) = expected.get("method").and_then(Value::as_str)
        && !http.method.eq_ignore_ascii_case(method)
    {
        problems.push(format!("method: expected {method}, got {}", http.method));
    }
    if let Some(suffix) = expected.get("url_suffix").and_then(Value::as_str)
        && !http.url.ends_with(suffix)
    {
        problems.push(format!("url: expected a URL ending in {suffix}, got {}", http.url));
    }
    if !http.url.starts_with(base.trim_end_matches('/')) {
        problems.push(format!("url {} is not within the base URL {base}", http.url));
    }
    if let Some(Value::Object(headers)) = expected.get("headers") {
        let lowered: serde_json::Map<String, Value> =
            headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        problems.extend(json::mismatches(&json!({ "headers": lowered }), &json!({ "headers": actual["headers"] })));
    }
    if let Some(body) = expected.get("body") {
        problems.extend(json::mismatches(&json!({ "body": body }), &json!({ "body": actual["body"] })));
    }
    problems
}

/// `Ok` for no problems, else every problem on its own line.
fn all_of(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

/// Compare an outcome with `expected.json`: `{"error": …}` expects the provider's error,
/// anything else the canonical value.
fn compare_outcome(expected_path: &Path, actual: Value, error: Option<ProviderError>) -> Result<(), String> {
    let expected = read_json(expected_path)?;
    let expects_error = expected.get("error").is_some_and(|e| !e.is_null());
    match error {
        Some(error) if !expects_error => {
            Err(format!("unexpected provider error: {}", json::short(&json::provider_error(&error))))
        }
        Some(error) => {
            let mut actual = actual;
            if let Value::Object(map) = &mut actual {
                map.insert("error".to_owned(), json::provider_error(&error));
            }
            all_of(json::mismatches(&expected, &actual))
        }
        None if expects_error => Err(format!(
            "expected the provider error {}, got a result: {}",
            json::short(&expected["error"]),
            json::short(&actual)
        )),
        None => all_of(json::mismatches(&expected, &actual)),
    }
}

/// Returns the outcome and the actual output (`None` when the plugin faulted or the body was
/// unreadable), for [`observe`].
async fn check_response(
    plugin: &Arc<LoadedPlugin>,
    body_path: &Path,
    expected_path: &Path,
) -> (Result<(), String>, Option<Value>) {
    let body = match std::fs::read(body_path) {
        Ok(body) => body,
        Err(e) => return (Err(format!("cannot read {}: {e}", body_path.display())), None),
    };
    let response =
        HttpResponse { status: 200, headers: vec![("content-type".to_owned(), "application/json".to_owned())], body };
    let mut instance = match plugin.instantiate().await {
        Ok(instance) => instance,
        Err(fault) => return (Err(fault.to_string()), None),
    };
    match instance.parse_response(&response).await {
        Ok(Ok(parsed)) => {
            let actual = json::chat_response(&parsed);
            (compare_outcome(expected_path, actual.clone(), None), Some(actual))
        }
        Ok(Err(e)) => (compare_outcome(expected_path, json!({}), Some(e)), None),
        Err(fault) => (Err(fault.to_string()), None),
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
) -> (Result<(), String>, Option<Value>) {
    let text = match std::fs::read_to_string(sse_path) {
        Ok(text) => text,
        Err(e) => return (Err(format!("cannot read {}: {e}", sse_path.display())), None),
    };
    let events = sse_events(&text);
    match decode(plugin, model, &events).await {
        Ok((chunks, error)) => {
            let actual = json!({ "chunks": chunks });
            (compare_outcome(expected_path, actual.clone(), error), Some(actual))
        }
        Err(fault) => (Err(fault.to_string()), None),
    }
}

/// An `error.json`: the provider's response and the error class expected of it.
fn error_fixture(path: &Path) -> Result<(HttpResponse, Value), String> {
    let fixture = read_json(path)?;
    let status = fixture
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or("error.json: `status` (the provider's HTTP status) is required")?;
    let expected = fixture.get("expected").ok_or("error.json: `expected` (the error class) is required")?.clone();
    let body = match fixture.get("body") {
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(value) => value.to_string().into_bytes(),
        None => Vec::new(),
    };
    let headers = match fixture.get("headers") {
        Some(Value::Object(map)) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
        }
        _ => vec![("content-type".to_owned(), "application/json".to_owned())],
    };
    Ok((HttpResponse { status, headers, body }, expected))
}

async fn check_error(plugin: &Arc<LoadedPlugin>, path: &Path) -> Result<(), String> {
    let (response, expected) = error_fixture(path)?;
    let mut instance = plugin.instantiate().await.map_err(|f| f.to_string())?;
    match instance.parse_response(&response).await {
        Ok(Err(e)) => all_of(json::mismatches(&expected, &json::provider_error(&e))),
        Ok(Ok(parsed)) => Err(format!(
            "expected a provider error for HTTP {}, got a response: {}",
            response.status,
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
                events.push(SseEvent { event: event.take(), data });
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
        let events =
            sse_events(": ping\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: x\ndata: y\r\n\r\ndata: [DONE]");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].data, "x\ny");
        assert_eq!(events[2].data, "[DONE]");
    }
}
