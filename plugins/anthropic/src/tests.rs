//! The Messages API translation, on the shapes of the wire-format reference
//! (section 5).

use aigate_plugin_sdk::ChunkDecoder;
use aigate_plugin_sdk::types::*;
use serde_json::{Value, json};

use super::*;

fn ok<T>(result: Result<T, ProviderError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => unreachable!("unexpected error: {error:?}"),
    }
}

fn err<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> ProviderError {
    match result {
        Ok(value) => unreachable!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
}

fn body(request: ChatRequest) -> Value {
    let http = ok(Anthropic::build_request("https://api.anthropic.com/v1", request));
    ok(serde_json::from_slice(&http.body).map_err(|e| ProviderError::invalid_request(e.to_string())))
}

fn hello() -> ChatRequest {
    ChatRequest::new(
        "claude-sonnet-4-5",
        vec![Message::text(Role::System, "You are a helpful assistant."), Message::text(Role::User, "Who are you?")],
    )
}

fn assistant_calls(calls: &[(&str, &str, &str)]) -> Message {
    Message {
        content: None,
        tool_calls: calls
            .iter()
            .map(|(id, name, arguments)| ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments: arguments.to_string(),
            })
            .collect(),
        ..Message::text(Role::Assistant, "")
    }
}

fn tool_message(id: &str, text: &str) -> Message {
    Message { tool_call_id: Some(id.to_string()), ..Message::text(Role::Tool, text) }
}

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent { event: Some(name.to_string()), data: data.to_string() }
}

// ---- describe -------------------------------------------------------------

#[test]
fn describe() {
    let info = Anthropic::describe();
    assert_eq!(info.name, "anthropic");
    assert_eq!(info.contract_version, "0.3.0");
    assert_eq!(info.default_base_url, "https://api.anthropic.com/v1");
    assert_eq!(info.auth, AuthScheme::Header("x-api-key".to_string()));
    let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"]);
    assert!(info.models.iter().all(|m| m.context_window == Some(200_000)));
}

#[test]
fn capabilities() {
    assert_eq!(
        Anthropic::capabilities(),
        Capabilities { embeddings: false, native_apis: vec!["anthropic-messages".to_string()] }
    );
    let refused = err(Anthropic::build_embeddings_request(
        "https://api.anthropic.com/v1",
        EmbeddingsRequest::new("claude-sonnet-4-5", vec!["hi".to_string()]),
    ));
    assert_eq!((refused.status, refused.error_type.as_str(), refused.retryable), (400, "invalid_request_error", false));
    assert_eq!(refused.code.as_deref(), Some("embeddings_unsupported"));
    assert!(refused.message.contains("`anthropic` serves no embeddings"), "{}", refused.message);
    let refused = err(Anthropic::parse_embeddings_response(response(200, r#"{"data":[]}"#)));
    assert_eq!((refused.status, refused.retryable), (400, false));
}

// ---- request --------------------------------------------------------------

#[test]
fn minimal_request() {
    let http = ok(Anthropic::build_request("https://api.anthropic.com/v1/", hello()));
    assert_eq!(http.method, "POST");
    assert_eq!(http.url, "https://api.anthropic.com/v1/messages");
    let header = |name: &str| http.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert!(
        !http
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("authorization")),
        "the host adds the credential"
    );
    assert_eq!(
        body(hello()),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": "Who are you?"}],
            "stream": false,
        })
    );
}

#[test]
fn system_and_developer_messages_are_lifted_and_joined() {
    let request = ChatRequest::new(
        "claude-haiku-4-5",
        vec![
            Message::text(Role::Developer, "Be brief."),
            Message::text(Role::User, "hi"),
            Message::text(Role::System, "Answer in English."),
            Message::text(Role::User, "again"),
        ],
    );
    let body = body(request);
    assert_eq!(body["system"], "Be brief.\n\nAnswer in English.");
    // The two user messages, no longer separated, form one turn.
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}])
    );
}

