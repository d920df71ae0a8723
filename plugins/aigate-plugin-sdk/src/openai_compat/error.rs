//! Provider error bodies in every shape seen from OpenAI-compatible servers.

use serde_json::Value;

use super::Dialect;
use super::json::{code_field, str_field, truncate};
use crate::errors::fallback_type;
use crate::types::ProviderError;

/// Longest message kept from a provider; longer ones are cut.
const MAX_MESSAGE: usize = 2048;

impl Dialect {
    /// Turns a provider's error response into a [`ProviderError`].
    ///
    /// Understands the nested OpenAI shape `{"error":{"message","type","code"}}`,
    /// `{"error":"text"}` (Ollama), flat `{"code","message"}` (DashScope inside
    /// streams, vLLM), `{"detail":…}` (FastAPI servers), any of those framed as
    /// SSE (`data: {…}`, which DashScope sends for a failed stream request), and
    /// bodies that are not JSON at all (proxies' HTML pages). Never fails: an
    /// unreadable body still gives an error carrying the status.
    pub fn parse_error(&self, status: u16, body: &[u8]) -> ProviderError {
        let text = String::from_utf8_lossy(body);
        match error_json(&text) {
            Some(value) => self.error_from_json(status, &value, &text),
            None => {
                let text = text.trim();
                let message = if text.is_empty() {
                    format!("the provider answered HTTP {status} with an empty body")
                } else {
                    truncate(text, MAX_MESSAGE)
                };
                self.finish_error(status, None, None, message)
            }
        }
    }

    /// The error of an already-parsed JSON value, when it is an error: a
    /// non-null `error` key, or a top-level `code` and `message` with no
    /// `choices`. Used by the stream decoder, whose events carry errors with
    /// status 200.
    pub(crate) fn error_in_json(&self, status: u16, value: &Value) -> Option<ProviderError> {
        let nested = value.get("error").is_some_and(|e| !e.is_null());
        let flat = value.get("choices").is_none()
            && value.get("message").is_some()
            && (value.get("code").is_some() || value.get("type").is_some());
        (nested || flat).then(|| self.error_from_json(status, value, ""))
    }

    /// Fills a [`ProviderError`] from any JSON error shape. `raw` is the body
    /// text, used as the message when the JSON has none.
    pub(crate) fn error_from_json(&self, status: u16, value: &Value, raw: &str) -> ProviderError {
        let (error_type, code, message) = match value.get("error") {
            Some(inner @ Value::Object(_)) => (
                str_field(inner, "type").or_else(|| str_field(value, "type")),
                code_field(inner, "code").or_else(|| code_field(value, "code")),
                str_field(inner, "message"),
            ),
            Some(Value::String(message)) => {
                (str_field(value, "type"), code_field(value, "code"), Some(message.clone()))
            }
            _ => (str_field(value, "type"), code_field(value, "code"), flat_message(value)),
        };
        let message = match message.filter(|m| !m.trim().is_empty()) {
            Some(message) => truncate(&message, MAX_MESSAGE),
            None if !raw.trim().is_empty() => truncate(raw.trim(), MAX_MESSAGE),
            None => format!("the provider answered HTTP {status} with an error and no message"),
        };
        self.finish_error(status, error_type, code, message)
    }

    fn finish_error(
        &self,
        status: u16,
        error_type: Option<String>,
        code: Option<String>,
        message: String,
    ) -> ProviderError {
        let error_type = error_type.filter(|t| !t.is_empty()).unwrap_or_else(|| fallback_type(status).to_string());
        let retryable = self.is_retryable(status, &error_type, code.as_deref());
        let mut error = ProviderError { status, error_type, code, message, retryable };
        (self.refine_error)(&mut error);
        error
    }
}

/// The message of a flat error body: `message`, or FastAPI's `detail` (a
/// string, or a list of validation errors kept as JSON text).
fn flat_message(value: &Value) -> Option<String> {
    str_field(value, "message").or_else(|| match value.get("detail")? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// Parses an error body that is JSON, or SSE whose `data:` lines hold JSON.
/// Of several events, the first that looks like an error wins.
fn error_json(text: &str) -> Option<Value> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).ok();
    }
    let mut first = None;
    for payload in sse_payloads(trimmed) {
        let Ok(value) = serde_json::from_str::<Value>(&payload) else {
            continue;
        };
        if value.get("error").is_some_and(|e| !e.is_null()) || value.get("code").is_some() {
            return Some(value);
        }
        first.get_or_insert(value);
    }
    first
}

/// The data of each event in an SSE body: consecutive `data:` lines joined by
/// `\n`, events split at blank lines.
fn sse_payloads(text: &str) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            payloads.extend(current.take());
        } else if let Some(data) = line.strip_prefix("data:") {
            let data = data.strip_prefix(' ').unwrap_or(data);
            match current.as_mut() {
                Some(buffer) => {
                    buffer.push('\n');
                    buffer.push_str(data);
                }
                None => current = Some(data.to_string()),
            }
        }
    }
    payloads.extend(current);
    payloads
}
