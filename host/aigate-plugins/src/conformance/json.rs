//! The JSON forms of canonical values used by fixture files, and the semantic comparison of an
//! expected JSON value with an actual one.
//!
//! Field names are the WIT names with `-` turned into `_` (so they read like OpenAI's), options
//! are `null` or absent, variants are strings (`"stop"`, `"user"`) or one-key objects
//! (`{"other":"end_turn"}`, `{"function":"get_weather"}`).

use serde_json::{Map, Value, json};

use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, FinishReason, FunctionTool,
    HttpRequest, ImageUrl, Message, MessageContent, ProviderError, RawCost, ResponseFormat, Role, StreamChunk,
    ToolCall, ToolChoice, Usage,
};

// ---------------------------------------------------------------------------------------------
// JSON → canonical request

type Fields<'a> = &'a Map<String, Value>;

fn object<'a>(value: &'a Value, at: &str) -> Result<Fields<'a>, String> {
    value.as_object().ok_or_else(|| format!("{at}: expected an object"))
}

fn only_keys(fields: Fields<'_>, known: &[&str], at: &str) -> Result<(), String> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(format!("{at}: unknown key `{key}` (known: {})", known.join(", "))),
        None => Ok(()),
    }
}

fn opt_string(fields: Fields<'_>, key: &str, at: &str) -> Result<Option<String>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{at}.{key}: expected a string")),
    }
}

fn string(fields: Fields<'_>, key: &str, at: &str) -> Result<String, String> {
    opt_string(fields, key, at)?.ok_or_else(|| format!("{at}.{key}: required string"))
}

fn opt_f64(fields: Fields<'_>, key: &str, at: &str) -> Result<Option<f64>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| format!("{at}.{key}: expected a number")),
    }
}

fn opt_u32(fields: Fields<'_>, key: &str, at: &str) -> Result<Option<u32>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{at}.{key}: expected an unsigned 32-bit integer")),
    }
}

fn opt_bool(fields: Fields<'_>, key: &str, at: &str) -> Result<Option<bool>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{at}.{key}: expected a boolean")),
    }
}

fn list<'a>(fields: Fields<'a>, key: &str, at: &str) -> Result<&'a [Value], String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{at}.{key}: expected an array")),
    }
}

/// JSON text of a value that may be given either as JSON (an object) or as JSON text already.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn role(text: &str, at: &str) -> Result<Role, String> {
    Ok(match text {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => return Err(format!("{at}.role: unknown role {other:?}")),
    })
}

fn role_name(role: &Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn tool_call(value: &Value, at: &str) -> Result<ToolCall, String> {
    let fields = object(value, at)?;
    only_keys(fields, &["id", "name", "arguments"], at)?;
    Ok(ToolCall {
        id: string(fields, "id", at)?,
        name: string(fields, "name", at)?,
        arguments: fields.get("arguments").map(json_text).unwrap_or_default(),
    })
}

fn content_part(value: &Value, at: &str) -> Result<ContentPart, String> {
    let fields = object(value, at)?;
    match fields.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ContentPart::Text(string(fields, "text", at)?)),
        Some("image_url") => {
            let image = object(fields.get("image_url").unwrap_or(&Value::Null), at)?;
            Ok(ContentPart::Image(ImageUrl {
                url: string(image, "url", at)?,
                detail: opt_string(image, "detail", at)?,
            }))
        }
        _ => Err(format!(
            "{at}: a content part is {{\"type\":\"text\",\"text\":…}} or {{\"type\":\"image_url\",\"image_url\":{{\"url\":…}}}}"
        )),
    }
}

