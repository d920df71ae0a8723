//! Host-target tests of the OpenAI-compatible translation, on wire captures
//! from the reference (DashScope compatible mode and OpenAI).

use serde_json::{Value, json};

use super::*;
use crate::ChunkDecoder;
use crate::types::*;

/// Like DashScope: `insufficient_quota` is TPM throttling there, billing
/// states have their own codes.
const THROTTLE_QUOTA: Dialect = Dialect {
    billing_codes: &["PrepaidBillOverdue", "PostpaidBillOverdue", "CommodityNotPurchased", "Arrearage"],
    retryable_codes: &["limit_requests", "insufficient_quota", "internal_error"],
    developer_as_system: true,
    missing_content_as_empty: true,
    ..Dialect::OPENAI
};

fn request() -> ChatRequest {
    ChatRequest::new("qwen-plus", vec![message(Role::User, "hi")])
}

fn message(role: Role, text: &str) -> Message {
    Message::text(role, text)
}

fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
}

fn body(dialect: &Dialect, request: &ChatRequest) -> Value {
    match dialect.chat_body(request) {
        Ok(body) => body,
        Err(error) => unreachable!("chat_body failed: {error:?}"),
    }
}

fn err<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> ProviderError {
    match result {
        Ok(value) => unreachable!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

fn ok<T>(result: Result<T, ProviderError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => unreachable!("unexpected error: {error:?}"),
    }
}

// ---- request ---------------------------------------------------------------

#[test]
fn minimal_request_body() {
    assert_eq!(
        body(&Dialect::OPENAI, &request()),
        json!({"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}], "stream": false})
    );
}

#[test]
fn full_request_body() {
    let mut req = request();
    req.messages = vec![
        message(Role::Developer, "be brief"),
        Message {
            content: Some(MessageContent::Parts(vec![
                ContentPart::Text("what is ".to_string()),
                ContentPart::Text("this?".to_string()),
            ])),
            name: Some("ann".to_string()),
            ..message(Role::User, "")
        },
        Message {
            content: Some(MessageContent::Parts(vec![
                ContentPart::Text("and this?".to_string()),
                ContentPart::Image(ImageUrl { url: "https://x/cat.png".to_string(), detail: Some("low".to_string()) }),
                ContentPart::Image(ImageUrl { url: "data:image/png;base64,AAAA".to_string(), detail: None }),
            ])),
            ..message(Role::User, "")
        },
        Message {
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_1".to_string(),
                name: "get_weather".to_string(),
                arguments: "{\"city\": \"上海\"".to_string(),
            }],
            reasoning_content: Some("thinking".to_string()),
            ..message(Role::Assistant, "")
        },
        Message { tool_call_id: Some("call_1".to_string()), ..message(Role::Tool, "{\"temp\": 21}") },
    ];
    req.tools = vec![FunctionTool {
        name: "get_weather".to_string(),
        description: Some("Weather now".to_string()),
        parameters: Some(r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.to_string()),
        strict: Some(true),
    }];
    req.tool_choice = Some(ToolChoice::Function("get_weather".to_string()));
    req.parallel_tool_calls = Some(true);
    req.temperature = Some(0.7);
    req.top_p = Some(0.8);
    req.max_tokens = Some(512);
    req.stop = vec!["END".to_string()];
    req.seed = Some(42);
    req.n = Some(1);
    req.presence_penalty = Some(0.5);
    req.frequency_penalty = Some(-0.5);
    req.response_format =
        Some(ResponseFormat::JsonSchema(r#"{"name":"w","schema":{"type":"object"},"strict":true}"#.to_string()));
    req.user = Some("u-1".to_string());
    req.stream = true;
    req.extra =
        r#"{"enable_thinking": true, "model": "evil", "stream_options": {"include_usage": false}, "temperature": 2}"#
            .to_string();

    assert_eq!(
        body(&Dialect::OPENAI, &req),
        json!({
            "model": "qwen-plus",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "what is this?", "name": "ann"},
                {"role": "user", "content": [
                    {"type": "text", "text": "and this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"上海\""}},
                ]},
                {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": "call_1"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Weather now", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": true,
            "temperature": 0.7,
            "top_p": 0.8,
            "max_tokens": 512,
            "stop": ["END"],
            "seed": 42,
            "n": 1,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
            "user": "u-1",
            "stream": true,
            "stream_options": {"include_usage": true},
            "enable_thinking": true,
        })
    );
}

#[test]
fn dialect_quirks_in_request() {
    let mut req = request();
    req.messages = vec![
        message(Role::Developer, "sys"),
        Message {
            content: None,
            reasoning_content: Some("because".to_string()),
            tool_calls: vec![ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into() }],
            ..message(Role::Assistant, "")
        },
    ];
    req.max_tokens = Some(10);
    let dialect = Dialect { echo_reasoning_content: true, max_tokens_key: "max_completion_tokens", ..THROTTLE_QUOTA };
    let body = body(&dialect, &req);
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "sys"}));
    assert_eq!(body["messages"][1]["content"], json!(""));
    assert_eq!(body["messages"][1]["reasoning_content"], json!("because"));
    assert_eq!(body["max_completion_tokens"], json!(10));
    assert!(body.get("max_tokens").is_none());
}

