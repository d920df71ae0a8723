//! DashScope specifics, on the captures and the error table of the wire-format
//! reference (section 1).

use aigate_plugin_sdk::ChunkDecoder;
use aigate_plugin_sdk::types::{ChatRequest, HttpResponse, Message, ProviderError, Role, SseEvent};

use super::*;

fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
}

fn error(status: u16, body: &str) -> ProviderError {
    match Qwen::parse_response(response(status, body)) {
        Ok(parsed) => unreachable!("expected an error, got {parsed:?}"),
        Err(error) => error,
    }
}

#[test]
fn describe() {
    let info = Qwen::describe();
    assert_eq!(info.name, "qwen");
    assert_eq!(info.contract_version, "0.2.0");
    assert_eq!(info.default_base_url, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1");
    assert_eq!(info.auth, AuthScheme::Bearer);
    assert_eq!(info.version, option_env!("AIGATE_PLUGIN_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")));
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["qwen-turbo", "qwen-plus", "qwen-max"]);
    assert_eq!(info.models[2].context_window, Some(32_768));
    assert_eq!(info.models[2].max_output_tokens, Some(8_192));
}

#[test]
fn stream_request() {
    let mut request = ChatRequest::new(
        "qwen-plus",
        vec![Message::text(Role::Developer, "You are a helpful assistant."), Message::text(Role::User, "Who are you?")],
    );
    request.stream = true;
    request.temperature = Some(0.7);
    request.parallel_tool_calls = Some(true);
    request.extra = r#"{"enable_thinking": false}"#.to_string();
    let http = match Qwen::build_request("https://dashscope.aliyuncs.com/compatible-mode/v1/", request) {
        Ok(http) => http,
        Err(error) => unreachable!("{error:?}"),
    };
    assert_eq!(http.method, "POST");
    assert_eq!(http.url, "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions");
    assert!(http.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
    assert!(!http.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")), "the host adds credentials");
    let body = String::from_utf8_lossy(&http.body);
    for expected in [
        r#""messages":[{"content":"You are a helpful assistant.","role":"system"},{"content":"Who are you?","role":"user"}]"#,
        r#""stream":true"#,
        r#""stream_options":{"include_usage":true}"#,
        r#""parallel_tool_calls":true"#,
        r#""enable_thinking":false"#,
        r#""temperature":0.7"#,
    ] {
        assert!(body.contains(expected), "{expected} missing from {body}");
    }
}

/// Every status/code pair of the reference's error table: (status, body,
/// expected code after refinement, retryable).
#[test]
fn error_table() {
    let nested = |code: &str, message: &str| {
        format!(
            r#"{{"error":{{"message":"{message}","type":"{code}","param":null,"code":"{code}"}},"request_id":"r"}}"#
        )
    };
    let invalid = |message: &str| {
        format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"invalid_parameter_error"}}}}"#
        )
    };
    let flat = |code: &str, message: &str| format!(r#"{{"code":"{code}","message":"{message}","request_id":"r"}}"#);
    let cases: Vec<(u16, String, Option<&str>, bool)> = vec![
        (400, invalid("Range of input length should be [1, 129024]"), Some("context_length_exceeded"), false),
        (400, invalid("Range of max_tokens should be [1, 8192]"), Some("invalid_parameter_error"), false),
        (400, invalid("Temperature should be in [0.0, 2.0)"), Some("invalid_parameter_error"), false),
        (400, invalid("This model only support stream mode, please enable the stream parameter to access the model."), Some("invalid_parameter_error"), false),
        (400, nested("invalid_request_error", "you must provide a model parameter."), Some("invalid_request_error"), false),
        (400, flat("InvalidParameter.NotSupportEnableThinking", "The model x does not support enable_thinking."), Some("InvalidParameter.NotSupportEnableThinking"), false),
        (400, nested("data_inspection_failed", "Input data may contain inappropriate content."), Some("content_filter"), false),
        (400, flat("DataInspectionFailed", "Input text data may contain inappropriate content."), Some("content_filter"), false),
        (400, nested("Arrearage", "Access denied, please make sure your account is in good standing."), Some("Arrearage"), false),
        (401, nested("invalid_api_key", "Incorrect API key provided."), Some("invalid_api_key"), false),
        (401, flat("InvalidApiKey", "Invalid API-key provided."), Some("InvalidApiKey"), false),
        (403, nested("access_denied", "Access denied."), Some("access_denied"), false),
        (403, flat("AccessDenied.Unpurchased", "Access to model denied."), Some("AccessDenied.Unpurchased"), false),
        (403, flat("Model.AccessDenied", "Model access denied."), Some("Model.AccessDenied"), false),
        (403, flat("AllocationQuota.FreeTierOnly", "The free tier of the model has been exhausted."), Some("AllocationQuota.FreeTierOnly"), false),
        (404, nested("model_not_found", "The model x does not exist or you do not have access to it."), Some("model_not_found"), false),
        (404, nested("model_not_supported", "Unsupported model x for OpenAI compatibility mode."), Some("model_not_supported"), false),
        (429, flat("Throttling", "Requests throttling triggered."), Some("Throttling"), true),
        (429, flat("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."), Some("Throttling.RateQuota"), true),
        (
            429,
            r#"{"error":{"message":"You have exceeded your current request limit. For details, see: https://help.aliyun.com/zh/model-studio/error-code#rate-limit","type":"limit_requests","code":"limit_requests"}}"#.to_string(),
            Some("limit_requests"),
            true,
        ),
        (429, nested("limit_burst_rate", "Request rate increased too quickly."), Some("limit_burst_rate"), true),
        (429, nested("insufficient_quota", "You exceeded your current quota, please check your plan and billing details."), Some("insufficient_quota"), true),
        (429, flat("Throttling.AllocationQuota", "Allocated quota exceeded, please increase your quota limit."), Some("Throttling.AllocationQuota"), true),
        (429, nested("insufficient_quota", "Free allocated quota exceeded."), Some("insufficient_quota"), false),
        (429, flat("PrepaidBillOverdue", "bill overdue"), Some("PrepaidBillOverdue"), false),
        (429, flat("PostpaidBillOverdue", "bill overdue"), Some("PostpaidBillOverdue"), false),
        (429, flat("CommodityNotPurchased", "not purchased"), Some("CommodityNotPurchased"), false),
        (500, nested("internal_error", "An internal error has occured, try again later or contact service support."), Some("internal_error"), true),
        (500, flat("InternalError.Algo", "inference internal error."), Some("InternalError.Algo"), true),
        (500, flat("RequestTimeOut", "Request timed out, try again later."), Some("RequestTimeOut"), true),
        (500, flat("SystemError", "system error"), Some("SystemError"), true),
        (503, flat("ModelServingError", "Too many requests."), Some("ModelServingError"), true),
        (503, flat("ModelUnavailable", "Model is unavailable, try again later."), Some("ModelUnavailable"), true),
    ];
    for (status, body, code, retryable) in cases {
        let parsed = error(status, &body);
        assert_eq!(parsed.status, status, "{body}");
        assert_eq!(parsed.code.as_deref(), code, "{body}");
        assert_eq!(parsed.retryable, retryable, "{body}");
        assert!(!parsed.message.is_empty());
        assert!(!parsed.error_type.is_empty());
    }
}