fn message(value: &Value, at: &str) -> Result<Message, String> {
    let fields = object(value, at)?;
    only_keys(fields, &["role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"], at)?;
    let content = match fields.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(MessageContent::Text(s.clone())),
        Some(Value::Array(parts)) => Some(MessageContent::Parts(
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| content_part(p, &format!("{at}.content[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        Some(_) => return Err(format!("{at}.content: a string or an array of parts")),
    };
    Ok(Message {
        role: role(&string(fields, "role", at)?, at)?,
        content,
        name: opt_string(fields, "name", at)?,
        tool_calls: list(fields, "tool_calls", at)?
            .iter()
            .enumerate()
            .map(|(i, c)| tool_call(c, &format!("{at}.tool_calls[{i}]")))
            .collect::<Result<_, _>>()?,
        tool_call_id: opt_string(fields, "tool_call_id", at)?,
        reasoning_content: opt_string(fields, "reasoning_content", at)?,
    })
}

fn function_tool(value: &Value, at: &str) -> Result<FunctionTool, String> {
    let fields = object(value, at)?;
    only_keys(fields, &["name", "description", "parameters", "strict"], at)?;
    Ok(FunctionTool {
        name: string(fields, "name", at)?,
        description: opt_string(fields, "description", at)?,
        parameters: fields.get("parameters").filter(|v| !v.is_null()).map(json_text),
        strict: opt_bool(fields, "strict", at)?,
    })
}

fn tool_choice(value: &Value, at: &str) -> Result<Option<ToolChoice>, String> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::String(s) if s == "none" => ToolChoice::None,
        Value::String(s) if s == "auto" => ToolChoice::Auto,
        Value::String(s) if s == "required" => ToolChoice::Required,
        Value::Object(o) if o.len() == 1 && o.get("function").is_some_and(Value::is_string) => {
            ToolChoice::Function(string(o, "function", at)?)
        }
        _ => {
            return Err(format!("{at}.tool_choice: \"none\", \"auto\", \"required\" or {{\"function\":\"name\"}}"));
        }
    }))
}

fn response_format(value: &Value, at: &str) -> Result<Option<ResponseFormat>, String> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::String(s) if s == "text" => ResponseFormat::Text,
        Value::String(s) if s == "json_object" => ResponseFormat::JsonObject,
        Value::Object(o) if o.len() == 1 && o.contains_key("json_schema") => {
            ResponseFormat::JsonSchema(o.get("json_schema").map(json_text).unwrap_or_default())
        }
        _ => {
            return Err(format!("{at}.response_format: \"text\", \"json_object\" or {{\"json_schema\":{{…}}}}"));
        }
    }))
}

/// Parse the JSON form of a canonical [`ChatRequest`] (a fixture's `request.json`).
/// An embeddings request from its JSON form: `{"model", "input": [texts], "dimensions"?, "user"?}`.
pub fn embeddings_request(value: &Value) -> Result<EmbeddingsRequest, String> {
    let at = "embeddings_request.json";
    let fields = object(value, at)?;
    only_keys(fields, &["model", "input", "dimensions", "user"], at)?;
    let input = list(fields, "input", at)?
        .iter()
        .enumerate()
        .map(|(i, text)| text.as_str().map(str::to_owned).ok_or_else(|| format!("{at}: input[{i}] must be a string")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmbeddingsRequest {
        model: string(fields, "model", at)?,
        input,
        dimensions: opt_u32(fields, "dimensions", at)?,
        user: opt_string(fields, "user", at)?,
    })
}

/// The JSON form of an embeddings response: `{"model", "embeddings": [[…]], "usage"}`. Each
/// number is written as the shortest decimal that reads back as the same `f32` (`0.1`, not
/// `0.10000000149011612`), so fixtures hold the provider's own numbers.
pub fn embeddings_response(response: &EmbeddingsResponse) -> Value {
    let number = |x: &f32| {
        x.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
    };
    let embeddings: Vec<Vec<Value>> = response.embeddings.iter().map(|v| v.iter().map(number).collect()).collect();
    json!({ "model": response.model, "embeddings": embeddings, "usage": usage(&response.usage) })
}

pub fn chat_request(value: &Value) -> Result<ChatRequest, String> {
    let at = "request";
    let fields = object(value, at)?;
    only_keys(
        fields,
        &[
            "model",
            "messages",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "seed",
            "n",
            "presence_penalty",
            "frequency_penalty",
            "response_format",
            "user",
            "stream",
            "extra",
        ],
        at,
    )?;
    let stop = match fields.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        _ => list(fields, "stop", at)?
            .iter()
            .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| format!("{at}.stop: strings only")))
            .collect::<Result<_, _>>()?,
    };
    let extra = match fields.get("extra") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(o)) if o.is_empty() => String::new(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => return Err(format!("{at}.extra: expected an object")),
    };
    Ok(ChatRequest {
        model: string(fields, "model", at)?,
        messages: list(fields, "messages", at)?
            .iter()
            .enumerate()
            .map(|(i, m)| message(m, &format!("{at}.messages[{i}]")))
            .collect::<Result<_, _>>()?,
        tools: list(fields, "tools", at)?
            .iter()
            .enumerate()
            .map(|(i, t)| function_tool(t, &format!("{at}.tools[{i}]")))
            .collect::<Result<_, _>>()?,
        tool_choice: tool_choice(fields.get("tool_choice").unwrap_or(&Value::Null), at)?,
        parallel_tool_calls: opt_bool(fields, "parallel_tool_calls", at)?,
        temperature: opt_f64(fields, "temperature", at)?,
        top_p: opt_f64(fields, "top_p", at)?,
        max_tokens: opt_u32(fields, "max_tokens", at)?,
        stop,
        seed: match fields.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| format!("{at}.seed: expected an integer"))?),
        },
        n: opt_u32(fields, "n", at)?,
        presence_penalty: opt_f64(fields, "presence_penalty", at)?,
        frequency_penalty: opt_f64(fields, "frequency_penalty", at)?,
        response_format: response_format(fields.get("response_format").unwrap_or(&Value::Null), at)?,
        user: opt_string(fields, "user", at)?,
        stream: opt_bool(fields, "stream", at)?.unwrap_or(false),
        extra,
    })
}

