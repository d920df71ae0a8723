//! Helpers for the JSON every provider speaks, whatever its wire format.
//!
//! - Lenient readers over [`Value`]: walking a `Value` instead of deriving
//!   `Deserialize` structs keeps one wrong type in an unimportant field (a
//!   number sent as a string, an object where a string was documented) from
//!   failing a whole response, and keeps the component small.
//! - Request building: [`post_json`], [`parse_json_text`] for the JSON text the
//!   canonical request carries (tool parameters, schemas, `extra`),
//!   [`finite_number`] for sampling parameters, [`merge_extra`] for the
//!   provider extras a client passed through, [`take_reasoning_effort`] for
//!   the one OpenAI extra other providers spell their own way.
//! - Response reading: [`parse_body`].
//!
//! Readers of OpenAI's own keys (`usage`, `finish_reason`, `tool_calls`) are
//! not here but in [`crate::openai_compat`], because other formats name and
//! count these differently.

use serde_json::{Map, Number, Value};

use crate::errors::truncate;
use crate::types::{HttpRequest, ProviderError};

/// A string field; `None` when absent, `null` or not a string.
pub fn str_field(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A string field that may also be sent as a number (vLLM's error `code`,
/// Google's numeric `error.code`).
pub fn code_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A token count; floats are truncated and huge values saturate, because a
/// count off by a fraction is better than a failed response.
pub fn u32_of(value: &Value) -> Option<u32> {
    if let Some(n) = value.as_u64() {
        return Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    value.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f.min(u32::MAX as f64) as u32)
}

/// A token count field (see [`u32_of`]).
pub fn u32_field(value: &Value, key: &str) -> Option<u32> {
    value.get(key).and_then(u32_of)
}

/// The `created` field as Unix seconds; `None` when absent (report 0 then: a
/// plugin has no clock).
pub fn created_field(value: &Value) -> Option<u64> {
    let created = value.get("created")?;
    created.as_u64().or_else(|| created.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64))
}

/// Message text: normally a string, but some servers answer with a list of
/// text parts, which are concatenated.
pub fn text_content(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| match part {
                    Value::String(s) => Some(s.as_str()),
                    other => other.get("text").and_then(Value::as_str),
                })
                .collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

/// Tool-call arguments as the JSON text the contract carries: a string is
/// kept, an object (what most non-OpenAI formats send) is serialised.
pub fn arguments_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A `POST` of `body` as JSON to `url`, with `content-type: application/json`
/// followed by `headers` (never a credential: the host adds it).
pub fn post_json(url: String, headers: Vec<(String, String)>, body: &Value) -> HttpRequest {
    let mut all = vec![("content-type".to_string(), "application/json".to_string())];
    all.extend(headers);
    HttpRequest { method: "POST".to_string(), url, headers: all, body: body.to_string().into_bytes() }
}

/// Parses a provider response body as JSON, or says (as a non-retryable
/// [`ProviderError::invalid_response`] with the response's status, 502 for a
/// 2xx) that it is not JSON.
pub fn parse_body(status: u16, body: &[u8]) -> Result<Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        let status = if (200..300).contains(&status) { 502 } else { status };
        ProviderError::invalid_response(
            status,
            &format!("the provider's response is not JSON ({e})"),
            &String::from_utf8_lossy(&body[..body.len().min(512)]),
        )
    })
}

/// Parses JSON text the canonical request carries (tool parameters, a JSON
/// schema, tool-call arguments, `extra`); `what` names it in the 400 the
/// client gets when it is not JSON.
pub fn parse_json_text(text: &str, what: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(text).map_err(|e| ProviderError::invalid_request(format!("{what} is not valid JSON: {e}")))
}

/// A JSON number for a sampling parameter, or a 400 naming `key` for NaN or
/// an infinity (JSON has no such numbers).
pub fn finite_number(value: f64, key: &str) -> Result<Value, ProviderError> {
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| ProviderError::invalid_request(format!("{key} must be a finite number")))
}

/// The request's `extra` (JSON object text, possibly empty) as an object; a
/// 400 when it is anything else.
pub fn extra_object(extra: &str) -> Result<Map<String, Value>, ProviderError> {
    if extra.trim().is_empty() {
        return Ok(Map::new());
    }
    match parse_json_text(extra, "extra")? {
        Value::Object(extra) => Ok(extra),
        _ => Err(ProviderError::invalid_request("extra must be a JSON object")),
    }
}

/// Adds the request's `extra` keys to a request body: keys in `reserved` (the
/// ones the translation owns) and keys the body already has are skipped, so a
/// client can pass provider options through but never override the mapping.
pub fn merge_extra(body: &mut Map<String, Value>, extra: &str, reserved: &[&str]) -> Result<(), ProviderError> {
    for (key, value) in extra_object(extra)? {
        if !reserved.contains(&key.as_str()) && !body.contains_key(&key) {
            body.insert(key, value);
        }
    }
    Ok(())
}

