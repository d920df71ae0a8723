//! Google's error bodies: `{"error": {"code", "message", "status", "details"}}`
//! (sometimes wrapped in a one-element array), inside a stream too.

use aigate_plugin_sdk::errors::{RetryRules, fallback_type};
use aigate_plugin_sdk::json::{code_field, str_field};
use aigate_plugin_sdk::serde_json::Value;
use aigate_plugin_sdk::types::ProviderError;

/// Google's canonical codes (`error.status`) that may succeed later, whatever
/// the HTTP status (inside a stream it is 200).
const RETRY_RULES: RetryRules = RetryRules {
    billing_codes: &[],
    retryable_codes: &["RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"],
};

/// `details[].reason` values that mean the gateway's key is wrong, although
/// Google answers them with 400 (`API_KEY_INVALID`) or 403.
const BAD_KEY_REASONS: &[&str] = &["API_KEY_INVALID", "API_KEY_EXPIRED"];

/// Any failed response: JSON, an HTML page from a proxy, or nothing.
pub fn from_response(status: u16, body: &[u8]) -> ProviderError {
    let value = aigate_plugin_sdk::serde_json::from_slice::<Value>(body).ok();
    if let Some(error) = value.as_ref().and_then(|value| in_json(status, value)) {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    ProviderError::upstream(&RETRY_RULES, status, fallback_type(status), None, text.trim())
}

/// The error in a JSON body or stream event, when it holds one. `status` is
/// the HTTP status (200 inside a stream).
pub fn in_json(status: u16, value: &Value) -> Option<ProviderError> {
    let value = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let error = value.get("error").filter(|e| e.is_object())?;
    // The reason of the first `google.rpc.ErrorInfo` detail is the precise code.
    let reason = error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|details| details.iter().find_map(|d| str_field(d, "reason")));
    let canonical = str_field(error, "status");
    let code = reason.or_else(|| canonical.clone()).or_else(|| code_field(error, "code"));
    let message = str_field(error, "message").unwrap_or_default();
    let mut error = ProviderError::upstream(&RETRY_RULES, status, fallback_type(status), code, message);
    // RetryRules matched the reason; the canonical code decides too.
    if canonical.as_deref().is_some_and(|c| RETRY_RULES.is_retryable(status, c, None)) {
        error.retryable = true;
    }
    if error.code.as_deref().is_some_and(|code| BAD_KEY_REASONS.contains(&code)) {
        // The gateway reports 401/403 as "the operator must check the key".
        error.status = 401;
        error.error_type = "authentication_error".to_string();
        error.retryable = false;
    }
    Some(error)
}
