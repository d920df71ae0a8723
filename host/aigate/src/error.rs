//! Every failure a client can see, and the one place that turns it into an
//! OpenAI-shaped error body: `{"error":{"message","type","param","code"}}`.
//!
//! Errors are values: building one logs nothing and has no side effect. The
//! server logs each error response once, where it is sent.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Where a failure came from. Decides the log level and who must act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something wrong: it must change the request.
    Client,
    /// The provider answered with an error or could not be reached.
    Upstream,
    /// A provider plugin misbehaved.
    Plugin,
    /// The gateway itself (configuration, a bug, an overload).
    Internal,
}

/// One client-visible error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code:?}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub origin: ErrorSource,
    /// Whether the same request may succeed later (the upstream or gateway
    /// was busy): the router retries it after a backoff and falls back (see
    /// [`ApiError::recovery`]); clients get `Retry-After` when it is known.
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// The error came from the provider's answer (the provider was called):
    /// such an outcome is final, stored for idempotent replays.
    pub from_provider: bool,
    /// Extra response headers (e.g. `x-ratelimit-*` on a 429).
    pub headers: Vec<(&'static str, String)>,
}

/// What the router may do after an attempt failed (`router.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The answer is about the request itself (a client's 4xx, a content filter, a billing or
    /// limit refusal): any deployment would give it, so it goes to the client as is.
    Final,
    /// This deployment cannot serve the call (the provider refused the gateway's key, a plugin
    /// fault, a redirect): try another one, never this one again in this call.
    Elsewhere,
    /// Transient (connect error, timeout, 429, 5xx, overload): try another deployment at once,
    /// and this one again after a backoff.
    Transient,
}

