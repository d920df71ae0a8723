//! Standard DashScope compatible-mode error bodies (reference 1.7), ready to script:
//! `mock.enqueue(errors::rate_limited())`.
//!
//! The shape is `{"error":{"message","type","param","code"},"request_id"}`. Bodies marked
//! \[U\] in their doc are not captures: their message or `type` is inferred from the error-code
//! table. Keys serialize in alphabetical order (`serde_json::Value`), which is fine since the
//! gateway must not depend on key order (reference 6.6).

use serde_json::{Value, json};

use crate::Scenario;

/// The `request_id` of the scripted bodies below; the built-in errors use generated ids.
pub const SCRIPTED_REQUEST_ID: &str = "b02e047c-ca07-98df-ae99-d211d0990216";

/// A status and body as DashScope sends them.
#[derive(Clone, Debug, PartialEq)]
pub struct DashScopeError {
    pub status: u16,
    pub body: Value,
}

impl DashScopeError {
    /// Sets (or adds) the top-level `request_id`.
    #[must_use]
    pub fn with_request_id(mut self, request_id: &str) -> Self {
        if let Some(obj) = self.body.as_object_mut() {
            obj.insert("request_id".into(), Value::String(request_id.into()));
        }
        self
    }

    /// Sets (or adds) the top-level `id` (`chatcmpl-…`), present on errors raised while
    /// handling a chat request.
    #[must_use]
    pub fn with_id(mut self, id: &str) -> Self {
        if let Some(obj) = self.body.as_object_mut() {
            obj.insert("id".into(), Value::String(id.into()));
        }
        self
    }

    /// The `error.code` field, if any.
    pub fn code(&self) -> Option<&str> {
        self.body.pointer("/error/code").or_else(|| self.body.get("code")).and_then(Value::as_str)
    }
}

impl From<DashScopeError> for Scenario {
    fn from(e: DashScopeError) -> Self {
        Scenario::Error { status: e.status, body: e.body }
    }
}

fn compat(status: u16, message: &str, kind: &str, code: &str) -> DashScopeError {
    DashScopeError {
        status,
        body: json!({
            "error": {"message": message, "type": kind, "param": null, "code": code},
            "request_id": SCRIPTED_REQUEST_ID,
        }),
    }
}

/// 401 `invalid_api_key`, the compatible-mode body of a wrong or other-region key (capture).
pub fn invalid_api_key() -> DashScopeError {
    compat(
        401,
        "Incorrect API key provided. For details, see: https://help.aliyun.com/zh/model-studio/error-code#apikey-error",
        "invalid_request_error",
        "invalid_api_key",
    )
}

/// 429 `limit_requests` (RPM/RPS), the captured body: no `param`, no `request_id`.
pub fn rate_limited() -> DashScopeError {
    DashScopeError {
        status: 429,
        body: json!({"error": {
            "message": "You have exceeded your current request limit. For details, see: https://help.aliyun.com/zh/model-studio/error-code#rate-limit",
            "type": "limit_requests",
            "code": "limit_requests",
        }}),
    }
}

/// 429 `insufficient_quota` (TPM/TPS). \[U\] `type` mirrors the code, as in `limit_requests`.
pub fn quota_exceeded() -> DashScopeError {
    DashScopeError {
        status: 429,
        body: json!({"error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }}),
    }
}

/// 429 `limit_burst_rate`: traffic rose too fast. \[U\] message and `type`.
pub fn burst_rate_limited() -> DashScopeError {
    DashScopeError {
        status: 429,
        body: json!({"error": {
            "message": "Request rate increased too quickly. To ensure system stability, please adjust your client logic to scale requests more smoothly over time.",
            "type": "limit_burst_rate",
            "code": "limit_burst_rate",
        }}),
    }
}

/// 400 `Arrearage`: overdue bill, not retryable.
pub fn arrearage() -> DashScopeError {
    compat(400, "Access denied, please make sure your account is in good standing.", "Arrearage", "Arrearage")
}

/// 400 `data_inspection_failed` on the input (content moderation).
pub fn input_inspection_failed() -> DashScopeError {
    compat(400, "Input data may contain inappropriate content.", "data_inspection_failed", "data_inspection_failed")
}

/// The mid-stream moderation event of [`Scenario::MidStreamError`], as captured (no
/// `request_id`).
pub fn output_inspection_failed_event() -> Value {
    json!({"error": {
        "message": "Output data may contain inappropriate content.",
        "type": "data_inspection_failed",
        "param": null,
        "code": "data_inspection_failed",
    }})
}

/// 400 `invalid_parameter_error` with this message (the common validation error).
pub fn invalid_parameter(message: &str) -> DashScopeError {
    compat(400, message, "invalid_request_error", "invalid_parameter_error")
}

/// 400 `Range of input length should be [1, 129024]`: the context-window overflow.
pub fn context_length_exceeded() -> DashScopeError {
    invalid_parameter("Range of input length should be [1, 129024]")
}

/// 404 `model_not_found`. \[U\] the backticks around the name follow OpenAI's message.
pub fn model_not_found(model: &str) -> DashScopeError {
    compat(
        404,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        "model_not_found",
    )
}

/// 403 `access_denied`. \[U\] `type`.
pub fn access_denied() -> DashScopeError {
    compat(403, "Access denied.", "invalid_request_error", "access_denied")
}

/// 500 `internal_error` (retryable). The message keeps DashScope's typo "occured". \[U\] `type`.
pub fn internal() -> DashScopeError {
    compat(
        500,
        "An internal error has occured, try again later or contact service support.",
        "internal_error",
        "internal_error",
    )
}

/// 503 model unavailable (retryable). \[U\] compatible-mode `code` and `type`.
pub fn model_unavailable() -> DashScopeError {
    compat(503, "Model is unavailable, try again later.", "internal_error", "model_unavailable")
}
