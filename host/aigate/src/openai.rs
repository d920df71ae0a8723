//! The OpenAI Chat Completions wire format as clients speak it, and its
//! mapping to and from the canonical types of the plugin contract.
//!
//! Parsing is strict where a mistake would change the answer (types, ranges)
//! and lenient where OpenAI is (unknown keys are passed to the provider as
//! extras, e.g. DashScope's `enable_thinking` sent through `extra_body`).

use aigate_plugins::canonical as c;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;

/// The body of `POST /v1/chat/completions`. Fields not listed are passed to the provider
/// unchanged (e.g. DashScope's `enable_thinking` sent through the SDKs' `extra_body`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateChatCompletionRequest)]
pub struct ChatCompletionRequest {
    /// A model the key may call: `provider:model`, an alias or a route.
    #[schema(example = "qwen:qwen-plus", min_length = 1)]
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 128)]
    pub n: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    /// The gateway's own field (OpenAI SDKs send it through `extra_body`): models to try, in
    /// order, when the requested one fails with a retryable error. Never sent to a provider.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub fallbacks: Option<Vec<String>>,
    /// Everything else: passed to the provider unchanged.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    /// Text and image parts as OpenAI defines them.
    #[schema(value_type = Vec<Object>)]
    Parts(Vec<Value>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolCallIn {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: FunctionCallIn,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionCallIn {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named { r#type: String, function: NamedFunction },
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub json_schema: Option<Value>,
}

/// What the request asked of the gateway beyond the canonical request.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Parses and validates a request body. The body is already known to be UTF-8.
pub fn parse_request(body: &str) -> Result<ChatCompletionRequest, ApiError> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        ApiError::invalid_json(format!("The request body is not valid JSON ({e}). Send a JSON object."))
    })?;
    let Value::Object(map) = &value else {
        return Err(ApiError::invalid_json("The request body must be a JSON object."));
    };
    match map.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param("model", "Missing required parameter: `model`."));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(ApiError::invalid_param("model", "`model` must be a string.")),
    }
    match map.get("messages") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param("messages", "Missing required parameter: `messages`."));
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::invalid_param("messages", "`messages` must hold at least one message."));
        }
        Some(Value::Array(_)) => {}
        Some(_) => return Err(ApiError::invalid_param("messages", "`messages` must be an array of messages.")),
    }
    let request: ChatCompletionRequest =
        serde_json::from_value(value).map_err(|e| ApiError::invalid_request(format!("Invalid request: {e}.")))?;
    validate(&request)?;
    Ok(request)
}

/// Model names a request's `fallbacks` may list.
pub const MAX_FALLBACKS: usize = 8;

fn range(param: &str, value: Option<f64>, lo: f64, hi: f64) -> Result<(), ApiError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) || !v.is_finite() => {
            Err(ApiError::invalid_param(param, format!("`{param}` must be between {lo} and {hi}, got {v}.")))
        }
        _ => Ok(()),
    }
}

fn validate(r: &ChatCompletionRequest) -> Result<(), ApiError> {
    if r.model.trim().is_empty() {
        return Err(ApiError::invalid_param("model", "`model` must not be empty."));
    }
    range("temperature", r.temperature, 0.0, 2.0)?;
    range("top_p", r.top_p, 0.0, 1.0)?;
    range("presence_penalty", r.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", r.frequency_penalty, -2.0, 2.0)?;
    if let Some(n) = r.n
        && !(1..=128).contains(&n)
    {
        return Err(ApiError::invalid_param("n", format!("`n` must be between 1 and 128, got {n}.")));
    }
    for (param, v) in [("max_tokens", r.max_tokens), ("max_completion_tokens", r.max_completion_tokens)] {
        if v == Some(0) {
            return Err(ApiError::invalid_param(param, format!("`{param}` must be at least 1.")));
        }
    }
    if let Some(Stop::Many(stops)) = &r.stop
        && stops.len() > 4
    {
        return Err(ApiError::invalid_param("stop", "`stop` takes at most 4 sequences."));
    }
    if let Some(fallbacks) = &r.fallbacks {
        if fallbacks.len() > MAX_FALLBACKS {
            return Err(ApiError::invalid_param(
                "fallbacks",
                format!("`fallbacks` takes at most {MAX_FALLBACKS} model names."),
            ));
        }
        if fallbacks.iter().any(|m| m.trim().is_empty()) {
            return Err(ApiError::invalid_param("fallbacks", "`fallbacks` must hold non-empty model names."));
        }
    }
    if r.stream_options.is_some() && r.stream != Some(true) {
        return Err(ApiError::invalid_param(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true.",
        ));
    }
    for (i, m) in r.messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        match m.role.as_str() {
            "system" | "developer" | "user" | "assistant" => {}
            "tool" => {
                if m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                    return Err(ApiError::invalid_param(
                        &format!("{param}.tool_call_id"),
                        format!("`{param}` has role `tool` but no `tool_call_id`."),
                    ));
                }
            }
            other => {
                return Err(ApiError::invalid_param(
                    &format!("{param}.role"),
                    format!("`{param}.role` is `{other}`; use system, developer, user, assistant or tool."),
                ));
            }
        }
        if m.content.is_none() && m.role != "assistant" {
            return Err(ApiError::invalid_param(&format!("{param}.content"), format!("`{param}` has no `content`.")));
        }
    }
    if let Some(tools) = &r.tools {
        for (i, t) in tools.iter().enumerate() {
            if t.kind != "function" {
                return Err(ApiError::invalid_param(
                    &format!("tools[{i}].type"),
                    format!("`tools[{i}].type` is `{}`; only `function` tools are supported.", t.kind),
                ));
            }
            if t.function.name.is_empty() {
                return Err(ApiError::invalid_param(&format!("tools[{i}].function.name"), "A tool needs a name."));
            }
        }
    }
    Ok(())
}