/// How much a reasoning model should think: OpenAI's `reasoning_effort`.
///
/// It reaches a plugin as a key of the request's `extra`, whether a Chat
/// Completions client sent it or the host mapped the Responses API's
/// `reasoning.effort` to it. OpenAI-compatible providers that know the key get
/// it as is; a plugin whose provider controls reasoning its own way takes it
/// out of `extra` with [`take_reasoning_effort`] and maps it, because an
/// unknown key is ignored by some providers and refused by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningEffort {
    /// As little reasoning as the model allows; where reasoning is a switch,
    /// off.
    Minimal,
    /// Some reasoning, favouring speed.
    Low,
    /// OpenAI's default.
    Medium,
    /// The most reasoning, favouring quality.
    High,
}

impl ReasoningEffort {
    /// The `extra` key: Chat Completions' name.
    pub const KEY: &'static str = "reasoning_effort";

    /// The accepted values as OpenAI spells them, least effort first.
    pub const NAMES: [&'static str; 4] = ["minimal", "low", "medium", "high"];

    /// The effort OpenAI spells `name`, if any (exact, lowercase).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "minimal" => Some(ReasoningEffort::Minimal),
            "low" => Some(ReasoningEffort::Low),
            "medium" => Some(ReasoningEffort::Medium),
            "high" => Some(ReasoningEffort::High),
            _ => None,
        }
    }
}

/// Removes [`ReasoningEffort::KEY`] from `extra` (see [`extra_object`]) and
/// reads it: `None` when it is absent or `null` (OpenAI's "the model's
/// default"), a 400 naming the accepted values when it is not one of them.
/// The key is removed in every case, so it never reaches the provider.
pub fn take_reasoning_effort(extra: &mut Map<String, Value>) -> Result<Option<ReasoningEffort>, ProviderError> {
    match extra.remove(ReasoningEffort::KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_str().and_then(ReasoningEffort::from_name).map(Some).ok_or_else(|| {
            ProviderError::invalid_request(format!(
                "`{}` is one of {}, not {}",
                ReasoningEffort::KEY,
                ReasoningEffort::NAMES.join(", "),
                truncate(&value.to_string(), 64)
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn request_helpers() {
        let request = post_json("https://a/v1/x".into(), vec![("x-b".into(), "1".into())], &json!({"k": 1}));
        assert_eq!(request.method, "POST");
        assert_eq!(request.headers[0], ("content-type".to_string(), "application/json".to_string()));
        assert_eq!(request.body, br#"{"k":1}"#);
        assert!(finite_number(f64::NAN, "temperature").is_err_and(|e| e.message.contains("temperature")));
        assert_eq!(finite_number(0.5, "t").ok(), Some(json!(0.5)));
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        merge_extra(&mut body, r#"{"model":"x","stream":true,"top_k":3}"#, &["stream"]).ok();
        assert_eq!(Value::Object(body), json!({"model": "m", "top_k": 3}));
        assert!(extra_object("[1]").is_err());
        assert!(parse_json_text("{", "tools[0].parameters").is_err_and(|e| e.status == 400));
    }

    #[test]
    fn reasoning_effort_is_taken_out_of_extra() {
        for (name, effort) in ReasoningEffort::NAMES.iter().zip([
            ReasoningEffort::Minimal,
            ReasoningEffort::Low,
            ReasoningEffort::Medium,
            ReasoningEffort::High,
        ]) {
            let mut extra =
                extra_object(&json!({"reasoning_effort": name, "top_k": 3}).to_string()).unwrap_or_default();
            assert_eq!(take_reasoning_effort(&mut extra).ok(), Some(Some(effort)));
            assert_eq!(Value::Object(extra), json!({"top_k": 3}));
        }
        let mut extra = extra_object(r#"{"reasoning_effort": null}"#).unwrap_or_default();
        assert_eq!(take_reasoning_effort(&mut extra).ok(), Some(None));
        assert!(extra.is_empty());
        assert_eq!(take_reasoning_effort(&mut Map::new()).ok(), Some(None));
        for bad in [json!("extreme"), json!("High"), json!(2), json!({"effort": "low"})] {
            let mut extra = extra_object(&json!({"reasoning_effort": bad}).to_string()).unwrap_or_default();
            let error = take_reasoning_effort(&mut extra).err();
            assert!(
                matches!(error, Some(ref e) if e.status == 400 && !e.retryable
                    && e.message.contains("minimal, low, medium, high") && e.message.contains(&bad.to_string())),
                "{error:?}"
            );
            assert!(extra.is_empty(), "the key is removed even when refused");
        }
    }

    #[test]
    fn response_helpers() {
        assert!(parse_body(200, b"{}").is_ok());
        let error = parse_body(200, b"<html>").err();
        assert!(
            matches!(error, Some(ref e) if e.status == 502 && !e.retryable && e.error_type == crate::errors::INVALID_RESPONSE),
            "{error:?}"
        );
        assert_eq!(u32_field(&json!({"n": 3.7}), "n"), Some(3));
        assert_eq!(code_field(&json!({"code": 400}), "code").as_deref(), Some("400"));
    }
}