#[test]
fn tool_choice_strings_and_response_formats() {
    for (choice, wire) in [(ToolChoice::None, "none"), (ToolChoice::Auto, "auto"), (ToolChoice::Required, "required")] {
        let req = ChatRequest { tool_choice: Some(choice), ..request() };
        assert_eq!(body(&Dialect::OPENAI, &req)["tool_choice"], json!(wire));
    }
    for (format, wire) in [(ResponseFormat::Text, "text"), (ResponseFormat::JsonObject, "json_object")] {
        let req = ChatRequest { response_format: Some(format), ..request() };
        assert_eq!(body(&Dialect::OPENAI, &req)["response_format"], json!({"type": wire}));
    }
}

#[test]
fn build_chat_request_targets_chat_completions() {
    let req = ChatRequest { stream: true, ..request() };
    let http = ok(Dialect::OPENAI.build_chat_request("https://dashscope-intl.aliyuncs.com/compatible-mode/v1/", &req));
    assert_eq!(http.method, "POST");
    assert_eq!(http.url, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions");
    assert!(http.headers.contains(&("content-type".to_string(), "application/json".to_string())));
    let sent: Value = ok(serde_json::from_slice(&http.body).map_err(|e| ProviderError::invalid_request(e.to_string())));
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[test]
fn untranslatable_requests_are_400() {
    let bad_tool = ChatRequest {
        tools: vec![FunctionTool {
            name: "f".into(),
            description: None,
            parameters: Some("{nope".into()),
            strict: None,
        }],
        ..request()
    };
    let error = err(Dialect::OPENAI.chat_body(&bad_tool));
    assert_eq!((error.status, error.retryable), (400, false));
    assert!(error.message.contains("tools[0].parameters"), "{}", error.message);

    let bad_extra = ChatRequest { extra: "[1]".into(), ..request() };
    assert_eq!(err(Dialect::OPENAI.chat_body(&bad_extra)).status, 400);
    let nan = ChatRequest { temperature: Some(f64::NAN), ..request() };
    assert_eq!(err(Dialect::OPENAI.chat_body(&nan)).status, 400);
    let bad_schema = ChatRequest { response_format: Some(ResponseFormat::JsonSchema("".into())), ..request() };
    assert_eq!(err(Dialect::OPENAI.chat_body(&bad_schema)).status, 400);
}

// ---- response --------------------------------------------------------------

#[test]
fn dashscope_text_response() {
    let body = r#"{"choices":[{"message":{"role":"assistant","content":"我是通义千问…"},
             "finish_reason":"stop","index":0,"logprobs":null}],
 "object":"chat.completion",
 "usage":{"prompt_tokens":11,"completion_tokens":65,"total_tokens":76,
          "prompt_tokens_details":{"cached_tokens":0}},
 "created":1770285809,
 "system_fingerprint":null,
 "model":"qwen-plus",
 "id":"chatcmpl-63414f89-e97d-9449-8f3c-1e72cf1f6e40"}"#;
    let parsed = ok(THROTTLE_QUOTA.parse_chat_response(&response(200, body)));
    assert_eq!(
        parsed,
        ChatResponse {
            id: "chatcmpl-63414f89-e97d-9449-8f3c-1e72cf1f6e40".into(),
            created: 1770285809,
            model: "qwen-plus".into(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    content: Some("我是通义千问…".into()),
                    reasoning_content: None,
                    tool_calls: vec![],
                    refusal: None,
                },
                finish_reason: Some(FinishReason::Stop),
            }],
            usage: Some(Usage {
                prompt_tokens: 11,
                completion_tokens: 65,
                total_tokens: 76,
                cached_tokens: Some(0),
                reasoning_tokens: None,
            }),
            raw_cost: None,
            system_fingerprint: None,
        }
    );
}

#[test]
fn old_capture_without_details_and_missing_fields() {
    // 2024 captures have no prompt_tokens_details; a bare server may omit id,
    // created and total_tokens.
    let body = r#"{"choices":[{"message":{"content":"ok"},"finish_reason":null}],
                   "usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
    let parsed = ok(Dialect::OPENAI.parse_chat_response(&response(200, body)));
    assert_eq!((parsed.id.as_str(), parsed.created, parsed.model.as_str()), ("", 0, ""));
    assert_eq!(parsed.choices[0].finish_reason, None);
    assert_eq!(
        parsed.usage,
        Some(Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            total_tokens: 7,
            cached_tokens: None,
            reasoning_tokens: None
        })
    );
}