fn role(raw: &str) -> c::Role {
    match raw {
        "system" => c::Role::System,
        "developer" => c::Role::Developer,
        "assistant" => c::Role::Assistant,
        "tool" => c::Role::Tool,
        _ => c::Role::User,
    }
}

fn content_part(param: &str, part: &Value) -> Result<c::ContentPart, ApiError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" => match part.get("text").and_then(Value::as_str) {
            Some(text) => Ok(c::ContentPart::Text(text.to_owned())),
            None => Err(ApiError::invalid_param(
                &format!("{param}.text"),
                format!("`{param}` of type text needs a `text` string."),
            )),
        },
        "image_url" => {
            let image = part.get("image_url");
            let (url, detail) = match image {
                Some(Value::String(url)) => (Some(url.clone()), None),
                Some(Value::Object(o)) => (
                    o.get("url").and_then(Value::as_str).map(str::to_owned),
                    o.get("detail").and_then(Value::as_str).map(str::to_owned),
                ),
                _ => (None, None),
            };
            match url {
                Some(url) if !url.is_empty() => Ok(c::ContentPart::Image(c::ImageUrl { url, detail })),
                _ => Err(ApiError::invalid_param(
                    &format!("{param}.image_url"),
                    format!("`{param}` of type image_url needs `image_url.url`."),
                )),
            }
        }
        other => Err(ApiError::invalid_param(
            &format!("{param}.type"),
            format!("`{param}.type` is `{other}`; supported content parts are text and image_url."),
        )),
    }
}

/// Builds the canonical request. `upstream_model` is the provider's model name.
pub fn to_canonical(
    r: &ChatCompletionRequest,
    upstream_model: &str,
) -> Result<(c::ChatRequest, ClientOptions), ApiError> {
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.iter().enumerate() {
        let content = match &m.content {
            None => None,
            Some(Content::Text(t)) => Some(c::MessageContent::Text(t.clone())),
            Some(Content::Parts(parts)) => {
                let mut out = Vec::with_capacity(parts.len());
                for (j, p) in parts.iter().enumerate() {
                    out.push(content_part(&format!("messages[{i}].content[{j}]"), p)?);
                }
                Some(c::MessageContent::Parts(out))
            }
        };
        let tool_calls = m
            .tool_calls
            .iter()
            .flatten()
            .map(|t| c::ToolCall {
                id: t.id.clone().unwrap_or_default(),
                name: t.function.name.clone(),
                arguments: t.function.arguments.clone().unwrap_or_default(),
            })
            .collect();
        messages.push(c::Message {
            role: role(&m.role),
            content,
            name: m.name.clone(),
            tool_calls,
            tool_call_id: m.tool_call_id.clone(),
            reasoning_content: m.reasoning_content.clone(),
        });
    }

    let tools = r
        .tools
        .iter()
        .flatten()
        .map(|t| c::FunctionTool {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            parameters: t.function.parameters.as_ref().map(Value::to_string),
            strict: t.function.strict,
        })
        .collect();

    let tool_choice = match &r.tool_choice {
        None => None,
        Some(ToolChoice::Mode(m)) => Some(match m.as_str() {
            "none" => c::ToolChoice::None,
            "auto" => c::ToolChoice::Auto,
            "required" => c::ToolChoice::Required,
            other => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    format!("`tool_choice` is `{other}`; use none, auto, required or a named function."),
                ));
            }
        }),
        Some(ToolChoice::Named { r#type, function }) if r#type == "function" => {
            Some(c::ToolChoice::Function(function.name.clone()))
        }
        Some(ToolChoice::Named { .. }) => {
            return Err(ApiError::invalid_param("tool_choice", "A named `tool_choice` must have type `function`."));
        }
    };

    let response_format = match &r.response_format {
        None => None,
        Some(f) => Some(match f.kind.as_str() {
            "text" => c::ResponseFormat::Text,
            "json_object" => c::ResponseFormat::JsonObject,
            "json_schema" => match &f.json_schema {
                Some(schema) => c::ResponseFormat::JsonSchema(schema.to_string()),
                None => {
                    return Err(ApiError::invalid_param(
                        "response_format.json_schema",
                        "`response_format` of type json_schema needs `json_schema`.",
                    ));
                }
            },
            other => {
                return Err(ApiError::invalid_param(
                    "response_format.type",
                    format!("`response_format.type` is `{other}`; use text, json_object or json_schema."),
                ));
            }
        }),
    };

    let stop = match &r.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    let stream = r.stream.unwrap_or(false);
    let extra = if r.extra.is_empty() { String::new() } else { Value::Object(r.extra.clone()).to_string() };

    let request = c::ChatRequest {
        model: upstream_model.to_owned(),
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
        temperature: r.temperature,
        top_p: r.top_p,
        max_tokens: r.max_completion_tokens.or(r.max_tokens),
        stop,
        seed: r.seed,
        n: r.n,
        presence_penalty: r.presence_penalty,
        frequency_penalty: r.frequency_penalty,
        response_format,
        user: r.user.clone(),
        stream,
        extra,
    };
    let include_usage = r.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
    Ok((request, ClientOptions { stream, include_usage }))
}

