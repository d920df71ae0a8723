//! Canonical chat request → `POST {base}/messages`.

use aigate_plugin_sdk::join_url;
use aigate_plugin_sdk::json::{ReasoningEffort, extra_object, finite_number, parse_json_text, take_reasoning_effort};
use aigate_plugin_sdk::media::parse_data_url;
use aigate_plugin_sdk::types::{
    ChatRequest, ContentPart, FunctionTool, HttpRequest, Message, MessageContent, ProviderError, ResponseFormat, Role,
    ToolChoice,
};
use serde_json::{Map, Value, json};

use crate::ANTHROPIC_VERSION;

/// `max_tokens` when the request has none: the Messages API requires it, and
/// 4096 is the lowest output limit among current Claude models, so it is
/// valid for all of them.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Keys `extra` may not set even when the translation left them out: the
/// request's identity and framing.
const RESERVED_KEYS: &[&str] = &["model", "messages", "stream"];

/// The smallest `thinking.budget_tokens` the API accepts.
const MIN_THINKING_BUDGET: u32 = 1024;

pub(crate) fn build(base_url: &str, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    let body = body(request)?;
    let body = serde_json::to_vec(&body)
        .map_err(|e| ProviderError::invalid_request(format!("cannot encode the request: {e}")))?;
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("anthropic-version".to_string(), ANTHROPIC_VERSION.to_string()),
    ];
    if request.stream {
        headers.push(("accept".to_string(), "text/event-stream".to_string()));
    }
    Ok(HttpRequest { method: "POST".to_string(), url: join_url(base_url, "messages"), headers, body })
}

/// The JSON body of the Messages request.
pub(crate) fn body(request: &ChatRequest) -> Result<Value, ProviderError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(ProviderError::invalid_request(
            "anthropic returns one choice per request: `n` must be 1 or absent",
        ));
    }
    if let Some(format @ (ResponseFormat::JsonObject | ResponseFormat::JsonSchema(_))) = &request.response_format {
        let name = if matches!(format, ResponseFormat::JsonObject) { "json_object" } else { "json_schema" };
        return Err(ProviderError::invalid_request(format!(
            "anthropic's Messages API has no `response_format` {name}; describe the JSON in the prompt or use a tool"
        )));
    }
    let mut extra = extra_object(&request.extra)?;
    map_reasoning_effort(request, &mut extra)?;

    let mut body = Map::new();
    body.insert("model".into(), request.model.clone().into());
    body.insert("max_tokens".into(), max_tokens(request, &extra).into());
    if let Some(system) = system_text(&request.messages) {
        body.insert("system".into(), system.into());
    }
    body.insert("messages".into(), Value::Array(messages(&request.messages)?));

    if !request.tools.is_empty() {
        let tools = request.tools.iter().enumerate().map(|(i, t)| tool(i, t)).collect::<Result<Vec<_>, _>>()?;
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = tool_choice(request.tool_choice.as_ref(), request.parallel_tool_calls) {
            body.insert("tool_choice".into(), choice);
        }
    }
    if let Some(temperature) = request.temperature {
        if !(0.0..=1.0).contains(&temperature) {
            return Err(ProviderError::invalid_request(format!(
                "temperature {temperature} is out of range for anthropic: its range is 0 to 1 (OpenAI's is 0 to 2)"
            )));
        }
        body.insert("temperature".into(), finite_number(temperature, "temperature")?);
    }
    if let Some(top_p) = request.top_p {
        body.insert("top_p".into(), finite_number(top_p, "top_p")?);
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    if let Some(user) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    body.insert("stream".into(), Value::Bool(request.stream));
    for (key, value) in extra {
        if !RESERVED_KEYS.contains(&key.as_str()) && !body.contains_key(&key) {
            body.insert(key, value);
        }
    }
    Ok(Value::Object(body))
}