#[test]
fn sampling_options_and_stream() {
    let mut request = hello();
    request.max_tokens = Some(300);
    request.temperature = Some(0.5);
    request.top_p = Some(0.9);
    request.stop = vec!["END".to_string(), "\n\nHuman:".to_string()];
    request.user = Some("user-42".to_string());
    request.seed = Some(7);
    request.presence_penalty = Some(0.5);
    request.stream = true;
    let http = ok(Anthropic::build_request("https://api.anthropic.com/v1", request.clone()));
    assert!(http.headers.iter().any(|(k, v)| k == "accept" && v == "text/event-stream"));
    let body = body(request);
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["stop_sequences"], json!(["END", "\n\nHuman:"]));
    assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
    assert_eq!(body["stream"], true);
    for dropped in ["seed", "presence_penalty", "stop", "user", "stream_options"] {
        assert!(body.get(dropped).is_none(), "{dropped} in {body}");
    }
}

#[test]
fn temperature_above_one_is_refused() {
    let mut request = hello();
    request.temperature = Some(1.5);
    let error = err(Anthropic::build_request("https://api.anthropic.com/v1", request));
    assert_eq!((error.status, error.retryable), (400, false));
    assert!(error.message.contains("0 to 1"), "{}", error.message);
    let mut request = hello();
    request.temperature = Some(1.0);
    assert_eq!(body(request)["temperature"], 1.0);
}

#[test]
fn untranslatable_options_are_refused() {
    let mut request = hello();
    request.n = Some(2);
    assert_eq!(err(Anthropic::build_request("https://x/v1", request)).status, 400);
    let mut request = hello();
    request.response_format = Some(ResponseFormat::JsonObject);
    assert!(err(Anthropic::build_request("https://x/v1", request)).message.contains("json_object"));
    let mut request = hello();
    request.n = Some(1);
    request.response_format = Some(ResponseFormat::Text);
    assert!(body(request).get("n").is_none());
}

#[test]
fn extras_pass_through_but_never_replace() {
    let mut request = hello();
    request.extra = r#"{"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 8000}, "model": "other", "system": "x", "anthropic_beta": ["b"]}"#.to_string();
    let body = body(request);
    assert_eq!(body["top_k"], 5);
    assert_eq!(body["thinking"], json!({"type": "enabled", "budget_tokens": 8000}));
    assert_eq!(body["anthropic_beta"], json!(["b"]));
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["system"], "You are a helpful assistant.");
    // The default max_tokens is raised above the thinking budget.
    assert_eq!(body["max_tokens"], 8000 + DEFAULT_MAX_TOKENS);

    let mut request = hello();
    request.extra = "[1]".to_string();
    assert_eq!(err(Anthropic::build_request("https://x/v1", request)).status, 400);
}

fn with_effort(effort: Value) -> ChatRequest {
    ChatRequest { extra: json!({"reasoning_effort": effort}).to_string(), ..hello() }
}

/// `reasoning_effort` becomes a thinking budget with room for the answer, and
/// never reaches the API (which refuses unknown keys).
#[test]
fn reasoning_effort_becomes_a_thinking_budget() {
    let minimal = body(with_effort(json!("minimal")));
    assert_eq!((minimal.get("thinking"), minimal.get("reasoning_effort")), (None, None), "{minimal}");
    assert_eq!(minimal["max_tokens"], DEFAULT_MAX_TOKENS);
    for (effort, budget, max_tokens) in [("low", 1024, 4096), ("medium", 4096, 8192), ("high", 16_384, 20_480)] {
        let body = body(with_effort(json!(effort)));
        assert_eq!(body["thinking"], json!({"type": "enabled", "budget_tokens": budget}), "{effort}");
        assert_eq!(body["max_tokens"], max_tokens, "{effort}");
        assert!(body.get("reasoning_effort").is_none(), "{effort}: {body}");
    }
    // Other extras still pass through; null is the model's default.
    let null =
        body(ChatRequest { extra: json!({"reasoning_effort": null, "anthropic_beta": ["b"]}).to_string(), ..hello() });
    assert_eq!((null.get("thinking"), null.get("reasoning_effort")), (None, None), "{null}");
    assert_eq!(null["anthropic_beta"], json!(["b"]));
}