// ---------------------------------------------------------------------------------------------
// canonical → JSON

fn finish_reason(reason: &Option<FinishReason>) -> Value {
    match reason {
        None => Value::Null,
        Some(FinishReason::Stop) => json!("stop"),
        Some(FinishReason::Length) => json!("length"),
        Some(FinishReason::ToolCalls) => json!("tool_calls"),
        Some(FinishReason::ContentFilter) => json!("content_filter"),
        Some(FinishReason::Other(other)) => json!({ "other": other }),
    }
}

fn usage(usage: &Option<Usage>) -> Value {
    usage.as_ref().map_or(Value::Null, |u| {
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "cached_tokens": u.cached_tokens,
            "reasoning_tokens": u.reasoning_tokens,
        })
    })
}

fn raw_cost(cost: &Option<RawCost>) -> Value {
    cost.as_ref().map_or(Value::Null, |c| json!({ "currency": c.currency, "amount": c.amount }))
}

/// The JSON form of a [`ChatResponse`] (a fixture's `expected.json` for `response.json`).
pub fn chat_response(response: &ChatResponse) -> Value {
    json!({
        "id": response.id,
        "created": response.created,
        "model": response.model,
        "choices": response.choices.iter().map(|c| json!({
            "index": c.index,
            "message": {
                "content": c.message.content,
                "reasoning_content": c.message.reasoning_content,
                "tool_calls": c.message.tool_calls.iter().map(|t| json!({
                    "id": t.id, "name": t.name, "arguments": t.arguments,
                })).collect::<Vec<_>>(),
                "refusal": c.message.refusal,
            },
            "finish_reason": finish_reason(&c.finish_reason),
        })).collect::<Vec<_>>(),
        "usage": usage(&response.usage),
        "raw_cost": raw_cost(&response.raw_cost),
        "system_fingerprint": response.system_fingerprint,
    })
}

/// The JSON form of a [`StreamChunk`].
pub fn stream_chunk(chunk: &StreamChunk) -> Value {
    json!({
        "id": chunk.id,
        "created": chunk.created,
        "model": chunk.model,
        "choices": chunk.choices.iter().map(|c| json!({
            "index": c.index,
            "role": c.role.as_ref().map(role_name),
            "content": c.content,
            "reasoning_content": c.reasoning_content,
            "refusal": c.refusal,
            "tool_calls": c.tool_calls.iter().map(|t| json!({
                "index": t.index, "id": t.id, "name": t.name, "arguments": t.arguments,
            })).collect::<Vec<_>>(),
            "finish_reason": finish_reason(&c.finish_reason),
        })).collect::<Vec<_>>(),
        "usage": usage(&chunk.usage),
        "raw_cost": raw_cost(&chunk.raw_cost),
    })
}

/// The JSON form of a [`ProviderError`].
pub fn provider_error(error: &ProviderError) -> Value {
    json!({
        "status": error.status,
        "error_type": error.error_type,
        "code": error.code,
        "message": error.message,
        "retryable": error.retryable,
    })
}

/// The JSON form of an [`HttpRequest`]: header names lowercased, the body parsed as JSON when it
/// is JSON (else kept as text).
pub fn http_request(request: &HttpRequest) -> Value {
    let headers: Map<String, Value> =
        request.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), Value::String(value.clone()))).collect();
    let body = serde_json::from_slice::<Value>(&request.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
    json!({
        "method": request.method,
        "url": request.url,
        "headers": headers,
        "body": body,
    })
}

// ---------------------------------------------------------------------------------------------
// comparison

