#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aigate_plugin_sdk::serde_json::{Value, json};
use aigate_plugin_sdk::types::{
    ChatRequest, FinishReason, FunctionTool, HttpResponse, Message, Role, SseEvent, ToolCall,
};
use aigate_plugin_sdk::{ChunkDecoder, Provider};

use super::{DEFAULT_BASE_URL, Gemini};

fn body_of(request: ChatRequest) -> (String, Value) {
    let http = Gemini::build_request(DEFAULT_BASE_URL, request).unwrap_or_else(|e| panic!("{e:?}"));
    (http.url, aigate_plugin_sdk::serde_json::from_slice(&http.body).unwrap_or_default())
}

fn ok(status: u16, body: Value) -> HttpResponse {
    HttpResponse { status, headers: Vec::new(), body: body.to_string().into_bytes() }
}

#[test]
fn a_tool_round_trip_names_the_function_and_merges_results() {
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.content = None;
    assistant.tool_calls = vec![
        ToolCall { id: "call_r1_0".into(), name: "weather".into(), arguments: r#"{"city":"Paris"}"#.into() },
        ToolCall { id: "call_r1_1".into(), name: "time".into(), arguments: "{}".into() },
    ];
    let result = |id: &str, text: &str| Message { tool_call_id: Some(id.into()), ..Message::text(Role::Tool, text) };
    let mut request = ChatRequest::new(
        "gemini-2.5-flash",
        vec![
            Message::text(Role::System, "Be brief."),
            Message::text(Role::User, "Weather and time in Paris?"),
            assistant,
            result("call_r1_0", r#"{"temp": 21}"#),
            result("call_r1_1", "noon"),
        ],
    );
    request.tools = vec![FunctionTool {
        name: "weather".into(),
        description: None,
        parameters: Some(r#"{"type":"object","additionalProperties":false}"#.into()),
        strict: None,
    }];
    request.stream = true;
    let (url, body) = body_of(request);
    assert!(url.ends_with("/models/gemini-2.5-flash:streamGenerateContent?alt=sse"), "{url}");
    assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    assert_eq!(body["contents"].as_array().map(Vec::len), Some(3), "{body}");
    assert_eq!(body["contents"][1]["parts"][0]["functionCall"], json!({"name": "weather", "args": {"city": "Paris"}}));
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "weather", "response": {"output": {"temp": 21}}}},
            {"functionResponse": {"name": "time", "response": {"output": "noon"}}},
        ]})
    );
    assert_eq!(
        body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["additionalProperties"],
        json!(false)
    );
}

#[test]
fn an_unknown_tool_call_id_and_a_bad_model_are_the_clients_errors() {
    let orphan = Message { tool_call_id: Some("nope".into()), ..Message::text(Role::Tool, "x") };
    let error = Gemini::build_request(DEFAULT_BASE_URL, ChatRequest::new("gemini-2.5-flash", vec![orphan])).err();
    assert!(error.is_some_and(|e| e.status == 400 && e.message.contains("nope")));
    let error = Gemini::build_request(DEFAULT_BASE_URL, ChatRequest::new("../x?y", vec![])).err();
    assert!(error.is_some_and(|e| e.status == 400));
}

#[test]
fn thoughts_are_reasoning_and_counted_in_completion_tokens() {
    let response = Gemini::parse_response(ok(200, json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Think.", "thought": true},
            {"text": "Answer."},
            {"functionCall": {"name": "f", "args": {"a": 1}}},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "cachedContentTokenCount": 4, "totalTokenCount": 22},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc",
    })))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let choice = &response.choices[0];
    assert_eq!(choice.message.reasoning_content.as_deref(), Some("Think."));
    assert_eq!(choice.message.content.as_deref(), Some("Answer."));
    assert_eq!(choice.message.tool_calls[0].id, "call_abc_0");
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    let usage = response.usage.unwrap_or_default();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (10, 12, 22));
    assert_eq!((usage.cached_tokens, usage.reasoning_tokens), (Some(4), Some(7)));
}

#[test]
fn a_bad_key_is_a_401_and_an_overload_is_retryable() {
    let bad_key = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
    let error = Gemini::parse_response(ok(400, bad_key)).err().unwrap_or_else(|| panic!("an error"));
    assert_eq!((error.status, error.code.as_deref(), error.retryable), (401, Some("API_KEY_INVALID"), false));
    let overloaded = json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}});
    let error = Gemini::parse_response(ok(503, overloaded)).err().unwrap_or_else(|| panic!("an error"));
    assert_eq!((error.status, error.code.as_deref(), error.retryable), (503, Some("UNAVAILABLE"), true));
}

#[test]
fn stream_usage_is_the_last_chunk() {
    let mut decoder = Gemini::stream_decoder("gemini-2.5-flash".into());
    let event = |data: Value| SseEvent { event: None, data: data.to_string() };
    let first = decoder.push(event(json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}],
        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}, "responseId": "r"})));
    assert!(matches!(first, Ok(ref c) if c.len() == 1 && c[0].usage.is_none()), "{first:?}");
    let last = decoder.push(event(json!({"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}, "responseId": "r"})));
    assert!(matches!(last, Ok(ref c) if c[0].choices[0].finish_reason == Some(FinishReason::Length)), "{last:?}");
    let end = decoder.finish().unwrap_or_default();
    assert_eq!(end.len(), 1);
    assert!(end[0].choices.is_empty());
    assert_eq!(end[0].usage.as_ref().map(|u| u.total_tokens), Some(5));
}