/// Turns OpenAI's `reasoning_effort` in `extra` into an extended-thinking
/// budget there, and removes it: the API refuses unknown keys.
///
/// `minimal` is no thinking; `low`, `medium` and `high` are budgets of 1024
/// (the API's minimum), 4096 and 16384 tokens, which [`max_tokens`] then
/// makes room for. A `thinking` the client put in `extra` itself wins. An
/// explicit `max_tokens` is the client's limit on thinking and answer
/// together: the budget takes at most half of it, so the answer keeps room,
/// and no thinking fits under 2048. The effort is a hint, so it adds no
/// thinking where the API would refuse the request for it (see
/// [`refuses_thinking`]). An effort that is not one of OpenAI's values is a
/// 400.
fn map_reasoning_effort(request: &ChatRequest, extra: &mut Map<String, Value>) -> Result<(), ProviderError> {
    let budget = match take_reasoning_effort(extra)? {
        None | Some(ReasoningEffort::Minimal) => return Ok(()),
        Some(ReasoningEffort::Low) => MIN_THINKING_BUDGET,
        Some(ReasoningEffort::Medium) => 4096,
        Some(ReasoningEffort::High) => 16_384,
    };
    if extra.contains_key("thinking") || refuses_thinking(request, extra) {
        return Ok(());
    }
    let budget = request.max_tokens.map_or(budget, |max_tokens| budget.min(max_tokens / 2));
    if budget >= MIN_THINKING_BUDGET {
        extra.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
    }
    Ok(())
}

/// Whether the API refuses extended thinking together with the rest of the
/// request: with a forced tool choice; with `temperature` other than 1,
/// `top_p` below 0.95 or any `top_k`; and in a tool-use loop, whose assistant
/// turn must start with the thinking block the API issued, signature and all,
/// which canonical messages cannot carry (only their last assistant message
/// counts: an earlier turn's thinking need not be sent back).
fn refuses_thinking(request: &ChatRequest, extra: &Map<String, Value>) -> bool {
    let forced_tool = !request.tools.is_empty()
        && matches!(request.tool_choice, Some(ToolChoice::Required | ToolChoice::Function(_)));
    let sampling = request.temperature.is_some_and(|t| t != 1.0)
        || request.top_p.is_some_and(|p| p < 0.95)
        || extra.contains_key("top_k");
    let tool_loop = request
        .messages
        .iter()
        .rev()
        .find(|m| matches!(m.role, Role::Assistant))
        .is_some_and(|m| !m.tool_calls.is_empty());
    forced_tool || sampling || tool_loop
}

/// The request's `max_tokens`, else [`DEFAULT_MAX_TOKENS`], raised when an
/// extended-thinking budget in `extra` (the client's, or the one
/// [`map_reasoning_effort`] put there) would not fit under it (the API wants
/// `budget_tokens < max_tokens`).
fn max_tokens(request: &ChatRequest, extra: &Map<String, Value>) -> u32 {
    if let Some(max_tokens) = request.max_tokens {
        return max_tokens;
    }
    let budget = extra
        .get("thinking")
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .map(|b| u32::try_from(b).unwrap_or(u32::MAX));
    match budget {
        Some(budget) if budget >= DEFAULT_MAX_TOKENS => budget.saturating_add(DEFAULT_MAX_TOKENS),
        _ => DEFAULT_MAX_TOKENS,
    }
}

/// Every `system` and `developer` message, wherever it stands, joined by a
/// blank line: the Messages API has one top-level system prompt.
fn system_text(messages: &[Message]) -> Option<String> {
    let texts: Vec<String> = messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer))
        .filter_map(|m| m.content.as_ref().map(MessageContent::text_only))
        .filter(|t| !t.is_empty())
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n\n"))
}

/// The conversation as alternating turns: tool messages become `tool_result`
/// blocks of a user turn, and adjacent messages of one role share a turn
/// (several tool results, or a tool result followed by the user's text).
fn messages(messages: &[Message]) -> Result<Vec<Value>, ProviderError> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let (role, blocks) = match message.role {
            Role::System | Role::Developer => continue,
            Role::User => ("user", content_blocks(message.content.as_ref())),
            Role::Assistant => ("assistant", assistant_blocks(i, message)?),
            Role::Tool => ("user", vec![tool_result(message)]),
        };
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns.into_iter().map(|(role, blocks)| json!({"role": role, "content": turn_content(blocks)})).collect())
}