#[test]
fn explicit_thinking_wins_over_the_effort() {
    for (effort, thinking) in [
        ("high", json!({"type": "enabled", "budget_tokens": 2000})),
        ("low", json!({"type": "disabled"})),
        ("minimal", json!({"type": "enabled", "budget_tokens": 8000})),
    ] {
        let request =
            ChatRequest { extra: json!({"reasoning_effort": effort, "thinking": thinking}).to_string(), ..hello() };
        let body = body(request);
        assert_eq!(body["thinking"], thinking, "{effort}");
        assert!(body.get("reasoning_effort").is_none(), "{effort}: {body}");
    }
}

/// An explicit `max_tokens` bounds thinking and answer together: the budget
/// takes at most half of it, and none fits under 2048.
#[test]
fn an_explicit_max_tokens_bounds_the_effort_budget() {
    let budget = |effort: &str, max_tokens: u32| {
        let body = body(ChatRequest { max_tokens: Some(max_tokens), ..with_effort(json!(effort)) });
        assert_eq!(body["max_tokens"], max_tokens, "the client's limit stands");
        assert!(body.get("reasoning_effort").is_none());
        body.get("thinking").map(|t| t["budget_tokens"].clone())
    };
    assert_eq!(budget("high", 64_000), Some(json!(16_384)));
    assert_eq!(budget("high", 10_000), Some(json!(5000)));
    assert_eq!(budget("medium", 8192), Some(json!(4096)));
    assert_eq!(budget("low", 2048), Some(json!(1024)));
    assert_eq!(budget("low", 2047), None);
    assert_eq!(budget("high", 1000), None);
}