#[test]
fn context_overflow_keeps_the_provider_message() {
    let parsed = error(
        400,
        "data: {\"error\":{\"message\":\"<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 129024]\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_parameter_error\"},\"id\":\"chatcmpl-1\"}",
    );
    assert_eq!(parsed.code.as_deref(), Some("context_length_exceeded"));
    assert_eq!(parsed.error_type, "invalid_request_error");
    assert_eq!(
        parsed.message,
        "<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 129024]"
    );
}

#[test]
fn errors_inside_a_stream() {
    let mut decoder = Qwen::stream_decoder("qwen-plus".to_string());
    let event = |event: Option<&str>, data: &str| SseEvent { event: event.map(str::to_string), data: data.to_string() };
    let partial = decoder.push(event(
        None,
        r#"{"choices":[{"delta":{"content":"Once"},"index":0}],"id":"c","model":"qwen-plus","created":1}"#,
    ));
    assert!(matches!(partial, Ok(ref chunks) if chunks.len() == 1));

    let moderation = decoder.push(event(
        None,
        r#"{"error":{"message":"Output data may contain inappropriate content.","type":"data_inspection_failed","param":null,"code":"data_inspection_failed"}}"#,
    ));
    let Err(moderation) = moderation else { unreachable!("{moderation:?}") };
    assert_eq!(
        (moderation.status, moderation.code.as_deref(), moderation.retryable),
        (200, Some("content_filter"), false)
    );
    assert_eq!(moderation.message, "Output data may contain inappropriate content.");

    let flat = decoder.push(event(
        Some("error"),
        r#"{"code":"invalid_model_error","message":"Unsupported model \"\"","request_id":"r"}"#,
    ));
    let Err(flat) = flat else { unreachable!("{flat:?}") };
    assert_eq!((flat.status, flat.code.as_deref(), flat.retryable), (200, Some("invalid_model_error"), false));

    let search = decoder.push(event(
        Some("error"),
        r#"{"code":"InvalidParameter","message":"This model does not support enable_search."}"#,
    ));
    assert!(matches!(search, Err(ref e) if e.status == 200 && e.message.contains("enable_search")));

    let throttled = decoder
        .push(event(Some("error"), r#"{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded"}"#));
    assert!(matches!(throttled, Err(ref e) if e.retryable));
}

#[test]
fn models_list_keeps_chat_models() {
    let body = r#"{"object":"list","data":[
        {"id":"qwen-max","object":"model","created":1752741600,"owned_by":"system"},
        {"id":"qwen-plus","object":"model","created":1752741600,"owned_by":"system"},
        {"id":"qwen3-max","object":"model"},{"id":"qwen-vl-max"},{"id":"qwq-plus"},{"id":"qwen-mt-turbo"},
        {"id":"text-embedding-v4"},{"id":"multimodal-embedding-v1"},{"id":"gte-rerank-v2"},
        {"id":"wanx2.1-t2i-turbo"},{"id":"wan2.2-t2v-plus"},{"id":"qwen-image"},{"id":"qwen-tts"},
        {"id":"cosyvoice-v2"},{"id":"paraformer-realtime-v2"},{"id":"qwen3-asr-flash"},
        {"id":"qwen-omni-turbo-realtime"},{"id":"sambert-zhichu-v1"}]}"#;
    let models = match Qwen::parse_models(response(200, body)) {
        Ok(models) => models,
        Err(error) => unreachable!("{error:?}"),
    };
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["qwen-max", "qwen-plus", "qwen3-max", "qwen-vl-max", "qwq-plus", "qwen-mt-turbo"]);
    assert_eq!(models[0].context_window, Some(32_768), "limits come from the plugin's table");
    assert_eq!(models[2].context_window, None);

    let request = Qwen::build_models_request("https://dashscope-intl.aliyuncs.com/compatible-mode/v1");
    assert_eq!(
        request.map(|r| r.url),
        Some("https://dashscope-intl.aliyuncs.com/compatible-mode/v1/models".to_string())
    );
    let denied = Qwen::parse_models(response(
        401,
        r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    ));
    assert!(matches!(denied, Err(ref e) if e.status == 401 && !e.retryable));
}