/// OpenAI's error types, plus ours where no OpenAI type fits.
pub mod kind {
    pub const INVALID_REQUEST: &str = "invalid_request_error";
    pub const AUTHENTICATION: &str = "authentication_error";
    pub const NOT_FOUND: &str = "not_found_error";
    /// The key may not do this (OpenAI's SDKs raise `PermissionDeniedError` on the 403).
    pub const PERMISSION: &str = "permission_error";
    pub const SERVER: &str = "server_error";
    /// An error the provider returned, passed on (with its own `code`).
    pub const PROVIDER: &str = "provider_error";
    /// The provider throttled the call (distinct from the gateway's own limits).
    pub const PROVIDER_RATE_LIMIT: &str = "provider_rate_limit_error";
    pub const PLUGIN: &str = "plugin_error";
    /// The gateway's own limits (a provider's are `provider_rate_limit_error`).
    pub const RATE_LIMIT: &str = "rate_limit_error";
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&str>,
        message: impl Into<String>,
        origin: ErrorSource,
    ) -> Self {
        ApiError {
            status,
            kind,
            code: code.map(str::to_owned),
            param: None,
            message: message.into(),
            origin,
            retryable: false,
            retry_after: None,
            from_provider: false,
            headers: Vec::new(),
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// 400: the request is wrong; the message says what to change.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind::INVALID_REQUEST, None, message, ErrorSource::Client)
    }

    /// 400 about one parameter.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            kind::INVALID_REQUEST,
            Some("invalid_parameter"),
            message,
            ErrorSource::Client,
        )
        .with_param(param)
    }

    /// 400 `model_not_priced`: no price rule covers the model and its
    /// provider refuses unpriced calls. Nothing was sent, claimed or reserved.
    pub fn model_not_priced(provider: &str, model: &str) -> Self {
        let message = format!(
            "No price rule covers `{provider}:{model}`, and provider `{provider}` refuses calls it cannot price: \
             nothing was sent or charged. An operator can add the rule with \
             `aigate prices set --provider {provider} --model {model} --input <price per 1M input tokens> \
             --output <price per 1M output tokens>` (or `POST /admin/prices`), or allow unpriced calls at zero \
             with `unpriced = \"allow\"` under `[providers.{provider}]`."
        );
        Self::new(
            StatusCode::BAD_REQUEST,
            kind::INVALID_REQUEST,
            Some("model_not_priced"),
            message,
            ErrorSource::Client,
        )
        .with_param("model")
    }

    /// 400 `budget_currency_mismatch`: the org's budget could not count the
    /// call's cost, so the call is refused before anything is sent.
    pub fn budget_currency_mismatch(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            kind::INVALID_REQUEST,
            Some("budget_currency_mismatch"),
            message,
            ErrorSource::Client,
        )
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind::INVALID_REQUEST, Some("invalid_json"), message, ErrorSource::Client)
    }

    /// A 413: the rest of the body is not read, so the connection cannot serve another request.
    /// `Connection: close` says so, or a client could send its next request on a connection
    /// the gateway is closing (and see it fail without an answer).
    pub fn payload_too_large(limit: usize) -> Self {
        let mut err = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            kind::INVALID_REQUEST,
            Some("request_too_large"),
            format!("The request body is larger than this gateway accepts ({limit} bytes). Send a smaller request."),
            ErrorSource::Client,
        );
        err.headers.push(("connection", "close".to_owned()));
        err
    }

    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            kind::INVALID_REQUEST,
            Some("unsupported_media_type"),
            format!("Content-Type must be application/json, got `{got}`."),
            ErrorSource::Client,
        )
    }

    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind::INVALID_REQUEST, Some("model_not_found"), message, ErrorSource::Client)
            .with_param("model")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind::NOT_FOUND, Some("not_found"), message, ErrorSource::Client)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            kind::INVALID_REQUEST,
            Some("method_not_allowed"),
            "This method is not allowed on this path.",
            ErrorSource::Client,
        )
    }

    /// 403 `model_not_allowed`: the key (or its org) may not call this model.
    pub fn model_not_allowed(model: &str, scopes: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            kind::PERMISSION,
            Some("model_not_allowed"),
            format!(
                "This API key may not call model `{model}`: it is limited to `{scopes}`. Use one of those models, \
                 or ask the gateway operator for a key whose scope includes it (`aigate keys create --models`)."
            ),
            ErrorSource::Client,
        )
        .with_param("model")
    }

    /// A provider the operator has not given a credential.
    pub fn provider_not_configured(provider: &str, env_var: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind::SERVER,
            Some("provider_not_configured"),
            format!("Provider `{provider}` has no API key configured: the gateway operator must set {env_var}."),
            ErrorSource::Internal,
        )
    }

    /// A provider implied by a loaded plugin that wants a key: only an entry in
    /// config says where a key may go.
    pub fn provider_not_in_config(provider: &str, env_var: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind::SERVER,
            Some("provider_not_configured"),
            format!(
                "Provider `{provider}` is not in the gateway's config, so it gets no API key: the gateway operator must add \
                 [providers.{provider}] (with the base_url its key may go to) and set {env_var}."
            ),
            ErrorSource::Internal,
        )
    }

    /// A provider's answer was a redirect: not followed, so the key never goes
    /// to another host. 502.
    pub fn upstream_redirect(provider: &str, status: u16) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            kind::PROVIDER,
            Some("upstream_redirect"),
            format!(
                "Provider `{provider}` answered with a redirect ({status}), which the gateway does not follow; \
                 the gateway operator must check the provider's base_url."
            ),
            ErrorSource::Upstream,
        )
    }

    /// The database (keys, prices, usage) cannot be reached: 503, retry shortly.
    pub fn store_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind::SERVER,
            Some("store_unavailable"),
            message,
            ErrorSource::Internal,
        )
        .retryable()
        .with_retry_after(Duration::from_secs(1))
    }

    /// A configured provider whose plugin is not loaded (removed, or refused at start).
    pub fn provider_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind::SERVER,
            Some("provider_unavailable"),
            message,
            ErrorSource::Internal,
        )
        .retryable()
    }

    /// A plugin fault (trap, timeout, out of memory, malformed result): 502.
    pub fn plugin_fault(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, kind::PLUGIN, Some("plugin_error"), message, ErrorSource::Plugin)
    }

    /// The plugin runtime has no free instance slot: 503, retry later.
    pub fn plugin_busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, kind::SERVER, Some("plugin_busy"), message, ErrorSource::Internal)
            .retryable()
            .with_retry_after(Duration::from_secs(1))
    }

    pub fn upstream_timeout(provider: &str, what: &str, after: Duration) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            kind::PROVIDER,
            Some("upstream_timeout"),
            format!("Provider `{provider}` did not {what} within {} ms. Try again later.", after.as_millis()),
            ErrorSource::Upstream,
        )
        .retryable()
    }

    /// No attempt could be made or finished before the request's deadline.
    pub fn upstream_deadline(attempts: u32) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            kind::PROVIDER,
            Some("upstream_timeout"),
            format!(
                "No provider answered before the request's deadline (upstream.total_timeout_ms), after {attempts} attempt(s). Try again later."
            ),
            ErrorSource::Upstream,
        )
        .retryable()
    }

    pub fn upstream_unreachable(provider: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            kind::PROVIDER,
            Some("upstream_unreachable"),
            format!("Provider `{provider}` could not be reached: {detail}"),
            ErrorSource::Upstream,
        )
        .retryable()
    }

    /// A provider stream past one of the gateway's bounds (`[streams]`).
    pub fn upstream_too_large(provider: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            kind::PROVIDER,
            Some("upstream_response_too_large"),
            format!(
                "Provider `{provider}` sent more than this gateway accepts: {detail}. The stream was ended; ask for a shorter answer or ask the operator to raise the bound."
            ),
            ErrorSource::Upstream,
        )
    }

    /// The gateway stopped and its shutdown deadline ended this call.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            kind::SERVER,
            Some("gateway_shutting_down"),
            "The gateway is shutting down and ended this call. Retry: another replica, or this one once restarted, will answer.",
            ErrorSource::Internal,
        )
        .retryable()
        .with_retry_after(Duration::from_secs(1))
    }

    /// The provider's own final answer about this request, which the same
    /// request would get again: a 4xx about the request, a content filter.
    /// Idempotent calls store these. Not final: retryable failures (429, 5xx,
    /// overloads, timeouts), the provider refusing the gateway's credential
    /// (the operator fixes it, then the client retries), and anything that
    /// did not come from the provider.
    pub fn is_final(&self) -> bool {
        self.from_provider && !self.retryable && self.code.as_deref() != Some("provider_auth_failed")
    }

    /// What the router may do after an attempt failed with this error.
    pub fn recovery(&self) -> Recovery {
        if self.retryable {
            Recovery::Transient
        } else if self.from_provider && self.status == StatusCode::TOO_MANY_REQUESTS {
            // A 429 the provider says retrying will not fix (an account in arrears, a spent
            // quota): this deployment's account, not the request; another key may serve it.
            Recovery::Elsewhere
        } else if self.is_final() || self.origin == ErrorSource::Client {
            Recovery::Final
        } else {
            Recovery::Elsewhere
        }
    }

    /// Whether the failure counts against the deployment's circuit: the provider (or the way
    /// to it) failed, not the request and not the gateway itself.
    pub fn counts_against_deployment(&self) -> bool {
        self.recovery() != Recovery::Final && self.origin == ErrorSource::Upstream
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            kind::SERVER,
            Some("internal_error"),
            message,
            ErrorSource::Internal,
        )
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// An error the provider reported, mapped to what the client should see.
    ///
    /// - 401/403 mean the gateway's credential is wrong: a 502 naming the
    ///   credential, since the client can do nothing about it.
    /// - 429 stays 429, typed as the provider's limit (not the gateway's).
    /// - Other 4xx are the client's request: same status, provider's code.
    /// - 5xx and anything else: 502; 503/529 overloads: 503.
    /// - Errors inside a 200 stream (content filter) keep the provider's code.
    pub fn from_provider(provider: &str, credential_env: &str, e: &aigate_plugins::canonical::ProviderError) -> Self {
        let code = e.code.clone().unwrap_or_else(|| e.error_type.clone());
        let mut err = match e.status {
            401 | 403 => Self::new(
                StatusCode::BAD_GATEWAY,
                kind::PROVIDER,
                Some("provider_auth_failed"),
                format!(
                    "Provider `{provider}` refused the gateway's credential ({} {code}: {}). The gateway operator must check {credential_env}.",
                    e.status, e.message
                ),
                ErrorSource::Upstream,
            ),
            429 => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind::PROVIDER_RATE_LIMIT,
                Some(&code),
                format!("Provider `{provider}` is throttling requests: {}", e.message),
                ErrorSource::Upstream,
            ),
            400..=499 => {
                let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
                Self::new(
                    status,
                    kind::INVALID_REQUEST,
                    Some(&code),
                    format!("{provider}: {}", e.message),
                    ErrorSource::Client,
                )
            }
            503 | 529 => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                kind::PROVIDER,
                Some(&code),
                format!("Provider `{provider}` is overloaded: {}", e.message),
                ErrorSource::Upstream,
            ),
            200..=299 => Self::new(
                StatusCode::BAD_GATEWAY,
                kind::PROVIDER,
                Some(&code),
                format!("{provider}: {}", e.message),
                ErrorSource::Upstream,
            ),
            _ => Self::new(
                StatusCode::BAD_GATEWAY,
                kind::PROVIDER,
                Some(&code),
                format!("Provider `{provider}` failed: {}", e.message),
                ErrorSource::Upstream,
            ),
        };
        err.retryable = e.retryable;
        err.from_provider = true;
        err
    }

    /// The OpenAI-shaped body. All four keys are always present.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorObject {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain strings cannot fail; keep a valid body regardless.
        serde_json::to_string(&self.body()).unwrap_or_else(|_| {
            r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}"#
                .to_owned()
        })
    }
}

