//! Property tests of request parsing: whatever the body, [`parse_request`] and [`to_canonical`]
//! never panic and refuse with a client error in OpenAI's shape; a valid request reaches the
//! canonical form field for field.

use aigate_plugins::canonical as c;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

use super::{ClientOptions, parse_request, to_canonical};
use crate::error::{ApiError, ErrorSource};

/// Keys the parser looks at, so generated objects reach its branches.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "detail",
    "name",
    "tool_calls",
    "tool_call_id",
    "function",
    "arguments",
    "tools",
    "tool_choice",
    "stop",
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "include_usage",
    "response_format",
    "json_schema",
    "seed",
    "user",
    "parameters",
    "strict",
    "presence_penalty",
    "frequency_penalty",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => proptest::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,6}"]
}

/// Finite numbers only: JSON has no others.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3.0_f64..3.0).prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        prop_oneof![proptest::sample::select(KEYS).prop_map(str::to_owned), "\\PC{0,12}"].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A JSON value other than `null` (which the parser reads as "absent").
fn json_present() -> impl Strategy<Value = Value> {
    json_value().prop_filter("not null", |v| !v.is_null())
}

/// A valid request as the client sends it, with the canonical request and options it must
/// become (for the upstream model `upstream`).
#[derive(Debug, Clone)]
struct Valid {
    body: Value,
    expected: c::ChatRequest,
    options: ClientOptions,
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn content_part() -> impl Strategy<Value = (Value, c::ContentPart)> {
    prop_oneof![
        text().prop_map(|t| (json!({"type": "text", "text": t}), c::ContentPart::Text(t))),
        ("https://[a-z]{1,8}\\.example/[a-z]{0,8}\\.png", proptest::option::of("auto|low|high"), any::<bool>())
            .prop_map(|(url, detail, short)| {
                let wire = match (&detail, short) {
                    (None, true) => json!({"type": "image_url", "image_url": url}),
                    (None, false) => json!({"type": "image_url", "image_url": {"url": url}}),
                    (Some(d), _) => json!({"type": "image_url", "image_url": {"url": url, "detail": d}}),
                };
                (wire, c::ContentPart::Image(c::ImageUrl { url, detail }))
            }),
    ]
}

fn content() -> impl Strategy<Value = (Value, c::MessageContent)> {
    prop_oneof![
        text().prop_map(|t| (Value::from(t.clone()), c::MessageContent::Text(t))),
        proptest::collection::vec(content_part(), 0..4).prop_map(|parts| {
            let (wire, canonical): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
            (Value::Array(wire), c::MessageContent::Parts(canonical))
        }),
    ]
}

fn tool_call() -> impl Strategy<Value = (Value, c::ToolCall)> {
    (proptest::option::of("call_[a-z0-9]{1,8}"), "[a-z_]{1,10}", proptest::option::of(text())).prop_map(
        |(id, name, arguments)| {
            let mut wire = json!({"type": "function", "function": {"name": name}});
            if let Some(id) = &id {
                wire["id"] = json!(id);
            }
            if let Some(arguments) = &arguments {
                wire["function"]["arguments"] = json!(arguments);
            }
            let call = c::ToolCall { id: id.unwrap_or_default(), name, arguments: arguments.unwrap_or_default() };
            (wire, call)
        },
    )
}

fn message() -> impl Strategy<Value = (Value, c::Message)> {
    let role = proptest::sample::select(
        &[
            ("system", c::Role::System),
            ("developer", c::Role::Developer),
            ("user", c::Role::User),
            ("assistant", c::Role::Assistant),
            ("tool", c::Role::Tool),
        ][..],
    );
    (
        role,
        proptest::option::of(content()),
        proptest::option::of("[a-zA-Z0-9_]{1,8}"),
        proptest::collection::vec(tool_call(), 0..3),
        "call_[a-z0-9]{1,8}",
        proptest::option::of(text()),
    )
        .prop_map(|((role_name, role), content, name, calls, call_id, reasoning)| {
            let assistant = role == c::Role::Assistant;
            // Only an assistant message may leave out `content`.
            let content = content.or_else(|| (!assistant).then(|| (json!(""), c::MessageContent::Text(String::new()))));
            let calls = if assistant { calls } else { Vec::new() };
            let tool_call_id = (role == c::Role::Tool).then_some(call_id);
            let mut wire = json!({"role": role_name});
            if let Some((value, _)) = &content {
                wire["content"] = value.clone();
            }
            if let Some(name) = &name {
                wire["name"] = json!(name);
            }
            if !calls.is_empty() {
                wire["tool_calls"] = Value::Array(calls.iter().map(|(w, _)| w.clone()).collect());
            }
            if let Some(id) = &tool_call_id {
                wire["tool_call_id"] = json!(id);
            }
            if let Some(reasoning) = &reasoning {
                wire["reasoning_content"] = json!(reasoning);
            }
            let message = c::Message {
                role,
                content: content.map(|(_, c)| c),
                name,
                tool_calls: calls.into_iter().map(|(_, c)| c).collect(),
                tool_call_id,
                reasoning_content: reasoning,
            };
            (wire, message)
        })
}

fn tool() -> impl Strategy<Value = (Value, c::FunctionTool)> {
    (
        "[a-z_]{1,10}",
        proptest::option::of(text()),
        proptest::option::of(json_present()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(name, description, parameters, strict)| {
            let mut function = json!({"name": name});
            if let Some(d) = &description {
                function["description"] = json!(d);
            }
            if let Some(p) = &parameters {
                function["parameters"] = p.clone();
            }
            if let Some(s) = strict {
                function["strict"] = json!(s);
            }
            let tool = c::FunctionTool { name, description, parameters: parameters.map(|p| p.to_string()), strict };
            (json!({"type": "function", "function": function}), tool)
        })
}

fn tool_choice() -> impl Strategy<Value = (Value, c::ToolChoice)> {
    prop_oneof![
        Just((json!("none"), c::ToolChoice::None)),
        Just((json!("auto"), c::ToolChoice::Auto)),
        Just((json!("required"), c::ToolChoice::Required)),
        "[a-z_]{1,10}".prop_map(|n| (json!({"type": "function", "function": {"name": n}}), c::ToolChoice::Function(n))),
    ]
}

fn response_format() -> impl Strategy<Value = (Value, c::ResponseFormat)> {
    prop_oneof![
        Just((json!({"type": "text"}), c::ResponseFormat::Text)),
        Just((json!({"type": "json_object"}), c::ResponseFormat::JsonObject)),
        json_present().prop_map(|s| {
            let format = c::ResponseFormat::JsonSchema(s.to_string());
            (json!({"type": "json_schema", "json_schema": s}), format)
        }),
    ]
}

fn stop() -> impl Strategy<Value = Option<(Value, Vec<String>)>> {
    proptest::option::of(prop_oneof![
        text().prop_map(|s| (json!(s), vec![s])),
        proptest::collection::vec(text(), 0..=4).prop_map(|v| (json!(v), v)),
    ])
}

/// Sampling parameters in their documented ranges.
#[derive(Debug, Clone)]
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    n: Option<u32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    seed: Option<i64>,
}

fn sampling() -> impl Strategy<Value = Sampling> {
    use proptest::option::of;
    (
        of(0.0..=2.0_f64),
        of(0.0..=1.0_f64),
        of(-2.0..=2.0_f64),
        of(-2.0..=2.0_f64),
        of(1..=128_u32),
        of(1..=u32::MAX),
        of(1..=u32::MAX),
        of(any::<i64>()),
    )
        .prop_map(
            |(temperature, top_p, presence_penalty, frequency_penalty, n, max_tokens, max_completion_tokens, seed)| {
                Sampling {
                    temperature,
                    top_p,
                    presence_penalty,
                    frequency_penalty,
                    n,
                    max_tokens,
                    max_completion_tokens,
                    seed,
                }
            },
        )
}

fn valid_request(upstream: &'static str) -> impl Strategy<Value = Valid> {
    let tools = (
        proptest::option::of(proptest::collection::vec(tool(), 0..3)),
        proptest::option::of(tool_choice()),
        proptest::option::of(any::<bool>()),
    );
    let stream = prop_oneof![Just(None), any::<bool>().prop_map(Some)];
    (
        "[a-z]{1,8}:[a-z0-9.-]{1,12}",
        proptest::collection::vec(message(), 1..5),
        (sampling(), stop(), proptest::option::of(response_format())),
        tools,
        (stream, proptest::option::of(proptest::option::of(any::<bool>())), proptest::option::of(text())),
        proptest::collection::btree_map("x_[a-z]{1,6}", json_value(), 0..3),
    )
        .prop_map(
            move |(model, messages, (s, stop, format), (tools, choice, parallel), (stream, usage, user), extra)| {
                let mut body = json!({"model": model});
                body["messages"] = Value::Array(messages.iter().map(|(w, _)| w.clone()).collect());
                let numbers = [
                    ("temperature", s.temperature.map(Value::from)),
                    ("top_p", s.top_p.map(Value::from)),
                    ("presence_penalty", s.presence_penalty.map(Value::from)),
                    ("frequency_penalty", s.frequency_penalty.map(Value::from)),
                    ("n", s.n.map(Value::from)),
                    ("max_tokens", s.max_tokens.map(Value::from)),
                    ("max_completion_tokens", s.max_completion_tokens.map(Value::from)),
                    ("seed", s.seed.map(Value::from)),
                    ("parallel_tool_calls", parallel.map(Value::from)),
                    ("stream", stream.map(Value::from)),
                    ("user", user.clone().map(Value::from)),
                    ("stop", stop.as_ref().map(|(w, _)| w.clone())),
                    ("response_format", format.as_ref().map(|(w, _)| w.clone())),
                    ("tool_choice", choice.as_ref().map(|(w, _)| w.clone())),
                    ("tools", tools.as_ref().map(|t| Value::Array(t.iter().map(|(w, _)| w.clone()).collect()))),
                ];
                for (name, value) in numbers {
                    if let Some(value) = value {
                        body[name] = value;
                    }
                }
                // `stream_options` only with `stream: true`.
                let usage = usage.filter(|_| stream == Some(true));
                if let Some(include_usage) = usage {
                    body["stream_options"] = include_usage.map_or_else(|| json!({}), |u| json!({"include_usage": u}));
                }
                for (k, v) in &extra {
                    body[k.as_str()] = v.clone();
                }
                let expected = c::ChatRequest {
                    model: upstream.to_owned(),
                    messages: messages.into_iter().map(|(_, m)| m).collect(),
                    tools: tools.into_iter().flatten().map(|(_, t)| t).collect(),
                    tool_choice: choice.map(|(_, c)| c),
                    parallel_tool_calls: parallel,
                    temperature: s.temperature,
                    top_p: s.top_p,
                    max_tokens: s.max_completion_tokens.or(s.max_tokens),
                    stop: stop.map(|(_, v)| v).unwrap_or_default(),
                    seed: s.seed,
                    n: s.n,
                    presence_penalty: s.presence_penalty,
                    frequency_penalty: s.frequency_penalty,
                    response_format: format.map(|(_, f)| f),
                    user,
                    stream: stream.unwrap_or(false),
                    extra: if extra.is_empty() {
                        String::new()
                    } else {
                        Value::Object(extra.into_iter().collect()).to_string()
                    },
                };
                let options =
                    ClientOptions { stream: stream.unwrap_or(false), include_usage: usage.flatten().unwrap_or(false) };
                Valid { body, expected, options }
            },
        )
}

/// Replaces (or removes) the value at a random path of `body`.
fn mutate(body: &mut Value, path: &[Index], replacement: Option<Value>) {
    let mut at = body;
    for (depth, step) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let next = match at {
            Value::Object(map) if !map.is_empty() => {
                let Some(key) = map.keys().nth(step.index(map.len())).cloned() else { return };
                if last {
                    match &replacement {
                        Some(value) => map.insert(key, value.clone()),
                        None => map.remove(&key),
                    };
                    return;
                }
                map.get_mut(&key)
            }
            Value::Array(items) if !items.is_empty() => {
                let i = step.index(items.len());
                if last {
                    match &replacement {
                        Some(value) => items[i] = value.clone(),
                        None => drop(items.remove(i)),
                    }
                    return;
                }
                items.get_mut(i)
            }
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return,
        }
    }
}

