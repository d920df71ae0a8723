//! DashScope specifics, on the captures and the error table of the wire-format
//! reference (section 1).

use aigate_plugin_sdk::ChunkDecoder;
use aigate_plugin_sdk::serde_json::{self, json};
use aigate_plugin_sdk::types::{ChatRequest, EmbeddingsRequest, HttpResponse, Message, ProviderError, Role, SseEvent};

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
    assert_eq!(info.contract_version, "0.3.0");
    assert_eq!(info.default_base_url, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1");
    assert_eq!(info.auth, AuthScheme::Bearer);
    assert_eq!(info.version, option_env!("AIGATE_PLUGIN_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")));
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["qwen-turbo", "qwen-plus", "qwen-max", "text-embedding-v3", "text-embedding-v4"]);
    assert_eq!(info.models[2].context_window, Some(32_768));
    assert_eq!(info.models[2].max_output_tokens, Some(8_192));
    assert_eq!((info.models[4].context_window, info.models[4].max_output_tokens), (Some(8_192), None));
    assert_eq!(Qwen::capabilities(), Capabilities { embeddings: true, native_apis: vec![] });
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
fn models_list_keeps_chat_and_served_embedding_models() {
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
    assert_eq!(
        ids,
        ["qwen-max", "qwen-plus", "qwen3-max", "qwen-vl-max", "qwq-plus", "qwen-mt-turbo", "text-embedding-v4"]
    );
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

// ---- embeddings -----------------------------------------------------------

#[test]
fn embeddings_request() {
    let mut request = EmbeddingsRequest::new("text-embedding-v4", vec!["风急天高猿啸哀".to_string(), "hi".to_string()]);
    request.dimensions = Some(256);
    let http = match Qwen::build_embeddings_request("https://dashscope-intl.aliyuncs.com/compatible-mode/v1/", request)
    {
        Ok(http) => http,
        Err(error) => unreachable!("{error:?}"),
    };
    assert_eq!(
        (http.method.as_str(), http.url.as_str()),
        ("POST", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/embeddings")
    );
    assert_eq!(http.headers, [("content-type".to_string(), "application/json".to_string())]);
    assert_eq!(
        String::from_utf8_lossy(&http.body),
        r#"{"dimensions":256,"encoding_format":"float","input":["风急天高猿啸哀","hi"],"model":"text-embedding-v4"}"#
    );
}

/// DashScope's compatible-mode answer (its key order, an `id`, no
/// `object` on the entries).
#[test]
fn embeddings_response() {
    let body = r#"{"data":[{"embedding":[0.25,-0.5],"index":1},{"embedding":[-0.0625,0.125],"index":0}],"model":"text-embedding-v3","object":"list","usage":{"prompt_tokens":27,"total_tokens":27},"id":"a1b2"}"#;
    let parsed = match Qwen::parse_embeddings_response(response(200, body)) {
        Ok(parsed) => parsed,
        Err(error) => unreachable!("{error:?}"),
    };
    assert_eq!(parsed.model, "text-embedding-v3");
    assert_eq!(parsed.embeddings, [vec![-0.0625, 0.125], vec![0.25, -0.5]]);
    let usage = parsed.usage.map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens));
    assert_eq!(usage, Some((27, 0, 27)));
}