/// Where the API refuses thinking with the rest of the request, the effort
/// adds none (and the raw key is still removed).
#[test]
fn reasoning_effort_adds_no_thinking_where_the_api_refuses_it() {
    let tool = FunctionTool { name: "get_weather".into(), description: None, parameters: None, strict: None };
    let conflicting: Vec<(&str, ChatRequest)> = vec![
        ("temperature", ChatRequest { temperature: Some(0.2), ..with_effort(json!("high")) }),
        ("top_p", ChatRequest { top_p: Some(0.9), ..with_effort(json!("high")) }),
        ("top_k", ChatRequest { extra: json!({"reasoning_effort": "high", "top_k": 5}).to_string(), ..hello() }),
        (
            "forced tool",
            ChatRequest {
                tools: vec![tool.clone()],
                tool_choice: Some(ToolChoice::Required),
                ..with_effort(json!("high"))
            },
        ),
        (
            "named tool",
            ChatRequest {
                tools: vec![tool.clone()],
                tool_choice: Some(ToolChoice::Function("get_weather".into())),
                ..with_effort(json!("high"))
            },
        ),
        (
            "tool loop",
            ChatRequest {
                messages: vec![
                    Message::text(Role::User, "Weather in Paris?"),
                    assistant_calls(&[("call_1", "get_weather", r#"{"city":"Paris"}"#)]),
                    tool_message("call_1", "sunny"),
                ],
                tools: vec![tool.clone()],
                ..with_effort(json!("high"))
            },
        ),
    ];
    for (case, request) in conflicting {
        let body = body(request);
        assert_eq!((body.get("thinking"), body.get("reasoning_effort")), (None, None), "{case}: {body}");
    }

    let compatible: Vec<(&str, ChatRequest)> = vec![
        ("temperature 1", ChatRequest { temperature: Some(1.0), top_p: Some(0.95), ..with_effort(json!("low")) }),
        (
            "auto tool choice",
            ChatRequest { tools: vec![tool.clone()], tool_choice: Some(ToolChoice::Auto), ..with_effort(json!("low")) },
        ),
        (
            "finished tool loop",
            ChatRequest {
                messages: vec![
                    Message::text(Role::User, "Weather in Paris?"),
                    assistant_calls(&[("call_1", "get_weather", r#"{"city":"Paris"}"#)]),
                    tool_message("call_1", "sunny"),
                    Message::text(Role::Assistant, "Sunny."),
                    Message::text(Role::User, "And tomorrow?"),
                ],
                tools: vec![tool],
                ..with_effort(json!("low"))
            },
        ),
    ];
    for (case, request) in compatible {
        let body = body(request);
        assert_eq!(body["thinking"], json!({"type": "enabled", "budget_tokens": 1024}), "{case}: {body}");
    }
}

#[test]
fn unknown_reasoning_effort_is_a_400() {
    for bad in [json!("max"), json!("Low"), json!(1), json!(["high"])] {
        // Refused even when an explicit `thinking` would have won.
        for extra in [
            json!({"reasoning_effort": bad}),
            json!({"reasoning_effort": bad, "thinking": {"type": "enabled", "budget_tokens": 2000}}),
        ] {
            let error =
                err(Anthropic::build_request("https://x/v1", ChatRequest { extra: extra.to_string(), ..hello() }));
            assert_eq!(
                (error.status, error.error_type.as_str(), error.retryable),
                (400, "invalid_request_error", false)
            );
            assert!(error.message.contains("reasoning_effort"), "{error:?}");
            assert!(error.message.contains("minimal, low, medium, high"), "{error:?}");
        }
    }
}

#[test]
fn images_become_base64_or_url_sources() {
    let request = ChatRequest::new(
        "claude-sonnet-4-5",
        vec![Message {
            content: Some(MessageContent::Parts(vec![
                ContentPart::Text("What is in these?".to_string()),
                ContentPart::Image(ImageUrl { url: "data:image/png;base64,iVBORw0KGgo=".to_string(), detail: None }),
                ContentPart::Image(ImageUrl {
                    url: "https://example.com/cat.jpg".to_string(),
                    detail: Some("high".to_string()),
                }),
            ])),
            ..Message::text(Role::User, "")
        }],
    );
    assert_eq!(
        body(request)["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );
}

#[test]
fn tools_and_tool_choice() {
    let weather = FunctionTool {
        name: "get_weather".to_string(),
        description: Some("Weather in a city".to_string()),
        parameters: Some(
            r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#.to_string(),
        ),
        strict: Some(true),
    };
    let clock = FunctionTool { name: "now".to_string(), description: None, parameters: None, strict: None };
    let with = |choice: Option<ToolChoice>, parallel: Option<bool>| {
        let mut request = hello();
        request.tools = vec![weather.clone(), clock.clone()];
        request.tool_choice = choice;
        request.parallel_tool_calls = parallel;
        body(request)
    };
    let plain = with(None, None);
    assert_eq!(
        plain["tools"],
        json!([
            {"name": "get_weather", "description": "Weather in a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ])
    );
    assert!(plain.get("tool_choice").is_none());
    assert_eq!(with(Some(ToolChoice::Auto), None)["tool_choice"], json!({"type": "auto"}));
    assert_eq!(with(Some(ToolChoice::None), Some(false))["tool_choice"], json!({"type": "none"}));
    assert_eq!(with(Some(ToolChoice::Required), None)["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        with(Some(ToolChoice::Function("now".to_string())), Some(false))["tool_choice"],
        json!({"type": "tool", "name": "now", "disable_parallel_tool_use": true})
    );
    assert_eq!(with(None, Some(false))["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));

    let mut request = hello();
    request.tools = vec![FunctionTool { parameters: Some("{not json".to_string()), ..clock }];
    let error = err(Anthropic::build_request("https://x/v1", request));
    assert!(error.message.contains("tools[0].function.parameters"), "{}", error.message);
}

#[test]
fn tool_round_trip_messages() {
    let request = ChatRequest::new(
        "claude-sonnet-4-5",
        vec![
            Message::text(Role::System, "Use tools."),
            Message::text(Role::User, "Weather in Paris and Rome?"),
            Message {
                content: Some(MessageContent::Text("Let me check.".to_string())),
                ..assistant_calls(&[
                    ("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
                    ("toolu_2", "get_weather", r#"{"city": "Rome"}"#),
                ])
            },
            tool_message("toolu_1", "18C"),
            tool_message("toolu_2", "24C"),
            Message::text(Role::User, "Thanks, and?"),
            assistant_calls(&[("toolu_3", "now", "")]),
            tool_message("toolu_3", "noon"),
        ],
    );
    assert_eq!(
        body(request)["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
                {"type": "text", "text": "Thanks, and?"},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "now", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3", "content": "noon"}]},
        ])
    );
}

#[test]
fn invalid_tool_arguments_are_a_400() {
    let request = ChatRequest::new(
        "claude-sonnet-4-5",
        vec![
            Message::text(Role::User, "hi"),
            assistant_calls(&[("toolu_1", "f", r#"{"city": "Par"#)]),
            tool_message("toolu_1", "x"),
        ],
    );
    let error = err(Anthropic::build_request("https://x/v1", request));
    assert_eq!((error.status, error.error_type.as_str(), error.retryable), (400, "invalid_request_error", false));
    assert!(error.message.contains("messages[1].tool_calls[0].function.arguments"), "{}", error.message);
    let request = ChatRequest::new("m", vec![assistant_calls(&[("t", "f", "[1, 2]")])]);
    assert!(err(Anthropic::build_request("https://x/v1", request)).message.contains("JSON object"));
}

// ---- response -------------------------------------------------------------

#[test]
fn reference_response() {
    let parsed = ok(Anthropic::parse_response(response(
        200,
        r#"{"id":"msg_012899dyMDyCX4FgMNNbao8k","type":"message","role":"assistant","model":"claude-3-5-sonnet-20240620",
            "content":[{"type":"text","text":"Hello! How can I assist you today?"}],
            "stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":30}}"#,
    )));
    assert_eq!(
        parsed,
        ChatResponse {
            id: "msg_012899dyMDyCX4FgMNNbao8k".to_string(),
            created: 0,
            model: "claude-3-5-sonnet-20240620".to_string(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    content: Some("Hello! How can I assist you today?".to_string()),
                    reasoning_content: None,
                    tool_calls: vec![],
                    refusal: None,
                },
                finish_reason: Some(FinishReason::Stop),
            }],
            usage: Some(Usage {
                prompt_tokens: 10,
                completion_tokens: 30,
                total_tokens: 40,
                cached_tokens: None,
                reasoning_tokens: None
            }),
            raw_cost: None,
            system_fingerprint: None,
        }
    );
}

#[test]
fn tool_use_thinking_and_cache_usage() {
    let parsed = ok(Anthropic::parse_response(response(
        200,
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":[
              {"type":"thinking","thinking":"The user wants weather.","signature":"sig"},
              {"type":"text","text":"Checking "},{"type":"text","text":"now."},
              {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Paris","days":2}},
              {"type":"tool_use","id":"toolu_01B","name":"now","input":{}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":300,"output_tokens":50}}"#,
    )));
    let choice = &parsed.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.message.content.as_deref(), Some("Checking now."));
    assert_eq!(choice.message.reasoning_content.as_deref(), Some("The user wants weather."));
    assert_eq!(
        choice.message.tool_calls,
        vec![
            ToolCall {
                id: "toolu_01A".to_string(),
                name: "get_weather".to_string(),
                arguments: r#"{"city":"Paris","days":2}"#.to_string()
            },
            ToolCall { id: "toolu_01B".to_string(), name: "now".to_string(), arguments: "{}".to_string() },
        ]
    );
    assert_eq!(
        parsed.usage,
        Some(Usage {
            prompt_tokens: 420,
            completion_tokens: 50,
            total_tokens: 470,
            cached_tokens: Some(300),
            reasoning_tokens: None
        })
    );
}

#[test]
fn stop_reasons() {
    for (reason, expected) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("tool_use", FinishReason::ToolCalls),
        ("refusal", FinishReason::ContentFilter),
        ("pause_turn", FinishReason::Other("pause_turn".to_string())),
    ] {
        let body = format!(
            r#"{{"id":"m","type":"message","role":"assistant","model":"c","content":[{{"type":"text","text":"t"}}],"stop_reason":"{reason}","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
        );
        let parsed = ok(Anthropic::parse_response(response(200, &body)));
        assert_eq!(parsed.choices[0].finish_reason, Some(expected.clone()), "{reason}");
        assert_eq!(parsed.choices[0].message.refusal.is_some(), expected == FinishReason::ContentFilter);
    }
}

// ---- errors ---------------------------------------------------------------

#[test]
fn error_table() {
    let body = |kind: &str, message: &str| {
        format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_011"}}"#)
    };
    for (status, kind, retryable) in [
        (400, "invalid_request_error", false),
        (401, "authentication_error", false),
        (403, "permission_error", false),
        (404, "not_found_error", false),
        (413, "request_too_large", false),
        (429, "rate_limit_error", true),
        (500, "api_error", true),
        (529, "overloaded_error", true),
        (402, "billing_error", false),
    ] {
        let error = err(Anthropic::parse_response(response(status, &body(kind, "Something went wrong"))));
        assert_eq!(
            (error.status, error.error_type.as_str(), error.code.as_deref(), error.retryable),
            (status, kind, None, retryable),
            "{status} {kind}"
        );
        assert_eq!(error.message, "Something went wrong");
    }
    let cloudflare =
        err(Anthropic::parse_response(response(413, "<html><body>413 Request Entity Too Large</body></html>")));
    assert_eq!((cloudflare.status, cloudflare.error_type.as_str()), (413, "invalid_request_error"));
    assert!(cloudflare.message.contains("413 Request Entity Too Large"));
    let empty = err(Anthropic::parse_response(response(502, "")));
    assert!(empty.retryable && empty.message.contains("502"));
    let garbage = err(Anthropic::parse_response(response(200, "not json")));
    assert_eq!((garbage.status, garbage.error_type.as_str()), (200, "invalid_response"));
}

// ---- stream ---------------------------------------------------------------

fn decode(events: Vec<SseEvent>) -> (Vec<StreamChunk>, Option<ProviderError>) {
    let mut decoder = Anthropic::stream_decoder("claude-sonnet-4-5".to_string());
    let mut chunks = Vec::new();
    for event in events {
        match decoder.push(event) {
            Ok(more) => chunks.extend(more),
            Err(error) => return (chunks, Some(error)),
        }
    }
    chunks.extend(ok(decoder.finish()));
    (chunks, None)
}

fn delta(chunk: &StreamChunk) -> &ChoiceDelta {
    &chunk.choices[0]
}

#[test]
fn reference_stream() {
    let (chunks, error) = decode(vec![
        event(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}}),
        ),
        event(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        event("ping", json!({"type": "ping"})),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}),
        ),
        event("content_block_stop", json!({"type":"content_block_stop","index":0})),
        event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":77}}),
        ),
        event("message_stop", json!({"type":"message_stop"})),
    ]);
    assert!(error.is_none());
    assert_eq!(chunks.len(), 5, "{chunks:#?}");
    assert!(chunks.iter().all(|c| c.id == "msg_01" && c.model == "claude-sonnet-4-5-20250929"));
    assert_eq!(delta(&chunks[0]).role, Some(Role::Assistant));
    assert_eq!(delta(&chunks[0]).content.as_deref(), Some(""));
    assert_eq!(delta(&chunks[1]).content.as_deref(), Some("Hello"));
    assert_eq!(delta(&chunks[2]).content.as_deref(), Some(" there"));
    assert_eq!(delta(&chunks[3]).finish_reason, Some(FinishReason::Stop));
    assert!(chunks[3].usage.is_none());
    assert!(chunks[4].choices.is_empty());
    assert_eq!(
        chunks[4].usage,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 77,
            total_tokens: 89,
            cached_tokens: None,
            reasoning_tokens: None
        })
    );
}

#[test]
fn tool_use_stream() {
    let (chunks, error) = decode(vec![
        event(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_02","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":50,"cache_read_input_tokens":10,"output_tokens":1}}}),
        ),
        event(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need weather."}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}),
        ),
        event("content_block_stop", json!({"type":"content_block_stop","index":0})),
        event(
            "content_block_start",
            json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking."}}),
        ),
        event("content_block_stop", json!({"type":"content_block_stop","index":1})),
        event(
            "content_block_start",
            json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_A","name":"get_weather","input":{}}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}),
        ),
        event("content_block_stop", json!({"type":"content_block_stop","index":2})),
        event(
            "content_block_start",
            json!({"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_B","name":"now","input":{}}}),
        ),
        event("content_block_stop", json!({"type":"content_block_stop","index":3})),
        event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}),
        ),
        event("message_stop", json!({"type":"message_stop"})),
    ]);
    assert!(error.is_none());
    let reasoning: String = chunks.iter().filter_map(|c| c.choices.first()?.reasoning_content.clone()).collect();
    assert_eq!(reasoning, "Need weather.");
    let content: String = chunks.iter().filter_map(|c| c.choices.first()?.content.clone()).collect();
    assert_eq!(content, "Checking.");
    let calls: Vec<&ToolCallDelta> = chunks.iter().flat_map(|c| c.choices.iter().flat_map(|d| &d.tool_calls)).collect();
    assert_eq!(
        calls,
        [
            &ToolCallDelta {
                index: 0,
                id: Some("toolu_A".to_string()),
                name: Some("get_weather".to_string()),
                arguments: Some(String::new())
            },
            &ToolCallDelta { index: 0, id: None, name: None, arguments: Some("{\"city\": ".to_string()) },
            &ToolCallDelta { index: 0, id: None, name: None, arguments: Some("\"Paris\"}".to_string()) },
            &ToolCallDelta {
                index: 1,
                id: Some("toolu_B".to_string()),
                name: Some("now".to_string()),
                arguments: Some(String::new())
            },
        ]
    );
    let finish: Vec<&FinishReason> = chunks.iter().filter_map(|c| c.choices.first()?.finish_reason.as_ref()).collect();
    assert_eq!(finish, [&FinishReason::ToolCalls]);
    let last = chunks.last().map(|c| (c.choices.len(), c.usage));
    assert_eq!(
        last,
        Some((
            0,
            Some(Usage {
                prompt_tokens: 60,
                completion_tokens: 40,
                total_tokens: 100,
                cached_tokens: Some(10),
                reasoning_tokens: None
            })
        ))
    );
}

#[test]
fn error_event_after_a_200() {
    let (chunks, error) = decode(vec![
        event(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_03","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}),
        ),
        event(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}),
        ),
        event("error", json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})),
    ]);
    assert_eq!(chunks.len(), 2);
    let error = error.unwrap_or_else(|| unreachable!("no error"));
    assert_eq!(
        (error.status, error.error_type.as_str(), error.message.as_str()),
        (200, "overloaded_error", "Overloaded")
    );
    assert!(error.retryable);

    let (_, error) =
        decode(vec![event("error", json!({"type":"error","error":{"type":"invalid_request_error","message":"bad"}}))]);
    assert!(error.is_some_and(|e| !e.retryable && e.status == 200));
    let (_, error) = decode(vec![SseEvent { event: None, data: "{oops".to_string() }]);
    assert!(error.is_some_and(|e| e.error_type == "invalid_response"));
}

