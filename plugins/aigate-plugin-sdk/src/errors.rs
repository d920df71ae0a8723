//! Classifying provider errors, for any wire format.
//!
//! Every plugin has to decide, for each error a provider reports, whether the
//! host may send the same request again. The rule is the same everywhere
//! (throttling, overload and server errors yes; client errors and billing
//! states no), only the codes differ, so it lives here once: as
//! [`is_retryable_status`] for the status alone and [`RetryRules`] for a
//! provider's code lists. [`crate::openai_compat::Dialect`] uses the same
//! rules; a plugin for a non-OpenAI format (Anthropic's Messages API, say)
//! uses them directly with [`ProviderError::upstream`].

use crate::types::ProviderError;

/// Longest provider message kept in a [`ProviderError`]; longer ones are cut
/// by [`truncate`], so an HTML error page from a proxy does not end up whole
/// in a client's error message.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// The `error_type` of a provider response a plugin cannot read (see
/// [`ProviderError::invalid_response`]); the one spelling every SDK helper uses.
pub const INVALID_RESPONSE: &str = "invalid_response";

/// The `code` of [`ProviderError::embeddings_unsupported`]: an embeddings call
/// to a provider that has none. The host uses the same code when it refuses
/// such a call itself, without entering the plugin.
pub const EMBEDDINGS_UNSUPPORTED: &str = "embeddings_unsupported";

/// Whether an HTTP status alone says the same request may succeed later:
/// 408 (timeout), 429 (throttling) and every 5xx, Anthropic's 529
/// `overloaded_error` included. Billing states sent with these statuses are
/// the exception; see [`RetryRules`].
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// One provider's error codes that override the status.
///
/// Codes are compared with [`same_code`] (ignoring ASCII case and `_`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryRules {
    /// Codes or types meaning the account cannot pay or is not allowed to use
    /// the service: never retryable, whatever the status (providers send some
    /// of them with 429).
    pub billing_codes: &'static [&'static str],
    /// Codes or types retryable whatever the status. Needed for errors inside
    /// a stream, which arrive with status 200 where only the code can tell.
    pub retryable_codes: &'static [&'static str],
}

impl RetryRules {
    /// No codes: the status decides alone.
    pub const NONE: RetryRules = RetryRules { billing_codes: &[], retryable_codes: &[] };

    /// Whether the same request may succeed if sent again: billing codes
    /// never; [`is_retryable_status`] or a retryable code yes; else no.
    pub fn is_retryable(&self, status: u16, error_type: &str, code: Option<&str>) -> bool {
        let listed = |list: &[&str]| {
            list.iter().any(|entry| same_code(entry, error_type) || code.is_some_and(|c| same_code(entry, c)))
        };
        if listed(self.billing_codes) {
            return false;
        }
        is_retryable_status(status) || listed(self.retryable_codes)
    }
}

/// Whether two error codes are the same code: providers (and one provider's
/// two APIs) spell a code with different case and underscores
/// (`PrepaidBillOverdue`, `prepaid_bill_overdue`).
pub fn same_code(entry: &str, code: &str) -> bool {
    let mut a = entry.bytes().filter(|b| *b != b'_').map(|b| b.to_ascii_lowercase());
    let mut b = code.bytes().filter(|b| *b != b'_').map(|b| b.to_ascii_lowercase());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut
/// with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl ProviderError {
    /// An error the provider reported: `retryable` comes from `rules`, the
    /// message is cut to [`MAX_MESSAGE_BYTES`], and an empty message or type
    /// is replaced by one that names the status, so the client always learns
    /// something.
    pub fn upstream(
        rules: &RetryRules,
        status: u16,
        error_type: impl Into<String>,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut error_type = error_type.into();
        if error_type.trim().is_empty() {
            error_type = fallback_type(status).to_string();
        }
        let message = message.into();
        let message = if message.trim().is_empty() {
            format!("the provider answered HTTP {status} with an error and no message")
        } else {
            truncate(message.trim(), MAX_MESSAGE_BYTES)
        };
        let retryable = rules.is_retryable(status, &error_type, code.as_deref());
        ProviderError { status, error_type, code, message, retryable }
    }

    /// A response the plugin cannot read (a 2xx body that is not JSON, a
    /// stream event that is not JSON): reported with the provider's status as
    /// a provider error, not a plugin fault, since the provider misbehaved.
    /// `what` says what was unreadable; an excerpt of `body` follows it.
    pub fn invalid_response(status: u16, what: &str, body: &str) -> Self {
        ProviderError {
            status,
            error_type: INVALID_RESPONSE.to_string(),
            code: None,
            message: format!("{what}: {}", truncate(body.trim(), 512)),
            retryable: false,
        }
    }
}

/// The error type to report when the provider named none, in OpenAI's
/// vocabulary so clients' error handling keeps working.
pub fn fallback_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_alone() {
        for status in [408, 429, 500, 502, 503, 529] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 413, 422] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }

    #[test]
    fn codes_override_the_status() {
        let rules = RetryRules { billing_codes: &["insufficient_quota"], retryable_codes: &["overloaded_error"] };
        assert!(!rules.is_retryable(429, "insufficient_quota", None));
        assert!(!rules.is_retryable(429, "x", Some("InsufficientQuota")));
        assert!(rules.is_retryable(200, "overloaded_error", None));
        assert!(rules.is_retryable(429, "rate_limit_error", None));
        assert!(!rules.is_retryable(200, "invalid_request_error", None));
        assert!(!RetryRules::NONE.is_retryable(400, "overloaded_error", None));
    }

    #[test]
    fn upstream_fills_gaps() {
        let e = ProviderError::upstream(&RetryRules::NONE, 529, "", None, " ");
        assert_eq!(e.error_type, "server_error");
        assert!(e.message.contains("529"));
        assert!(e.retryable);
        let long = "x".repeat(MAX_MESSAGE_BYTES + 10);
        let e = ProviderError::upstream(&RetryRules::NONE, 400, "invalid_request_error", None, long);
        assert_eq!(e.message.len(), MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(!e.retryable);
    }

    #[test]
    fn truncate_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