/// OpenAI's error body, on every error of the OpenAI-shaped routes (and the admin API).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorObject)]
pub struct ErrorObject<'a> {
    /// What went wrong and what to do about it.
    pub message: &'a str,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `rate_limit_error`, `insufficient_quota`, `server_error`, …
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The request field at fault, when one is.
    pub param: Option<&'a str>,
    /// A stable machine-readable code (`invalid_parameter`, `model_not_found`, …).
    pub code: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = (self.status, self.to_json());
        self.into_response_with(status, body)
    }
}

impl ApiError {
    /// The error response with another API's body and status (`codec.rs`), with the same
    /// headers (`Retry-After`, limits) and logging.
    pub fn into_response_with(self, status: StatusCode, body: String) -> Response {
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&after.as_millis().to_string()) {
                headers.insert("retry-after-ms", v);
            }
        }
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(*name, v);
            }
        }
        // The logging middleware reads this to log the error once.
        response.extensions_mut().insert(LoggedError { source: self.origin, code: self.code, message: self.message });
        response
    }
}

/// Attached to error responses so one middleware can log them.
#[derive(Debug, Clone)]
pub struct LoggedError {
    pub source: ErrorSource,
    pub code: Option<String>,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigate_plugins::canonical::ProviderError;

    fn provider_error(status: u16, code: &str) -> ProviderError {
        ProviderError {
            status,
            error_type: "invalid_request_error".into(),
            code: Some(code.into()),
            message: "m".into(),
            retryable: status == 429,
        }
    }