#[test]
fn dashscope_tool_call_response_with_index() {
    let body = r#"{"choices":[{"message":{"content":"","role":"assistant",
      "tool_calls":[{"index":0,"id":"call_f8d9","type":"function",
                     "function":{"name":"get_current_weather","arguments":"{\"location\": \"上海\"}"}}]},
      "finish_reason":"tool_calls","index":0,"logprobs":null}],
      "object":"chat.completion","usage":{"prompt_tokens":230,"completion_tokens":21,"total_tokens":251},
      "created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-1"}"#;
    let parsed = ok(THROTTLE_QUOTA.parse_chat_response(&response(200, body)));
    let choice = &parsed.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.message.content.as_deref(), Some(""));
    assert_eq!(
        choice.message.tool_calls,
        vec![ToolCall {
            id: "call_f8d9".into(),
            name: "get_current_weather".into(),
            arguments: "{\"location\": \"上海\"}".into(),
        }]
    );
}

#[test]
fn reasoning_response_with_detailed_usage() {
    let body = r#"{"id":"chatcmpl-2","model":"qwen3-max","created":1,
      "choices":[{"index":0,"finish_reason":"stop",
                  "message":{"role":"assistant","content":"42","reasoning_content":"Let me think."}}],
      "usage":{"prompt_tokens":1030,"completion_tokens":1642,"total_tokens":2672,
               "completion_tokens_details":{"reasoning_tokens":798,"text_tokens":844},
               "prompt_tokens_details":{"text_tokens":1030,"cached_tokens":512}}}"#;
    let parsed = ok(THROTTLE_QUOTA.parse_chat_response(&response(200, body)));
    assert_eq!(parsed.choices[0].message.reasoning_content.as_deref(), Some("Let me think."));
    assert_eq!(
        parsed.usage,
        Some(Usage {
            prompt_tokens: 1030,
            completion_tokens: 1642,
            total_tokens: 2672,
            cached_tokens: Some(512),
            reasoning_tokens: Some(798),
        })
    );
}

#[test]
fn openai_response_with_refusal_and_fingerprint() {
    let body = r#"{"id":"chatcmpl-abc123","object":"chat.completion","created":1743580800,"model":"gpt-4o-2024-08-06",
 "choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},
             "logprobs":null,"finish_reason":"content_filter"}],
 "usage":{"prompt_tokens":19,"completion_tokens":17,"total_tokens":36,
          "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
          "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,
                                       "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
 "system_fingerprint":"fp_abc123def456","service_tier":"default"}"#;
    let parsed = ok(Dialect::OPENAI.parse_chat_response(&response(200, body)));
    assert_eq!(parsed.system_fingerprint.as_deref(), Some("fp_abc123def456"));
    let message = &parsed.choices[0].message;
    assert_eq!((message.content.as_deref(), message.refusal.as_deref()), (None, Some("I can't help with that.")));
    assert_eq!(parsed.choices[0].finish_reason, Some(FinishReason::ContentFilter));
    assert_eq!(parsed.usage.map(|u| (u.cached_tokens, u.reasoning_tokens)), Some((Some(0), Some(0))));
}

#[test]
fn unknown_finish_reason_and_object_arguments() {
    let body = r#"{"choices":[{"finish_reason":"function_call","message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],
      "tool_calls":[{"id":"c","function":{"name":"f","arguments":{"x":1}}}]}}]}"#;
    let parsed = ok(Dialect::OPENAI.parse_chat_response(&response(200, body)));
    assert_eq!(parsed.choices[0].finish_reason, Some(FinishReason::Other("function_call".into())));
    assert_eq!(parsed.choices[0].message.content.as_deref(), Some("ab"));
    assert_eq!(parsed.choices[0].message.tool_calls[0].arguments, r#"{"x":1}"#);
}

#[test]
fn non_json_success_is_a_provider_error() {
    let error = err(Dialect::OPENAI.parse_chat_response(&response(200, "<html>oops</html>")));
    assert_eq!((error.status, error.error_type.as_str()), (200, "invalid_response"));
    let error =
        err(Dialect::OPENAI.parse_chat_response(&response(200, r#"{"error":{"message":"x","type":"server_error"}}"#)));
    assert_eq!((error.status, error.error_type.as_str(), error.retryable), (200, "server_error", true));
}

// ---- errors ----------------------------------------------------------------

fn parse_error(dialect: &Dialect, status: u16, body: &str) -> ProviderError {
    err(dialect.parse_chat_response(&response(status, body)))
}

#[test]
fn nested_error_with_request_id() {
    let error = parse_error(
        &THROTTLE_QUOTA,
        401,
        r#"{"error":{"message":"Incorrect API key provided. For details, see: https://help.aliyun.com/zh/model-studio/error-code#apikey-error",
          "type":"invalid_request_error","param":null,"code":"invalid_api_key"},
 "request_id":"b02e047c-ca07-98df-ae99-d211d0990216"}"#,
    );
    assert_eq!(
        error,
        ProviderError {
            status: 401,
            error_type: "invalid_request_error".into(),
            code: Some("invalid_api_key".into()),
            message: "Incorrect API key provided. For details, see: https://help.aliyun.com/zh/model-studio/error-code#apikey-error".into(),
            retryable: false,
        }
    );
}

#[test]
fn nested_error_with_id_and_code_first() {
    let error = parse_error(
        &THROTTLE_QUOTA,
        400,
        r#"{"error":{"code":"invalid_parameter_error","param":null,
          "message":"<400> InternalError.Algo.InvalidParameter: 'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
          "type":"invalid_request_error"},
 "id":"chatcmpl-b41c1495-d9a4-4878-8ec5-48bb55fc921b",
 "request_id":"b41c1495-d9a4-4878-8ec5-48bb55fc921b"}"#,
    );
    assert_eq!(error.code.as_deref(), Some("invalid_parameter_error"));
    assert_eq!(error.error_type, "invalid_request_error");
    assert!(error.message.starts_with("<400> InternalError.Algo.InvalidParameter"));
    assert!(!error.retryable);
}