/// The first difference between `expected` and `actual` (see [`mismatches`]).
pub fn first_mismatch(expected: &Value, actual: &Value) -> Option<String> {
    mismatches(expected, actual).into_iter().next()
}

/// Every difference between `expected` and `actual`, one line each with its JSON path: only the
/// keys `expected` lists are compared (an expected `null` also matches an absent key), numbers by
/// value, arrays element by element; an array of the wrong length names each missing or extra
/// element.
pub fn mismatches(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    mismatch("$", expected, actual, &mut out);
    out
}

fn mismatch(at: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, want) in want {
                let at = format!("{at}.{key}");
                match have.get(key) {
                    None if want.is_null() => {}
                    None => out.push(format!("{at}: expected {}, but the key is missing", short(want))),
                    Some(have) => mismatch(&at, want, have, out),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            for (i, (want, have)) in want.iter().zip(have).enumerate() {
                mismatch(&format!("{at}[{i}]"), want, have, out);
            }
            for (i, want) in want.iter().enumerate().skip(have.len()) {
                out.push(format!(
                    "{at}[{i}]: missing (expected {} element(s), got {}): expected {}",
                    want_len(expected),
                    have.len(),
                    short(want)
                ));
            }
            for (i, have) in have.iter().enumerate().skip(want.len()) {
                out.push(format!(
                    "{at}[{i}]: extra (expected {} element(s), got {}): {}",
                    want.len(),
                    want_len(actual),
                    short(have)
                ));
            }
        }
        (Value::Number(want), Value::Number(have)) if want.as_f64() == have.as_f64() => {}
        (want, have) if want == have => {}
        (want, have) => out.push(format!("{at}: expected {}, got {}", short(want), short(have))),
    }
}

fn want_len(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

/// A value for a report line: compact JSON, cut to a readable length.
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    const MAX: usize = 160;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn comparison_is_a_subset_match_ignoring_key_order() {
        let actual = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": null});
        assert_eq!(first_mismatch(&json!({"b": {"d": "x", "c": [1.0, 2]}}), &actual), None);
        assert_eq!(first_mismatch(&json!({"e": null, "f": null}), &actual), None);
        assert_eq!(first_mismatch(&json!({"b": {"c": [1, 3]}}), &actual).unwrap(), "$.b.c[1]: expected 3, got 2");
        assert_eq!(
            first_mismatch(&json!({"max_tokens": 64}), &json!({"max_token": 64})).unwrap(),
            "$.max_tokens: expected 64, but the key is missing"
        );
        assert!(first_mismatch(&json!({"b": {"c": [1]}}), &actual).unwrap().contains("1 element(s), got 2"));
    }

    #[test]
    fn every_mismatch_is_listed_and_a_missing_or_extra_element_is_named() {
        let all = mismatches(&json!({"a": 1, "b": 2, "c": [1]}), &json!({"a": 2, "c": [1]}));
        assert_eq!(all, ["$.a: expected 1, got 2", "$.b: expected 2, but the key is missing"]);
        let chunks = |n: usize| json!({"chunks": (0..n).map(|i| json!({"n": i})).collect::<Vec<_>>()});
        assert_eq!(
            mismatches(&chunks(3), &chunks(2)),
            [r#"$.chunks[2]: missing (expected 3 element(s), got 2): expected {"n":2}"#]
        );
        assert_eq!(
            mismatches(&chunks(2), &chunks(3)),
            [r#"$.chunks[2]: extra (expected 2 element(s), got 3): {"n":2}"#]
        );
    }

    #[test]
    fn request_json_round_trips_the_documented_form() {
        let request = chat_request(&json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "t"},
                    {"type": "image_url", "image_url": {"url": "https://i"}}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "name": "f", "arguments": {"x": 1}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "r"}
            ],
            "tools": [{"name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"function": "f"},
            "stop": "END",
            "extra": {"enable_thinking": true},
            "stream": true
        }))
        .unwrap();
        assert_eq!(request.messages.len(), 4);
        assert_eq!(request.messages[2].tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(request.tools[0].parameters.as_deref(), Some(r#"{"type":"object"}"#));
        assert_eq!(request.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(request.stop, vec!["END".to_owned()]);
        assert_eq!(request.extra, r#"{"enable_thinking":true}"#);
        assert!(request.stream);
        let typo = chat_request(&json!({"model": "m", "max_token": 3})).unwrap_err();
        assert!(typo.contains("unknown key `max_token`"), "{typo}");
    }
}