/// A refusal is the client's fault, a 4xx, with an OpenAI-shaped body that says what is wrong.
fn assert_client_error(err: &ApiError) -> Result<(), TestCaseError> {
    prop_assert!(err.status.is_client_error(), "{err:?}");
    prop_assert_eq!(err.origin, ErrorSource::Client);
    prop_assert!(!err.from_provider);
    let body: Value = serde_json::from_str(&err.to_json()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let error = body.get("error").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    prop_assert_eq!(keys, ["code", "message", "param", "type"]);
    prop_assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    prop_assert_eq!(&error["type"], "invalid_request_error");
    Ok(())
}

/// Parses and converts `body`: either a canonical request or a client error.
fn check_any(body: &str) -> Result<(), TestCaseError> {
    match parse_request(body) {
        Ok(request) => match to_canonical(&request, "upstream-model") {
            Ok(_) => Ok(()),
            Err(err) => assert_client_error(&err),
        },
        Err(err) => assert_client_error(&err),
    }
}

/// The canonical form with its JSON-text fields parsed, so two spellings of one JSON value
/// compare equal (object key order is not part of the meaning).
fn comparable(request: &c::ChatRequest) -> (c::ChatRequest, Vec<Value>) {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let mut request = request.clone();
    let mut json = vec![parse(&request.extra)];
    request.extra.clear();
    for tool in &mut request.tools {
        json.push(tool.parameters.take().map_or(Value::Null, |p| parse(&p)));
    }
    if let Some(c::ResponseFormat::JsonSchema(schema)) = &mut request.response_format {
        json.push(parse(schema));
        schema.clear();
    }
    (request, json)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_refused_with_a_client_error(body in prop_oneof!["\\PC{0,64}", "[\\[\\]{}\":,0-9a-z ]{0,64}"]) {
        check_any(&body)?;
    }

    #[test]
    fn any_json_is_refused_with_a_client_error(value in json_value()) {
        check_any(&value.to_string())?;
        let mut object = Map::new();
        object.insert("model".to_owned(), json!("qwen:qwen-turbo"));
        object.insert("messages".to_owned(), value);
        check_any(&Value::Object(object).to_string())?;
    }

    /// A valid request with one value replaced or removed anywhere in it.
    #[test]
    fn damaged_requests_are_refused_with_a_client_error(
        valid in valid_request("m"),
        path in proptest::collection::vec(any::<Index>(), 1..5),
        replacement in proptest::option::of(json_value()),
    ) {
        let mut body = valid.body;
        mutate(&mut body, &path, replacement);
        check_any(&body.to_string())?;
    }

    #[test]
    fn valid_requests_reach_the_canonical_form_faithfully(valid in valid_request("upstream-model")) {
        let body = valid.body.to_string();
        let request = parse_request(&body).map_err(|e| TestCaseError::fail(format!("{e} for {body}")))?;
        let (canonical, options) =
            to_canonical(&request, "upstream-model").map_err(|e| TestCaseError::fail(format!("{e} for {body}")))?;
        prop_assert_eq!(comparable(&canonical), comparable(&valid.expected));
        prop_assert_eq!((options.stream, options.include_usage), (valid.options.stream, valid.options.include_usage));
    }
}