#[test]
fn sse_framed_error_body() {
    let error = parse_error(
        &THROTTLE_QUOTA,
        400,
        "data: {\"error\":{\"message\":\"Range of input length should be [1, 129024]\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_parameter_error\"},\"id\":\"chatcmpl-1\"}\n\n",
    );
    assert_eq!(error.status, 400);
    assert_eq!(error.code.as_deref(), Some("invalid_parameter_error"));
    assert_eq!(error.message, "Range of input length should be [1, 129024]");

    let error = parse_error(
        &THROTTLE_QUOTA,
        400,
        "event: error\r\ndata:{\"code\":\"invalid_model_error\",\"message\":\"Unsupported model \\\"\\\"\",\"request_id\":\"r\"}\r\n\r\n",
    );
    assert_eq!(
        (error.code.as_deref(), error.message.as_str()),
        (Some("invalid_model_error"), "Unsupported model \"\"")
    );
    assert_eq!(error.error_type, "invalid_request_error");
}

#[test]
fn flat_and_odd_error_shapes() {
    let flat = parse_error(
        &THROTTLE_QUOTA,
        401,
        r#"{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"x"}"#,
    );
    assert_eq!(
        (flat.error_type.as_str(), flat.code.as_deref(), flat.message.as_str()),
        ("authentication_error", Some("InvalidApiKey"), "Invalid API-key provided.")
    );
    let ollama = parse_error(&Dialect::OPENAI, 404, r#"{"error":"model \"llama9\" not found, try pulling it first"}"#);
    assert_eq!((ollama.error_type.as_str(), ollama.code.as_deref()), ("not_found_error", None));
    assert!(ollama.message.starts_with("model \"llama9\""));
    let vllm = parse_error(
        &Dialect::OPENAI,
        400,
        r#"{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}"#,
    );
    assert_eq!(
        (vllm.error_type.as_str(), vllm.code.as_deref(), vllm.message.as_str()),
        ("BadRequestError", Some("400"), "too long")
    );
    let fastapi = parse_error(&Dialect::OPENAI, 404, r#"{"detail":"Not Found"}"#);
    assert_eq!(fastapi.message, "Not Found");
}

#[test]
fn non_json_error_bodies() {
    let html = parse_error(&Dialect::OPENAI, 502, "<html><body>Bad Gateway</body></html>");
    assert_eq!((html.error_type.as_str(), html.retryable), ("server_error", true));
    assert_eq!(html.message, "<html><body>Bad Gateway</body></html>");
    let empty = parse_error(&Dialect::OPENAI, 503, "");
    assert!(empty.message.contains("503"), "{}", empty.message);
    let long = parse_error(&Dialect::OPENAI, 500, &"é".repeat(5000));
    assert!(long.message.len() <= 2048 + '…'.len_utf8());
    let garbage = Dialect::OPENAI.parse_error(400, &[0xff, 0xfe, b'x']);
    assert_eq!(garbage.status, 400);
}

#[test]
fn retry_classification_is_per_dialect() {
    let quota = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    assert!(!parse_error(&Dialect::OPENAI, 429, quota).retryable, "OpenAI: credit is spent");
    assert!(parse_error(&THROTTLE_QUOTA, 429, quota).retryable, "DashScope: TPM limit");

    let limit = r#"{"error":{"message":"You have exceeded your current request limit.","type":"limit_requests","code":"limit_requests"}}"#;
    assert!(parse_error(&THROTTLE_QUOTA, 429, limit).retryable);
    let rate = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    assert!(parse_error(&Dialect::OPENAI, 429, rate).retryable);

    for code in ["PrepaidBillOverdue", "PostpaidBillOverdue", "CommodityNotPurchased", "prepaid_bill_overdue"] {
        let body = format!(r#"{{"code":"{code}","message":"billing"}}"#);
        assert!(!parse_error(&THROTTLE_QUOTA, 429, &body).retryable, "{code}");
    }
    let arrearage = r#"{"error":{"message":"Access denied, please make sure your account is in good standing.","type":"Arrearage","code":"Arrearage"}}"#;
    assert!(!parse_error(&THROTTLE_QUOTA, 400, arrearage).retryable);

    assert!(
        parse_error(
            &THROTTLE_QUOTA,
            500,
            r#"{"error":{"message":"An internal error has occured","type":"internal_error","code":"internal_error"}}"#
        )
        .retryable
    );
    assert!(
        parse_error(
            &THROTTLE_QUOTA,
            503,
            r#"{"code":"ModelUnavailable","message":"Model is unavailable, try again later."}"#
        )
        .retryable
    );
    assert!(parse_error(&Dialect::OPENAI, 408, "").retryable);
    assert!(
        !parse_error(
            &Dialect::OPENAI,
            404,
            r#"{"error":{"message":"m","type":"invalid_request_error","code":"model_not_found"}}"#
        )
        .retryable
    );
    assert!(
        !parse_error(&Dialect::OPENAI, 403, r#"{"error":{"message":"region","type":"permission_error"}}"#).retryable
    );
}

#[test]
fn refine_error_runs_last() {
    fn rename(error: &mut ProviderError) {
        if error.code.as_deref() == Some("data_inspection_failed") {
            error.code = Some("content_filter".into());
        }
    }
    let dialect = Dialect { refine_error: rename, ..THROTTLE_QUOTA };
    let error = parse_error(
        &dialect,
        400,
        r#"{"error":{"message":"Input data may contain inappropriate content.","type":"data_inspection_failed","code":"data_inspection_failed"}}"#,
    );
    assert_eq!((error.code.as_deref(), error.error_type.as_str()), (Some("content_filter"), "data_inspection_failed"));
}

// ---- stream ----------------------------------------------------------------

fn data(data: &str) -> SseEvent {
    SseEvent { event: None, data: data.to_string() }
}

fn push_all(decoder: &mut StreamDecoder, events: Vec<SseEvent>) -> Vec<StreamChunk> {
    let mut chunks = Vec::new();
    for event in events {
        chunks.extend(ok(decoder.push(event)));
    }
    chunks.extend(ok(decoder.finish()));
    chunks
}

const ID: &str = "chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8";

fn delta(content: Option<&str>, role: Option<Role>, finish: Option<FinishReason>) -> ChoiceDelta {
    ChoiceDelta {
        index: 0,
        role,
        content: content.map(str::to_string),
        reasoning_content: None,
        tool_calls: vec![],
        finish_reason: finish,
        refusal: None,
    }
}

#[test]
fn dashscope_stream_with_usage_chunk() {
    let events = [
        r#"{"choices":[{"delta":{"content":"","role":"assistant"},"index":0,"logprobs":null,"finish_reason":null}],"object":"chat.completion.chunk","usage":null,"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#,
        r#"{"choices":[{"finish_reason":null,"delta":{"content":"I am"},"index":0,"logprobs":null}],"object":"chat.completion.chunk","usage":null,"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#,
        r#"{"choices":[{"finish_reason":"stop","delta":{"content":""},"index":0,"logprobs":null}],"object":"chat.completion.chunk","usage":null,"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#,
        r#"{"choices":[],"object":"chat.completion.chunk","usage":{"prompt_tokens":22,"completion_tokens":17,"total_tokens":39},"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#,
        "[DONE]",
    ];
    let mut decoder = THROTTLE_QUOTA.stream_decoder("qwen-plus".into());
    let chunks = push_all(&mut decoder, events.iter().map(|e| data(e)).collect());
    let chunk = |choices, usage| StreamChunk {
        id: ID.into(),
        created: 1726132850,
        model: "qwen-plus".into(),
        choices,
        usage,
        raw_cost: None,
    };
    assert_eq!(
        chunks,
        vec![
            chunk(vec![delta(Some(""), Some(Role::Assistant), None)], None),
            chunk(vec![delta(Some("I am"), None, None)], None),
            chunk(vec![delta(Some(""), None, Some(FinishReason::Stop))], None),
            chunk(
                vec![],
                Some(Usage {
                    prompt_tokens: 22,
                    completion_tokens: 17,
                    total_tokens: 39,
                    cached_tokens: None,
                    reasoning_tokens: None
                })
            ),
        ]
    );
}

#[test]
fn reasoning_stream_with_detailed_usage() {
    let events = [
        r#"{"id":"c1","created":5,"model":"qwen3.6-plus","choices":[{"index":0,"delta":{"content":null,"role":"assistant","reasoning_content":""}}]}"#,
        r#"{"id":"c1","created":5,"model":"qwen3.6-plus","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Hmm."}}]}"#,
        r#"{"id":"c1","created":5,"model":"qwen3.6-plus","choices":[{"index":0,"delta":{"content":"Yes.","reasoning_content":null},"finish_reason":"stop"}]}"#,
        r#"{"id":"c1","created":5,"model":"qwen3.6-plus","choices":[],"usage":{"prompt_tokens":1030,"completion_tokens":1642,"total_tokens":2672,"completion_tokens_details":{"reasoning_tokens":798,"text_tokens":844},"prompt_tokens_details":{"text_tokens":1030}}}"#,
        "",
        "[DONE]",
    ];
    let mut decoder = THROTTLE_QUOTA.stream_decoder("qwen3.6-plus".into());
    let chunks = push_all(&mut decoder, events.iter().map(|e| data(e)).collect());
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks[0].choices[0].reasoning_content.as_deref(), Some(""));
    assert_eq!(chunks[0].choices[0].content, None);
    assert_eq!(chunks[1].choices[0].reasoning_content.as_deref(), Some("Hmm."));
    assert_eq!(chunks[2].choices[0].content.as_deref(), Some("Yes."));
    assert_eq!(chunks[2].choices[0].reasoning_content, None);
    let usage = chunks[3].usage;
    assert_eq!(usage.map(|u| (u.reasoning_tokens, u.cached_tokens, u.total_tokens)), Some((Some(798), None, 2672)));
}

#[test]
fn tool_call_deltas() {
    let events = [
        r#"{"id":"c","created":1,"model":"qwen-plus","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
        r#"{"id":"c","created":1,"model":"qwen-plus","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"","type":"function","function":{"arguments":"{\"city\":"}}]}}]}"#,
        // Some servers repeat id and name in every piece.
        r#"{"id":"c","created":1,"model":"qwen-plus","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"get_weather","arguments":"\"Paris\"}"}}]}}]}"#,
        r#"{"id":"c","created":1,"model":"qwen-plus","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"get_time","arguments":"{}"}}]}}]}"#,
        r#"{"id":"c","created":1,"model":"qwen-plus","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
    ];
    let mut decoder = THROTTLE_QUOTA.stream_decoder("qwen-plus".into());
    let chunks = push_all(&mut decoder, events.iter().map(|e| data(e)).collect());
    let calls: Vec<ToolCallDelta> = chunks.iter().flat_map(|c| c.choices[0].tool_calls.clone()).collect();
    let call = |index, id: Option<&str>, name: Option<&str>, arguments: &str| ToolCallDelta {
        index,
        id: id.map(str::to_string),
        name: name.map(str::to_string),
        arguments: Some(arguments.to_string()),
    };
    assert_eq!(
        calls,
        vec![
            call(0, Some("call_1"), Some("get_weather"), ""),
            call(0, None, None, "{\"city\":"),
            call(0, None, None, "\"Paris\"}"),
            call(1, Some("call_2"), Some("get_time"), "{}"),
        ]
    );
    assert_eq!(chunks[4].choices[0].finish_reason, Some(FinishReason::ToolCalls));
}

#[test]
fn usage_inside_a_choices_chunk_is_reported_at_finish() {
    let mut decoder = Dialect::OPENAI.stream_decoder("m".into());
    let chunks = ok(decoder.push(data(
        r#"{"id":"x","created":2,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
    )));
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].usage, None);
    let tail = ok(decoder.finish());
    assert_eq!(tail.len(), 1);
    assert!(tail[0].choices.is_empty());
    assert_eq!(tail[0].usage.as_ref().map(|u| u.total_tokens), Some(3));
    assert_eq!((tail[0].id.as_str(), tail[0].created), ("x", 2));
}

#[test]
fn decoder_keeps_requested_model_and_fills_missing_ids() {
    let mut decoder = Dialect::OPENAI.stream_decoder("llama3".into());
    let chunks = ok(decoder.push(data(r#"{"choices":[{"delta":{"content":"hi"}}]}"#)));
    assert_eq!((chunks[0].model.as_str(), chunks[0].id.as_str(), chunks[0].created), ("llama3", "", 0));
    assert!(ok(decoder.push(data(r#"{"choices":[],"usage":null}"#))).is_empty());
    assert!(ok(decoder.finish()).is_empty());
}

#[test]
fn mid_stream_errors_have_status_200() {
    let mut decoder = THROTTLE_QUOTA.stream_decoder("qwen-plus".into());
    assert_eq!(ok(decoder.push(data(r#"{"id":"c","choices":[{"index":0,"delta":{"content":"partial"}}]}"#))).len(), 1);
    let error = err(decoder.push(data(
        r#"{"error":{"message":"Output data may contain inappropriate content.","type":"data_inspection_failed","param":null,"code":"data_inspection_failed"}}"#,
    )));
    assert_eq!(
        error,
        ProviderError {
            status: 200,
            error_type: "data_inspection_failed".into(),
            code: Some("data_inspection_failed".into()),
            message: "Output data may contain inappropriate content.".into(),
            retryable: false,
        }
    );

    let mut decoder = THROTTLE_QUOTA.stream_decoder("".into());
    let error = err(decoder.push(SseEvent {
        event: Some("error".into()),
        data: r#"{"code":"invalid_model_error","message":"Unsupported model \"\"","request_id":"r"}"#.into(),
    }));
    assert_eq!((error.status, error.code.as_deref()), (200, Some("invalid_model_error")));
    assert_eq!((error.error_type.as_str(), error.retryable), ("api_error", false));

    let throttled =
        err(decoder.push(data(r#"{"error":{"message":"slow down","type":"limit_requests","code":"limit_requests"}}"#)));
    assert!(throttled.retryable, "retryable codes apply inside streams");
    let not_json = err(decoder.push(data("{oops")));
    assert_eq!((not_json.status, not_json.error_type.as_str()), (200, "invalid_response"));
}

// ---- models ----------------------------------------------------------------

#[test]
fn models_list_is_filtered_and_enriched() {
    let known = [ModelInfo { id: "gpt-4o".into(), context_window: Some(128_000), max_output_tokens: Some(16_384) }];
    let body = r#"{"object":"list","data":[
        {"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},
        {"id":"text-embedding-3-small","object":"model"},
        {"id":"whisper-1"},{"id":"dall-e-3"},{"id":"gpt-4o-realtime-preview"},{"id":"tts-1"},
        {"id":"omni-moderation-latest"},{"id":"gpt-image-1"},
        {"id":"my-llama","max_model_len":8192},
        {"id":"gpt-4o"},{"object":"model"}]}"#;
    let models = ok(Dialect::OPENAI.parse_models(&response(200, body), &known));
    assert_eq!(
        models,
        vec![
            known[0].clone(),
            ModelInfo { id: "my-llama".into(), context_window: Some(8192), max_output_tokens: None },
        ]
    );
    let error = err(Dialect::OPENAI.parse_models(
        &response(401, r#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#),
        &known,
    ));
    assert_eq!((error.status, error.code.as_deref()), (401, Some("invalid_api_key")));
    let request = Dialect::OPENAI.build_models_request("http://localhost:11434/v1/");
    assert_eq!((request.method.as_str(), request.url.as_str()), ("GET", "http://localhost:11434/v1/models"));
}

#[test]
fn streamed_refusal_is_kept() {
    // Contract 0.2.0 added `choice-delta.refusal` so OpenAI's `delta.refusal` is not lost.
    let mut decoder = Dialect::OPENAI.stream_decoder("gpt-4o".into());
    let data = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":"I can't help with that."},"finish_reason":null}]}"#;
    let chunks = push_all(&mut decoder, vec![SseEvent { event: None, data: data.into() }]);
    assert_eq!(chunks[0].choices[0].refusal.as_deref(), Some("I can't help with that."));
    assert_eq!(chunks[0].choices[0].content, None);
}

// ---- embeddings ------------------------------------------------------------

fn embed_request() -> EmbeddingsRequest {
    EmbeddingsRequest::new("text-embedding-3-small", vec!["The food was delicious".into(), "上海".into()])
}

fn embeddings(body: &str) -> Result<EmbeddingsResponse, ProviderError> {
    Dialect::OPENAI.parse_embeddings_response(&response(200, body))
}

#[test]
fn embeddings_request_exact_bytes() {
    let http = ok(Dialect::OPENAI.build_embeddings_request("https://api.openai.com/v1/", &embed_request()));
    assert_eq!((http.method.as_str(), http.url.as_str()), ("POST", "https://api.openai.com/v1/embeddings"));
    assert_eq!(http.headers, [("content-type".to_string(), "application/json".to_string())]);
    assert_eq!(
        String::from_utf8_lossy(&http.body),
        r#"{"encoding_format":"float","input":["The food was delicious","上海"],"model":"text-embedding-3-small"}"#
    );
}

#[test]
fn embeddings_request_optional_fields() {
    let mut request = embed_request();
    request.input.truncate(1);
    request.dimensions = Some(256);
    request.user = Some("user-7".into());
    assert_eq!(
        ok(Dialect::OPENAI.embeddings_body(&request)),
        json!({
            "model": "text-embedding-3-small",
            "input": ["The food was delicious"],
            "dimensions": 256,
            "encoding_format": "float",
            "user": "user-7",
        })
    );
    request.input.clear();
    let error = err(Dialect::OPENAI.build_embeddings_request("https://a/v1", &request));
    assert_eq!((error.status, error.retryable), (400, false));
}

#[test]
fn embeddings_response_openai() {
    let parsed = ok(embeddings(
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]},{"object":"embedding","index":1,"embedding":[1,-2.5e-3]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
    ));
    assert_eq!(
        parsed,
        EmbeddingsResponse {
            model: "text-embedding-3-small".into(),
            embeddings: vec![vec![0.0023064255, -0.009327292], vec![1.0, -0.0025]],
            usage: Some(Usage { prompt_tokens: 8, completion_tokens: 0, total_tokens: 8, ..Default::default() }),
        }
    );
}

#[test]
fn embeddings_out_of_order_are_sorted_by_index() {
    let parsed = ok(embeddings(
        r#"{"data":[{"index":2,"embedding":[2.0]},{"index":0,"embedding":[0.0]},{"index":1,"embedding":[1.0]}],"model":"m"}"#,
    ));
    assert_eq!(parsed.embeddings, [vec![0.0], vec![1.0], vec![2.0]]);
    assert_eq!(parsed.usage, None);
    // No `index` at all: the list order is the order.
    let parsed = ok(embeddings(r#"{"data":[{"embedding":[5.0]},{"embedding":[6.0]}]}"#));
    assert_eq!((parsed.embeddings, parsed.model.as_str()), (vec![vec![5.0], vec![6.0]], ""));
}

#[test]
fn embeddings_bad_indices_are_rejected() {
    let cases = [
        (r#"{"data":[{"index":0,"embedding":[0.0]},{"index":2,"embedding":[2.0]}]}"#, "index 1 is missing"),
        (r#"{"data":[{"index":1,"embedding":[1.0]},{"index":1,"embedding":[1.0]}]}"#, "index 1 appears twice"),
        (
            r#"{"data":[{"index":0,"embedding":[0.0]},{"embedding":[1.0]},{"index":1,"embedding":[1.0]}]}"#,
            "index 1 appears twice",
        ),
        (r#"{"data":[{"index":-1,"embedding":[0.0]}]}"#, "not a non-negative integer"),
        (r#"{"data":[{"index":"0","embedding":[0.0]}]}"#, "not a non-negative integer"),
    ];
    for (body, says) in cases {
        let error = err(embeddings(body));
        assert_eq!(
            (error.status, error.error_type.as_str(), error.retryable),
            (502, "invalid_response", false),
            "{body}"
        );
        assert!(error.message.contains(says), "{body}: {}", error.message);
    }
    let error = err(embeddings(r#"{"data":[{"index":0,"embedding":[0.0]},{"index":2,"embedding":[2.0]}]}"#));
    assert_eq!(
        error.message,
        "the provider's 2 embeddings are not numbered 0 to 1: index 1 is missing and data[1] has index 2"
    );
}

#[test]
fn embeddings_usage_fills_a_missing_count() {
    let usage = |usage: &str| ok(embeddings(&format!(r#"{{"data":[{{"embedding":[1.0]}}],"usage":{usage}}}"#))).usage;
    let counts = |u: Option<Usage>| u.map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens));
    assert_eq!(counts(usage(r#"{"prompt_tokens":5}"#)), Some((5, 0, 5)));
    assert_eq!(counts(usage(r#"{"total_tokens":6}"#)), Some((6, 0, 6)));
    assert_eq!(counts(usage(r#"{"prompt_tokens":5,"total_tokens":7,"completion_tokens":3}"#)), Some((5, 0, 7)));
    assert_eq!(counts(usage("null")), None);
}

#[test]
fn embeddings_provider_errors_follow_the_chat_rules() {
    let parse = |status: u16, body: &str| err(Dialect::OPENAI.parse_embeddings_response(&response(status, body)));
    let key = parse(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-abc.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    );
    assert_eq!(
        (key.status, key.error_type.as_str(), key.code.as_deref(), key.retryable),
        (401, "invalid_request_error", Some("invalid_api_key"), false)
    );
    assert_eq!(key.message, "Incorrect API key provided: sk-abc.");
    let throttled = parse(
        429,
        r#"{"error":{"message":"Rate limit reached for text-embedding-3-small.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
    );
    assert_eq!((throttled.status, throttled.retryable), (429, true));
    let quota = parse(
        429,
        r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
    );
    assert_eq!((quota.status, quota.retryable), (429, false));
    // Per dialect, like chat: DashScope-like rules make the same 429 retryable.
    let throttle_quota = err(THROTTLE_QUOTA.parse_embeddings_response(&response(
        429,
        r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","code":"insufficient_quota"}}"#,
    )));
    assert!(throttle_quota.retryable);
    let html = parse(503, "<html><body>503 Service Unavailable</body></html>");
    assert_eq!((html.status, html.error_type.as_str(), html.retryable), (503, "server_error", true));
    assert!(html.message.contains("503 Service Unavailable"));
    // An error object in a 2xx body, as some proxies send.
    let proxied =
        err(embeddings(r#"{"error":{"message":"upstream overloaded","type":"server_error","code":"server_error"}}"#));
    assert_eq!((proxied.code.as_deref(), proxied.retryable), (Some("server_error"), true));
}

#[test]
fn embeddings_garbage_is_a_clear_error() {
    let cases = [
        ("<html>502 Bad Gateway</html>", "not JSON"),
        ("", "not JSON"),
        ("[1,2]", "no `data` list"),
        (r#"{"object":"list","data":{}}"#, "no `data` list"),
        (r#"{"object":"list","data":[]}"#, "holds no embeddings"),
        (r#"{"data":[{"index":0,"embedding":"AACAPwAAAEA="}]}"#, "embedding 0 is not a list of numbers"),
        (r#"{"data":[{"index":0}]}"#, "embedding 0 is not a list of numbers"),
        (r#"{"data":[{"index":0,"embedding":[1.0,"x"]}]}"#, r#"holds "x" at 1"#),
        (r#"{"data":[{"index":0,"embedding":[1e39]}]}"#, "not a float32 number"),
        (r#"{"data":[{"index":0,"embedding":[1.0,2.0]},{"index":1,"embedding":[1.0]}]}"#, "differ in length"),
    ];
    for (body, says) in cases {
        let error = err(embeddings(body));
        assert_eq!(
            (error.status, error.error_type.as_str(), error.retryable),
            (502, "invalid_response", false),
            "{body}"
        );
        assert!(error.message.contains(says), "{body}: {}", error.message);
    }
}