#[test]
fn a_cut_stream_still_reports_usage_once() {
    let mut decoder = Anthropic::stream_decoder("claude-haiku-4-5".to_string());
    ok(decoder.push(event(
        "message_start",
        json!({"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":9,"output_tokens":1}}}),
    )));
    ok(decoder.push(event(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":4}}),
    )));
    let finished = ok(decoder.finish());
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].model, "claude-haiku-4-5", "the requested model when the stream named none");
    assert_eq!(finished[0].usage.map(|u| (u.prompt_tokens, u.completion_tokens)), Some((9, 4)));
    assert!(ok(decoder.finish()).is_empty());
}

// ---- models ---------------------------------------------------------------

#[test]
fn models_list() {
    let request = Anthropic::build_models_request("https://api.anthropic.com/v1");
    let request = request.unwrap_or_else(|| unreachable!("a models request"));
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("GET", "https://api.anthropic.com/v1/models?limit=1000")
    );
    assert!(request.headers.iter().any(|(k, v)| k == "anthropic-version" && v == "2023-06-01"));

    let models = ok(Anthropic::parse_models(response(
        200,
        r#"{"data":[
            {"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"},
            {"type":"model","id":"claude-opus-4-1","display_name":"Claude Opus 4.1","created_at":"2025-08-05T00:00:00Z"},
            {"type":"model","id":"claude-3-haiku-20240307","display_name":"Claude Haiku 3","created_at":"2024-03-07T00:00:00Z"}],
           "has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":"claude-3-haiku-20240307"}"#,
    )));
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["claude-sonnet-4-5", "claude-opus-4-1", "claude-sonnet-4-5-20250929", "claude-3-haiku-20240307"]);
    assert_eq!(models[2].context_window, Some(200_000), "a snapshot has its alias's limits");
    assert_eq!(models[3].context_window, None);

    let denied = err(Anthropic::parse_models(response(
        401,
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
    )));
    assert_eq!((denied.status, denied.retryable), (401, false));
}