/// Embedding errors go through DashScope's rules: its TPM limit is
/// retryable, its billing states are not, and its codes are refined.
#[test]
fn embeddings_errors_follow_dashscope_rules() {
    let parse = |status: u16, body: &str| match Qwen::parse_embeddings_response(response(status, body)) {
        Ok(parsed) => unreachable!("expected an error, got {parsed:?}"),
        Err(error) => error,
    };
    let throttled = parse(
        429,
        r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","code":"insufficient_quota"}}"#,
    );
    assert!(throttled.retryable, "{throttled:?}");
    let overdue = parse(429, r#"{"code":"Arrearage","message":"Access denied, account in arrears.","request_id":"r"}"#);
    assert_eq!((overdue.status, overdue.code.as_deref(), overdue.retryable), (429, Some("Arrearage"), false));
    let moderated = parse(
        400,
        r#"{"error":{"message":"Input data may contain inappropriate content.","type":"data_inspection_failed","code":"data_inspection_failed"}}"#,
    );
    assert_eq!(moderated.code.as_deref(), Some("content_filter"));
    let too_many = parse(
        400,
        r#"{"error":{"message":"batch size is invalid, it should not be larger than 10.","type":"InvalidParameter","code":"InvalidParameter"}}"#,
    );
    assert_eq!((too_many.status, too_many.retryable), (400, false));
    assert!(too_many.message.contains("larger than 10"));
}

/// A request for qwen-plus with `extra`, streamed or not.
fn with_extra(extra: Value, stream: bool) -> ChatRequest {
    let mut request = ChatRequest::new("qwen-plus", vec![Message::text(Role::User, "Why is the sky blue?")]);
    request.stream = stream;
    request.extra = extra.to_string();
    request
}

/// The upstream body for `request`, or the plugin's error.
fn body_of(request: ChatRequest) -> Result<Value, ProviderError> {
    let http = Qwen::build_request("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", request)?;
    serde_json::from_slice(&http.body).map_err(|e| ProviderError::invalid_request(e.to_string()))
}

fn body(request: ChatRequest) -> Value {
    match body_of(request) {
        Ok(body) => body,
        Err(error) => unreachable!("{error:?}"),
    }
}

/// `reasoning_effort` becomes `enable_thinking` and never reaches DashScope;
/// other extras pass through.
#[test]
fn reasoning_effort_sets_enable_thinking() {
    for (effort, thinking) in [("minimal", false), ("low", true), ("medium", true), ("high", true)] {
        let body = body(with_extra(json!({"reasoning_effort": effort, "top_k": 20}), true));
        assert_eq!(body.get("enable_thinking"), Some(&json!(thinking)), "{effort}: {body}");
        assert_eq!(body.get("reasoning_effort"), None, "{effort}: {body}");
        assert_eq!(body["top_k"], 20);
        assert!(body.get("thinking_budget").is_none(), "no invented budget: {body}");
    }
}

#[test]
fn explicit_enable_thinking_wins_over_the_effort() {
    for (effort, explicit) in [("high", false), ("low", false), ("minimal", true)] {
        let body = body(with_extra(json!({"reasoning_effort": effort, "enable_thinking": explicit}), true));
        assert_eq!(body["enable_thinking"], explicit, "{effort}");
        assert_eq!(body.get("reasoning_effort"), None);
    }
    // Even against what the effort alone would leave out (non-streaming).
    let body = body(with_extra(json!({"reasoning_effort": "high", "enable_thinking": true}), false));
    assert_eq!(body["enable_thinking"], true);
}

/// DashScope refuses thinking in non-streaming calls and in JSON mode: there
/// the effort adds nothing, while `minimal` still switches thinking off.
#[test]
fn reasoning_effort_never_switches_thinking_on_where_dashscope_refuses_it() {
    for effort in ["low", "medium", "high"] {
        let body = body(with_extra(json!({"reasoning_effort": effort}), false));
        assert_eq!((body.get("enable_thinking"), body.get("reasoning_effort")), (None, None), "{effort}: {body}");
    }
    assert_eq!(body(with_extra(json!({"reasoning_effort": "minimal"}), false))["enable_thinking"], false);
    for format in [ResponseFormat::JsonObject, ResponseFormat::JsonSchema(r#"{"name":"x","schema":{}}"#.into())] {
        let mut request = with_extra(json!({"reasoning_effort": "high"}), true);
        request.response_format = Some(format);
        let body = body(request);
        assert_eq!((body.get("enable_thinking"), body.get("reasoning_effort")), (None, None), "{body}");
    }
}

#[test]
fn null_or_absent_reasoning_effort_changes_nothing() {
    let body = body(with_extra(json!({"reasoning_effort": null, "top_k": 20}), true));
    assert_eq!((body.get("enable_thinking"), body.get("reasoning_effort")), (None, None), "{body}");
    assert_eq!(body["top_k"], 20);
    let request = ChatRequest { extra: String::new(), ..with_extra(json!({}), true) };
    assert!(body_of(request).is_ok_and(|body| body.get("enable_thinking").is_none()));
}

#[test]
fn unknown_reasoning_effort_is_a_400() {
    for bad in [json!("max"), json!("HIGH"), json!(3), json!(true)] {
        // Refused even when an explicit `enable_thinking` would have won.
        for extra in [json!({"reasoning_effort": bad}), json!({"reasoning_effort": bad, "enable_thinking": true})] {
            let error = match body_of(with_extra(extra, true)) {
                Ok(body) => unreachable!("expected a 400, got {body}"),
                Err(error) => error,
            };
            assert_eq!(
                (error.status, error.error_type.as_str(), error.retryable),
                (400, "invalid_request_error", false)
            );
            assert!(error.message.contains("reasoning_effort"), "{error:?}");
            assert!(error.message.contains("minimal, low, medium, high"), "{error:?}");
        }
    }
}