// ---- responses -------------------------------------------------------------

fn finish_reason(f: &c::FinishReason) -> &str {
    match f {
        c::FinishReason::Stop => "stop",
        c::FinishReason::Length => "length",
        c::FinishReason::ToolCalls => "tool_calls",
        c::FinishReason::ContentFilter => "content_filter",
        c::FinishReason::Other(o) => o.as_str(),
    }
}

fn role_name(r: &c::Role) -> &'static str {
    match r {
        c::Role::System => "system",
        c::Role::Developer => "developer",
        c::Role::User => "user",
        c::Role::Assistant => "assistant",
        c::Role::Tool => "tool",
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = CompletionUsage)]
struct UsageOut {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Serialize, ToSchema)]
struct PromptDetails {
    cached_tokens: u32,
}

#[derive(Serialize, ToSchema)]
struct CompletionDetails {
    reasoning_tokens: u32,
}

fn usage_out(u: &c::Usage) -> UsageOut {
    UsageOut {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
        prompt_tokens_details: u.cached_tokens.map(|cached_tokens| PromptDetails { cached_tokens }),
        completion_tokens_details: u.reasoning_tokens.map(|reasoning_tokens| CompletionDetails { reasoning_tokens }),
    }
}

#[derive(Serialize, ToSchema)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize, ToSchema)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize, ToSchema)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    refusal: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    #[schema(value_type = Option<Object>)]
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// The answer of `POST /v1/chat/completions` without `stream`.
#[derive(Serialize, ToSchema)]
#[schema(as = CreateChatCompletionResponse)]
pub(crate) struct ResponseOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    system_fingerprint: Option<&'a str>,
}

/// The OpenAI JSON body of a completed call. `model` is the name the client sees.
pub fn response_json(r: &c::ChatResponse, model: &str) -> Vec<u8> {
    let body = ResponseOut {
        id: &r.id,
        object: "chat.completion",
        created: r.created,
        model,
        choices: r
            .choices
            .iter()
            .map(|ch| ChoiceOut {
                index: ch.index,
                message: MessageOut {
                    role: "assistant",
                    content: ch.message.content.as_deref(),
                    reasoning_content: ch.message.reasoning_content.as_deref(),
                    tool_calls: ch
                        .message
                        .tool_calls
                        .iter()
                        .map(|t| ToolCallOut {
                            id: &t.id,
                            kind: "function",
                            function: FunctionOut { name: &t.name, arguments: &t.arguments },
                        })
                        .collect(),
                    refusal: ch.message.refusal.as_deref(),
                },
                logprobs: None,
                finish_reason: ch.finish_reason.as_ref().map(finish_reason),
            })
            .collect(),
        usage: r.usage.as_ref().map(usage_out),
        system_fingerprint: r.system_fingerprint.as_deref(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
struct FunctionDeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
}

#[derive(Serialize, ToSchema)]
struct ToolCallDeltaOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDeltaOut<'a>,
}

#[derive(Serialize, ToSchema)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    /// A piece of a refusal (contract 0.2.0); absent when the plugin has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallDeltaOut<'a>>,
}