/// A turn that is one text block goes out as a plain string, the common form;
/// anything else as its block list.
fn turn_content(blocks: Vec<Value>) -> Value {
    match blocks.as_slice() {
        [] => Value::String(String::new()),
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => {
            only.get("text").cloned().unwrap_or_default()
        }
        _ => Value::Array(blocks),
    }
}

/// Text and image blocks. Empty text is left out: the API refuses empty text
/// blocks.
fn content_blocks(content: Option<&MessageContent>) -> Vec<Value> {
    match content {
        None => Vec::new(),
        Some(MessageContent::Text(text)) => text_block(text).into_iter().collect(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text(text) => text_block(text),
                ContentPart::Image(image) => Some(image_block(&image.url)),
            })
            .collect(),
    }
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// A `data:` URL becomes a `base64` source, anything else a `url` source
/// (the API fetches it). OpenAI's `detail` has no equivalent and is dropped.
fn image_block(url: &str) -> Value {
    match parse_data_url(url) {
        Some(data) if data.base64 => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": data.media_type, "data": data.data},
        }),
        _ => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

/// The assistant's text, then its tool calls as `tool_use` blocks. Reasoning
/// text is not sent back: the API accepts earlier thinking only with the
/// signature it issued, which the canonical format does not carry.
fn assistant_blocks(position: usize, message: &Message) -> Result<Vec<Value>, ProviderError> {
    let mut blocks = content_blocks(message.content.as_ref());
    for (i, call) in message.tool_calls.iter().enumerate() {
        let input = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            parse_json_text(&call.arguments, &format!("messages[{position}].tool_calls[{i}].function.arguments"))?
        };
        if !input.is_object() {
            return Err(ProviderError::invalid_request(format!(
                "messages[{position}].tool_calls[{i}].function.arguments must be a JSON object for anthropic"
            )));
        }
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Ok(blocks)
}

/// A tool message's answer: its text as the result content (images as image
/// blocks when it has any).
fn tool_result(message: &Message) -> Value {
    let content = match &message.content {
        Some(MessageContent::Parts(parts)) if parts.iter().any(|p| matches!(p, ContentPart::Image(_))) => {
            Value::Array(content_blocks(message.content.as_ref()))
        }
        Some(content) => Value::String(content.text_only()),
        None => Value::String(String::new()),
    };
    json!({
        "type": "tool_result",
        "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
        "content": content,
    })
}

/// `{name, description, input_schema}`; a tool without parameters gets the
/// empty object schema, since `input_schema` is required.
fn tool(index: usize, tool: &FunctionTool) -> Result<Value, ProviderError> {
    let mut out = Map::new();
    out.insert("name".into(), tool.name.clone().into());
    if let Some(description) = &tool.description {
        out.insert("description".into(), description.clone().into());
    }
    let schema = match &tool.parameters {
        Some(parameters) => parse_json_text(parameters, &format!("tools[{index}].function.parameters"))?,
        None => json!({"type": "object", "properties": {}}),
    };
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// `auto`/`none`/`required`/a named function → `auto`/`none`/`any`/`tool`.
/// `parallel_tool_calls: false` is the API's `disable_parallel_tool_use`,
/// which lives on the tool choice (and has no meaning on `none`).
fn tool_choice(choice: Option<&ToolChoice>, parallel: Option<bool>) -> Option<Value> {
    let mut out = match choice {
        None if parallel == Some(false) => json!({"type": "auto"}),
        None => return None,
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::None) => return Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
    };
    if parallel == Some(false) {
        out["disable_parallel_tool_use"] = Value::Bool(true);
    }
    Some(out)
}
