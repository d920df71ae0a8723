//! Canonical chat request → OpenAI Chat Completions request.

use serde_json::{Map, Value, json};

use super::Dialect;
use crate::join_url;
use crate::json::{finite_number, merge_extra, parse_json_text};
use crate::types::{
    ChatRequest, ContentPart, FunctionTool, HttpRequest, Message, MessageContent, ProviderError, ResponseFormat, Role,
    ToolChoice,
};

/// Keys the translation owns. `extra` may not set them, even where the
/// canonical request left them out, because they are either always the
/// translation's business (`stream_options`: the host meters every call) or
/// have a canonical field the host already validated.
const CANONICAL_KEYS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "user",
    "stream",
    "stream_options",
];

impl Dialect {
    /// The `POST {base_url}/chat/completions` request for `request`.
    ///
    /// Fails with status 400 when the request holds JSON text that is not
    /// valid JSON (tool parameters, a JSON schema, `extra`) or a non-finite
    /// number.
    pub fn build_chat_request(&self, base_url: &str, request: &ChatRequest) -> Result<HttpRequest, ProviderError> {
        let body = self.chat_body(request)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| ProviderError::invalid_request(format!("cannot encode the request: {e}")))?;
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if request.stream {
            headers.push(("accept".to_string(), "text/event-stream".to_string()));
        }
        Ok(HttpRequest { method: "POST".to_string(), url: join_url(base_url, "chat/completions"), headers, body })
    }

    /// The JSON body of the Chat Completions request for `request`.
    ///
    /// A stream request always asks for usage (`stream_options.include_usage`),
    /// since the host meters every call and strips the usage chunk itself when
    /// the client did not ask for it. `extra` keys are merged at the top level
    /// but never replace a key the translation owns.
    pub fn chat_body(&self, request: &ChatRequest) -> Result<Value, ProviderError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(request.model.clone()));
        let messages = request.messages.iter().map(|m| self.message(m)).collect::<Vec<_>>();
        body.insert("messages".into(), Value::Array(messages));

        if !request.tools.is_empty() {
            let tools = request.tools.iter().enumerate().map(|(i, t)| tool(i, t)).collect::<Result<Vec<_>, _>>()?;
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = &request.tool_choice {
            body.insert("tool_choice".into(), tool_choice(choice));
        }
        if let Some(parallel) = request.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), Value::Bool(parallel));
        }
        insert_f64(&mut body, "temperature", request.temperature)?;
        insert_f64(&mut body, "top_p", request.top_p)?;
        if let Some(max_tokens) = request.max_tokens {
            body.insert(self.max_tokens_key.into(), max_tokens.into());
        }
        if !request.stop.is_empty() {
            body.insert("stop".into(), json!(request.stop));
        }
        if let Some(seed) = request.seed {
            body.insert("seed".into(), seed.into());
        }
        if let Some(n) = request.n {
            body.insert("n".into(), n.into());
        }
        insert_f64(&mut body, "presence_penalty", request.presence_penalty)?;
        insert_f64(&mut body, "frequency_penalty", request.frequency_penalty)?;
        if let Some(format) = &request.response_format {
            body.insert("response_format".into(), response_format(format)?);
        }
        if let Some(user) = &request.user {
            body.insert("user".into(), Value::String(user.clone()));
        }
        body.insert("stream".into(), Value::Bool(request.stream));
        if request.stream {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        merge_extra(&mut body, &request.extra, CANONICAL_KEYS)?;
        Ok(Value::Object(body))
    }

    fn message(&self, message: &Message) -> Value {
        let mut out = Map::new();
        let role = match message.role {
            Role::System => "system",
            Role::Developer if self.developer_as_system => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        out.insert("role".into(), role.into());
        let content = match &message.content {
            Some(content) => message_content(content),
            None if self.missing_content_as_empty => Value::String(String::new()),
            None => Value::Null,
        };
        out.insert("content".into(), content);
        if let Some(name) = &message.name {
            out.insert("name".into(), name.clone().into());
        }
        if !message.tool_calls.is_empty() {
            let calls = message
                .tool_calls
                .iter()
                .map(|call| {
                    json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            out.insert("tool_calls".into(), Value::Array(calls));
        }
        if let Some(id) = &message.tool_call_id {
            out.insert("tool_call_id".into(), id.clone().into());
        }
        if self.echo_reasoning_content
            && let Some(reasoning) = &message.reasoning_content
        {
            out.insert("reasoning_content".into(), reasoning.clone().into());
        }
        Value::Object(out)
    }
}

/// Text-only content goes out as a plain string, because text-only models on
/// some providers (DashScope) reject the parts array ("input content must be a
/// string"). Several text parts are concatenated, as OpenAI reads them.
fn message_content(content: &MessageContent) -> Value {
    match content {
        MessageContent::Text(text) => Value::String(text.clone()),
        MessageContent::Parts(parts) => {
            if parts.iter().all(|p| matches!(p, ContentPart::Text(_))) {
                let text: String = parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text(t) => Some(t.as_str()),
                        ContentPart::Image(_) => None,
                    })
                    .collect();
                return Value::String(text);
            }
            let parts = parts
                .iter()
                .map(|part| match part {
                    ContentPart::Text(text) => json!({"type": "text", "text": text}),
                    ContentPart::Image(image) => {
                        let mut image_url = Map::new();
                        image_url.insert("url".into(), image.url.clone().into());
                        if let Some(detail) = &image.detail {
                            image_url.insert("detail".into(), detail.clone().into());
                        }
                        json!({"type": "image_url", "image_url": image_url})
                    }
                })
                .collect();
            Value::Array(parts)
        }
    }
}

fn tool(index: usize, tool: &FunctionTool) -> Result<Value, ProviderError> {
    let mut function = Map::new();
    function.insert("name".into(), tool.name.clone().into());
    if let Some(description) = &tool.description {
        function.insert("description".into(), description.clone().into());
    }
    if let Some(parameters) = &tool.parameters {
        let parameters = parse_json_text(parameters, &format!("tools[{index}].parameters"))?;
        function.insert("parameters".into(), parameters);
    }
    if let Some(strict) = tool.strict {
        function.insert("strict".into(), strict.into());
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => "none".into(),
        ToolChoice::Auto => "auto".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

fn response_format(format: &ResponseFormat) -> Result<Value, ProviderError> {
    Ok(match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema(schema) => {
            json!({"type": "json_schema", "json_schema": parse_json_text(schema, "response_format.json_schema")?})
        }
    })
}

fn insert_f64(body: &mut Map<String, Value>, key: &str, value: Option<f64>) -> Result<(), ProviderError> {
    if let Some(value) = value {
        body.insert(key.into(), finite_number(value, key)?);
    }
    Ok(())
}
