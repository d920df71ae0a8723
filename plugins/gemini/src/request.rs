//! Canonical chat request → `POST {base}/models/{model}:generateContent`
//! (or `:streamGenerateContent?alt=sse`).

use aigate_plugin_sdk::join_url;
use aigate_plugin_sdk::json::{extra_object, finite_number, parse_json_text, post_json};
use aigate_plugin_sdk::media::parse_data_url;
use aigate_plugin_sdk::serde_json::{Map, Value, json};
use aigate_plugin_sdk::types::{
    ChatRequest, ContentPart, HttpRequest, Message, MessageContent, ProviderError, ResponseFormat, Role, ToolChoice,
};

/// Top-level keys the translation owns: `extra` may not set them
/// (`generationConfig` from `extra` is merged into ours instead).
const RESERVED_KEYS: &[&str] = &["contents", "systemInstruction", "tools", "toolConfig", "generationConfig"];

pub fn build(base_url: &str, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
    let model = &request.model;
    if model.is_empty() || !model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        return Err(ProviderError::invalid_request(format!(
            "`{model}` is not a Gemini model name (letters, digits, `-`, `.` and `_`)"
        )));
    }
    let path = if request.stream {
        format!("models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("models/{model}:generateContent")
    };
    Ok(post_json(join_url(base_url, &path), Vec::new(), &body(request)?))
}

fn body(request: &ChatRequest) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert("contents".into(), contents(&request.messages)?);
    let system: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer))
        .filter_map(|m| m.content.as_ref().map(MessageContent::text_only))
        .filter(|text| !text.is_empty())
        .map(|text| json!({"text": text}))
        .collect();
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !request.tools.is_empty() {
        let mut declarations = Vec::new();
        for (i, tool) in request.tools.iter().enumerate() {
            let mut declaration = json!({"name": tool.name});
            if let Some(description) = &tool.description {
                declaration["description"] = description.clone().into();
            }
            if let Some(parameters) = &tool.parameters {
                // Full JSON Schema; `parameters` would take only Google's OpenAPI subset.
                declaration["parametersJsonSchema"] = parse_json_text(parameters, &format!("tools[{i}].parameters"))?;
            }
            declarations.push(declaration);
        }
        body.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    if let Some(choice) = &request.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }

    let mut extra = extra_object(&request.extra)?;
    let mut config = match extra.remove("generationConfig") {
        Some(Value::Object(config)) => config,
        Some(_) => return Err(ProviderError::invalid_request("extra.generationConfig must be a JSON object")),
        None => Map::new(),
    };
    if let Some(temperature) = request.temperature {
        config.insert("temperature".into(), finite_number(temperature, "temperature")?);
    }
    if let Some(top_p) = request.top_p {
        config.insert("topP".into(), finite_number(top_p, "top_p")?);
    }
    if let Some(max) = request.max_tokens {
        config.insert("maxOutputTokens".into(), max.into());
    }
    if !request.stop.is_empty() {
        config.insert("stopSequences".into(), request.stop.clone().into());
    }
    if let Some(seed) = request.seed {
        let seed = i32::try_from(seed)
            .map_err(|_| ProviderError::invalid_request(format!("seed {seed}: Gemini takes a 32-bit seed")))?;
        config.insert("seed".into(), seed.into());
    }
    if let Some(n) = request.n {
        config.insert("candidateCount".into(), n.into());
    }
    if let Some(penalty) = request.presence_penalty {
        config.insert("presencePenalty".into(), finite_number(penalty, "presence_penalty")?);
    }
    if let Some(penalty) = request.frequency_penalty {
        config.insert("frequencyPenalty".into(), finite_number(penalty, "frequency_penalty")?);
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some(ResponseFormat::JsonSchema(text)) => {
            // OpenAI's `{"name", "schema", "strict"}`: Gemini takes the schema alone.
            let format = parse_json_text(text, "response_format.json_schema")?;
            let schema = format.get("schema").cloned().unwrap_or(format);
            config.insert("responseMimeType".into(), "application/json".into());
            config.insert("responseJsonSchema".into(), schema);
        }
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    for (key, value) in extra {
        if !RESERVED_KEYS.contains(&key.as_str()) && !body.contains_key(&key) {
            body.insert(key, value);
        }
    }
    Ok(Value::Object(body))
}

/// The conversation as `contents`: `user` and `model` turns, tool results as
/// `functionResponse` parts of a `user` turn. Consecutive turns of one role are
/// merged, as Gemini wants all results of one round of calls in one turn.
fn contents(messages: &[Message]) -> Result<Value, ProviderError> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (position, message) in messages.iter().enumerate() {
        let (role, parts) = match message.role {
            Role::System | Role::Developer => continue,
            Role::User => ("user", user_parts(message, position)?),
            Role::Assistant => ("model", model_parts(message, position)?),
            Role::Tool => ("user", vec![function_response(messages, message, position)?]),
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, merged)) if *last == role => merged.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    Ok(Value::Array(turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect()))
}

fn user_parts(message: &Message, position: usize) -> Result<Vec<Value>, ProviderError> {
    match &message.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(vec![json!({"text": text})]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| match part {
                ContentPart::Text(text) => Ok(json!({"text": text})),
                ContentPart::Image(image) => match parse_data_url(&image.url) {
                    Some(data) if data.base64 => {
                        Ok(json!({"inlineData": {"mimeType": data.media_type, "data": data.data}}))
                    }
                    _ => Err(ProviderError::invalid_request(format!(
                        "messages[{position}].content[{i}]: Gemini takes images as base64 `data:` URLs"
                    ))),
                },
            })
            .collect(),
    }
}

/// An assistant turn: its text, then its tool calls as `functionCall` parts.
/// Reasoning is not sent back (Gemini's thoughts need its own signatures).
fn model_parts(message: &Message, position: usize) -> Result<Vec<Value>, ProviderError> {
    let mut parts = Vec::new();
    if let Some(content) = &message.content {
        let text = content.text_only();
        if !text.is_empty() {
            parts.push(json!({"text": text}));
        }
    }
    for (i, call) in message.tool_calls.iter().enumerate() {
        let args = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            parse_json_text(&call.arguments, &format!("messages[{position}].tool_calls[{i}].function.arguments"))?
        };
        parts.push(json!({"functionCall": {"name": call.name, "args": args}}));
    }
    Ok(parts)
}

/// A tool result: Gemini wants the function's name, found through
/// `tool_call_id` in the assistant turn that made the call, and an object:
/// `{"output": …}` holding the result (as JSON when it is JSON).
fn function_response(messages: &[Message], message: &Message, position: usize) -> Result<Value, ProviderError> {
    let id = message.tool_call_id.as_deref().unwrap_or_default();
    let name = messages[..position]
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter())
        .find(|call| call.id == id)
        .map(|call| call.name.clone())
        .ok_or_else(|| {
            ProviderError::invalid_request(format!(
                "messages[{position}]: tool_call_id `{id}` names no tool call of an earlier assistant message"
            ))
        })?;
    let text = message.content.as_ref().map(MessageContent::text_only).unwrap_or_default();
    let output = aigate_plugin_sdk::serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    Ok(json!({"functionResponse": {"name": name, "response": {"output": output}}}))
}