    #[test]
    fn body_has_all_four_keys() {
        let v: serde_json::Value = serde_json::from_str(&ApiError::invalid_request("x").to_json()).unwrap();
        let e = &v["error"];
        assert_eq!(e["message"], "x");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e.get("param").is_some() && e.get("code").is_some());
    }

    #[test]
    fn provider_auth_failure_is_a_502_naming_the_credential() {
        let e = ApiError::from_provider("qwen", "QWEN_API_KEY", &provider_error(401, "invalid_api_key"));
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert!(e.message.contains("QWEN_API_KEY"));
    }

    #[test]
    fn provider_throttling_stays_429_with_its_own_type() {
        let e = ApiError::from_provider("qwen", "QWEN_API_KEY", &provider_error(429, "limit_requests"));
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.kind, kind::PROVIDER_RATE_LIMIT);
        assert!(e.retryable);
    }

    #[test]
    fn only_the_providers_final_answers_are_final() {
        let from = |status, retryable| {
            let mut e = provider_error(status, "c");
            e.retryable = retryable;
            ApiError::from_provider("qwen", "QWEN_API_KEY", &e)
        };
        assert!(from(400, false).is_final());
        assert!(from(200, false).is_final(), "an error event inside a stream (content filter)");
        assert!(!from(429, true).is_final());
        assert!(!from(503, true).is_final());
        assert!(!from(401, false).is_final(), "the gateway's credential, not the request");
        assert!(!ApiError::upstream_timeout("qwen", "answer", Duration::from_secs(1)).is_final());
    }
}
