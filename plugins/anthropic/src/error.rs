//! Anthropic's error bodies: `{"type":"error","error":{"type","message"},"request_id"}`.

use aigate_plugin_sdk::errors::RetryRules;
use aigate_plugin_sdk::types::ProviderError;
use serde_json::Value;

/// Anthropic's error types that override the status (reference, section 5).
/// The retryable ones matter inside a stream, where the status is 200.
pub(crate) const RULES: RetryRules = RetryRules {
    billing_codes: &["billing_error"],
    retryable_codes: &["overloaded_error", "api_error", "rate_limit_error", "timeout_error"],
};

/// The error of a failed response. Never fails: a body that is not
/// Anthropic's JSON (Cloudflare's 413 page, a proxy's 502) still gives an
/// error carrying the status.
pub(crate) fn parse_error(status: u16, body: &[u8]) -> ProviderError {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(value) => error_from_json(status, &value)
            .unwrap_or_else(|| ProviderError::upstream(&RULES, status, "", None, text.trim())),
        Err(_) => {
            let message = if text.trim().is_empty() {
                format!("the provider answered HTTP {status} with an empty body")
            } else {
                text.trim().to_string()
            };
            ProviderError::upstream(&RULES, status, "", None, message)
        }
    }
}

/// The error in a JSON value, when it is one: `{"type":"error","error":{…}}`
/// (also the data of a stream's `error` event). Anthropic has error types,
/// no codes, so `code` stays empty and the host shows the type.
pub(crate) fn error_from_json(status: u16, value: &Value) -> Option<ProviderError> {
    let inner = value.get("error").filter(|e| e.is_object())?;
    let field = |key: &str| inner.get(key).and_then(Value::as_str).unwrap_or_default();
    Some(ProviderError::upstream(&RULES, status, field("type"), None, field("message")))
}