#[derive(Serialize, ToSchema)]
struct ChunkChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    #[schema(value_type = Option<Object>)]
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// One `data:` event of a chat completion stream (the stream ends with `data: [DONE]`).
#[derive(Serialize, ToSchema)]
#[schema(as = CreateChatCompletionStreamResponse)]
pub(crate) struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoiceOut<'a>>,
    /// Present (null or the usage) only when the client asked for usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

/// One SSE `data:` line (with its blank line) for a canonical chunk.
/// Returns None for a usage-only chunk the client did not ask for.
pub fn chunk_event(ch: &c::StreamChunk, model: &str, include_usage: bool) -> Option<Vec<u8>> {
    if !include_usage && ch.choices.is_empty() {
        return None;
    }
    let body = ChunkOut {
        id: &ch.id,
        object: "chat.completion.chunk",
        created: ch.created,
        model,
        choices: ch
            .choices
            .iter()
            .map(|d| ChunkChoiceOut {
                index: d.index,
                delta: DeltaOut {
                    role: d.role.as_ref().map(role_name),
                    content: d.content.as_deref(),
                    reasoning_content: d.reasoning_content.as_deref(),
                    refusal: d.refusal.as_deref(),
                    tool_calls: d
                        .tool_calls
                        .iter()
                        .map(|t| ToolCallDeltaOut {
                            index: t.index,
                            id: t.id.as_deref(),
                            kind: t.id.as_ref().map(|_| "function"),
                            function: FunctionDeltaOut { name: t.name.as_deref(), arguments: t.arguments.as_deref() },
                        })
                        .collect(),
                },
                logprobs: None,
                finish_reason: d.finish_reason.as_ref().map(finish_reason),
            })
            .collect(),
        usage: include_usage.then(|| ch.usage.as_ref().map(usage_out)),
    };
    let mut out = b"data: ".to_vec();
    serde_json::to_writer(&mut out, &body).ok()?;
    out.extend_from_slice(b"\n\n");
    Some(out)
}

/// An error inside an SSE stream, as OpenAI sends it: the SDKs raise it.
pub fn error_event(err: &ApiError) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(err.to_json().as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bodies_are_400_with_a_param() {
        let cases = [
            ("{", None),
            ("[1]", None),
            (r#"{"messages":[{"role":"user","content":"x"}]}"#, Some("model")),
            (r#"{"model":"qwen:qwen-turbo"}"#, Some("messages")),
            (r#"{"model":"qwen:qwen-turbo","messages":[]}"#, Some("messages")),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#, Some("temperature")),
            (r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#, Some("messages[0].role")),
            (r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, Some("messages[0].tool_call_id")),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#, Some("stop")),
        ];
        for (body, param) in cases {
            let err = parse_request(body).unwrap_err();
            assert_eq!(err.status, 400, "{body}");
            assert_eq!(err.param.as_deref(), param, "{body}");
        }
    }

    #[test]
    fn extras_pass_through_and_max_completion_tokens_wins() {
        let r = parse_request(
            r#"{"model":"qwen:qwen-plus","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}],
                "enable_thinking":true,"max_tokens":5,"max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        let (req, opts) = to_canonical(&r, "qwen-plus").unwrap();
        assert_eq!(req.model, "qwen-plus");
        assert_eq!(req.max_tokens, Some(7));
        assert!(req.stream && opts.include_usage);
        let extra: Value = serde_json::from_str(&req.extra).unwrap();
        assert_eq!(extra, serde_json::json!({"enable_thinking": true}));
        assert!(matches!(&req.messages[0].content, Some(c::MessageContent::Parts(p)) if p.len() == 2));
    }

    #[test]
    fn usage_chunk_is_dropped_unless_asked() {
        let chunk = c::StreamChunk {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            choices: vec![],
            usage: Some(c::Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
                cached_tokens: None,
                reasoning_tokens: None,
            }),
            raw_cost: None,
        };
        assert!(chunk_event(&chunk, "qwen:m", false).is_none());
        let line = String::from_utf8(chunk_event(&chunk, "qwen:m", true).unwrap()).unwrap();
        assert!(line.starts_with("data: {") && line.ends_with("\n\n"));
        assert!(line.contains(r#""total_tokens":3"#));
    }

    #[test]
    fn a_streamed_refusal_reaches_the_client() {
        let chunk = c::StreamChunk {
            id: "x".into(),
            created: 1,
            model: "m".into(),
            choices: vec![c::ChoiceDelta {
                index: 0,
                role: None,
                content: None,
                reasoning_content: None,
                tool_calls: vec![],
                finish_reason: None,
                refusal: Some("I can't help with that.".into()),
            }],
            usage: None,
            raw_cost: None,
        };
        let line = String::from_utf8(chunk_event(&chunk, "openai:m", false).unwrap()).unwrap();
        assert!(line.contains(r#""delta":{"refusal":"I can't help with that."}"#), "{line}");
    }
}
