//! Wire formats of the inbound APIs.
//!
//! The request path is one pipeline (authenticate → decode → plan → price check →
//! idempotency → limits → attempts → encode → meter, `chat.rs` and `router.rs`) whatever API
//! the client speaks. What differs per API is only its wire format: a [`Codec`] turns the
//! client's body into the canonical request and the canonical answer (a whole response, stream
//! chunks, an error inside a stream, the end of a stream, an error response) back into the
//! client's format. [`OpenAiChat`] (OpenAI Chat Completions, `openai.rs`) is the first;
//! `messages.rs` (Anthropic Messages) the second.

use aigate_plugins::canonical::{ChatRequest, ChatResponse, StreamChunk};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::openai::{self, ClientOptions};

/// A client's request, decoded.
#[derive(Debug)]
pub struct Decoded {
    /// The model name the client asked for (`provider:model`, an alias or a route).
    pub model: String,
    /// The models to try after it (the request's own `fallbacks`).
    pub fallbacks: Vec<String>,
    /// The canonical request; its `model` is set per attempt to the deployment's model.
    pub canonical: ChatRequest,
    pub options: ClientOptions,
    /// Content the canonical request left out because it has no place for it (an Anthropic
    /// `document` block, say), named for the client: only a provider that speaks the API
    /// natively (`Codec::native_api`, passthrough) may serve such a request.
    pub untranslatable: Option<String>,
}

/// One inbound API's wire format; see the module docs.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// The API's name in the ledger (`chat_completions`, `messages`, `responses`).
    fn name(&self) -> &'static str;

    /// The method and path clients call (part of the idempotency fingerprint, so a key
    /// reused on another API is another request).
    fn endpoint(&self) -> (&'static str, &'static str);

    /// Parses and validates a body (already known to be UTF-8). Errors are the client's 4xx.
    fn decode(&self, body: &str) -> Result<Decoded, ApiError>;

    /// A whole answer's body; `model` is the model that served (`provider:model`).
    fn response(&self, answer: &ChatResponse, model: &str) -> Vec<u8>;

    /// The encoder of one stream (some formats keep state: which block is open, usage).
    /// `model` is the model that serves (`provider:model`).
    fn stream(&self, model: String, include_usage: bool) -> Box<dyn StreamEncoder>;

    /// An error as this API's clients expect it (shape and status).
    fn error_response(&self, err: ApiError) -> Response {
        err.into_response()
    }

    /// The name under which a plugin declares this API native (`capabilities.native-apis`):
    /// a request to such a provider is passed through ([`passthrough_body`]) instead of
    /// translated. `None`: always translated.
    fn native_api(&self) -> Option<&'static str> {
        None
    }

    /// The client's headers a passthrough forwards to the provider (lowercase names).
    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The body a passthrough sends: the client's bytes unchanged, except that `model` names the
/// deployment's model and the gateway's own `fallbacks` member is removed. Everything else
/// (whitespace, key order, number spelling, thinking-block signatures) is the client's.
///
/// The body was decoded by the codec already, so it is a JSON object with a string `model`.
pub fn passthrough_body(raw: &[u8], model: &str) -> Result<Vec<u8>, ApiError> {
    use std::borrow::Cow;
    use std::collections::HashMap;

    use serde_json::value::RawValue;

    let unreadable = || ApiError::invalid_json("The request body could not be passed through: send a JSON object.");
    let text = std::str::from_utf8(raw).map_err(|_| unreadable())?;
    let members: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_str(text).map_err(|_| unreadable())?;
    // A borrowed `RawValue` is a slice of `text`: its offset is the difference of addresses.
    let span = |value: &RawValue| {
        let start = (value.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        start..start + value.get().len()
    };
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    let wanted = serde_json::to_string(model).map_err(|_| unreadable())?;
    match members.get("model") {
        Some(value) if value.get() != wanted => edits.push((span(value), wanted.into_bytes())),
        Some(_) => {}
        None => return Err(unreadable()),
    }
    if let Some(value) = members.get("fallbacks") {
        edits.push((member_span(text, span(value)).ok_or_else(unreadable)?, Vec::new()));
    }
    if edits.is_empty() {
        return Ok(raw.to_vec());
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut body = raw.to_vec();
    for (range, replacement) in edits {
        body.splice(range, replacement);
    }
    Ok(body)
}

/// The bytes of the object member `"fallbacks": <value>` whose value spans `value`, with the
/// comma that separates it from its neighbour, so that removing them leaves valid JSON. `None`
/// when the key is not written plainly (`"fallbacks"` without escapes).
fn member_span(text: &str, value: std::ops::Range<usize>) -> Option<std::ops::Range<usize>> {
    const KEY: &str = "\"fallbacks\"";
    let bytes = text.as_bytes();
    let before = text.get(..value.start)?.trim_end();
    let before = before.strip_suffix(':')?.trim_end();
    let key_start = before.strip_suffix(KEY).map(str::len)?;
    let mut end = value.end;
    while bytes.get(end).is_some_and(u8::is_ascii_whitespace) {
        end += 1;
    }
    if bytes.get(end) == Some(&b',') {
        return Some(key_start..end + 1);
    }
    // The last member: take the comma before it instead (none when it is the only member).
    let head = text.get(..key_start)?.trim_end();
    match head.strip_suffix(',') {
        Some(rest) => Some(rest.len()..value.end),
        None => Some(key_start..value.end),
    }
}

/// One stream's events in a codec's format.
pub trait StreamEncoder: Send {
    /// The event(s) for one canonical chunk; `None` when there is nothing for this client.
    fn chunk(&mut self, chunk: &StreamChunk) -> Option<Vec<u8>>;
    /// The event that ends a stream with an error, once content was sent.
    fn error(&mut self, err: &ApiError) -> Vec<u8>;
    /// The event(s) that end a stream that finished.
    fn end(&mut self) -> Vec<u8>;
}

/// Appends one named SSE event (`event: NAME` and its JSON `data:` line) to `out`.
pub fn sse_event(out: &mut Vec<u8>, name: &str, data: &impl serde::Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing the wire types (plain data) into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Readers the codecs of JSON APIs share: each error is a 400 naming the field.
pub mod json {
    use super::{ApiError, Map, Value};

    /// Decodes a JSON object body with `decode`, then checks it against the request type the
    /// OpenAPI document publishes for the route (`conforms`, e.g. `json::conforms::<T>`): the
    /// decoder's own checks give the more specific messages; the check after them makes
    /// every accepted body one the document describes.
    pub fn decode_conforming<R>(
        body: &str,
        decode: impl FnOnce(&Map<String, Value>) -> Result<R, ApiError>,
        conforms: impl FnOnce(&Value) -> Result<(), ApiError>,
    ) -> Result<R, ApiError> {
        let value: Value = serde_json::from_str(body).map_err(|e| {
            ApiError::invalid_json(format!("The request body is not valid JSON ({e}). Send a JSON object."))
        })?;
        let Some(map) = value.as_object() else {
            return Err(ApiError::invalid_json("The request body must be a JSON object."));
        };
        let decoded = decode(map)?;
        conforms(&value)?;
        Ok(decoded)
    }

    /// Checks a body against `T`, the request type the OpenAPI document publishes for its
    /// route (`GET /openapi.json`). The refusal names the first field that does not conform.
    pub fn conforms<'a, T: serde::Deserialize<'a>>(body: &'a Value) -> Result<(), ApiError> {
        match serde_path_to_error::deserialize::<_, T>(body) {
            Ok(_) => Ok(()),
            Err(e) => {
                let path = e.path().to_string();
                Err(ApiError::invalid_param(&path, format!("`{path}`: {}.", e.into_inner())))
            }
        }
    }

    /// The required `model`.
    pub fn model(map: &Map<String, Value>) -> Result<String, ApiError> {
        match map.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
            _ => Err(ApiError::invalid_param("model", "`model` is required: a model name such as `qwen:qwen-plus`.")),
        }
    }

    /// An optional number within `lo..=hi`.
    pub fn number(map: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(n) => match n.as_f64() {
                Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
                _ => Err(ApiError::invalid_param(key, format!("`{key}` must be a number between {lo} and {hi}."))),
            },
        }
    }

    /// An optional whole number of at least 1 that fits 32 bits; `required` makes it required.
    pub fn count(map: &Map<String, Value>, key: &str, required: bool) -> Result<Option<u32>, ApiError> {
        match map.get(key).filter(|v| !v.is_null()) {
            None if required => Err(ApiError::invalid_param(key, format!("`{key}` is required."))),
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n >= 1 => Ok(Some(n)),
                _ => Err(ApiError::invalid_param(key, format!("`{key}` must be a whole number of at least 1."))),
            },
        }
    }

    /// The gateway's own `fallbacks` field: at most `MAX_FALLBACKS` model names.
    pub fn fallbacks(map: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
        match map.get("fallbacks") {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) if a.len() <= crate::openai::MAX_FALLBACKS && a.iter().all(Value::is_string) => {
                Ok(a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            }
            Some(_) => Err(ApiError::invalid_param(
                "fallbacks",
                format!("`fallbacks` is a list of at most {} model names.", crate::openai::MAX_FALLBACKS),
            )),
        }
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiChat;

impl Codec for OpenAiChat {
    fn name(&self) -> &'static str {
        "chat_completions"
    }

    fn endpoint(&self) -> (&'static str, &'static str) {
        ("POST", "/v1/chat/completions")
    }

    fn decode(&self, body: &str) -> Result<Decoded, ApiError> {
        let request = openai::parse_request(body)?;
        let (canonical, options) = openai::to_canonical(&request, "")?;
        Ok(Decoded {
            fallbacks: request.fallbacks.unwrap_or_default(),
            model: request.model,
            canonical,
            options,
            untranslatable: None,
        })
    }

    fn response(&self, answer: &ChatResponse, model: &str) -> Vec<u8> {
        openai::response_json(answer, model)
    }

    fn stream(&self, model: String, include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(OpenAiChunks { model, include_usage })
    }
}

/// OpenAI's chunks: stateless, one `data:` line per chunk, `[DONE]` at the end.
struct OpenAiChunks {
    model: String,
    include_usage: bool,
}

impl StreamEncoder for OpenAiChunks {
    fn chunk(&mut self, chunk: &StreamChunk) -> Option<Vec<u8>> {
        openai::chunk_event(chunk, &self.model, self.include_usage)
    }

    fn error(&mut self, err: &ApiError) -> Vec<u8> {
        openai::error_event(err)
    }

    fn end(&mut self) -> Vec<u8> {
        openai::DONE_EVENT.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(body: &str, model: &str) -> String {
        String::from_utf8(passthrough_body(body.as_bytes(), model).unwrap()).unwrap()
    }

    #[test]
    fn a_body_naming_the_providers_model_goes_through_untouched() {
        let body = "{ \"model\":\"claude-x\" ,\n\t\"max_tokens\": 1.0e2, \"x\": \"\\u00e9\" }";
        assert_eq!(through(body, "claude-x"), body);
    }

    #[test]
    fn only_the_model_value_is_rewritten() {
        let body = r#"{"a":{"model":"inner"},"model" :  "anthropic:claude-x","z":[1, 2]}"#;
        assert_eq!(through(body, "claude-x"), r#"{"a":{"model":"inner"},"model" :  "claude-x","z":[1, 2]}"#);
        // A name that needs escaping is written as JSON.
        assert_eq!(through(r#"{"model":"a"}"#, "q\"x"), r#"{"model":"q\"x"}"#);
    }

    #[test]
    fn the_gateways_fallbacks_member_is_removed_with_one_comma() {
        for (body, expected) in [
            (r#"{"fallbacks":["a"],"model":"m"}"#, r#"{"model":"m"}"#),
            (r#"{"model":"m", "fallbacks" : ["a", "b"] }"#, r#"{"model":"m" }"#),
            (r#"{"model":"m","fallbacks":[],"stream":true}"#, r#"{"model":"m","stream":true}"#),
            (r#"{"model":"m","fallbacks":null}"#, r#"{"model":"m"}"#),
        ] {
            let out = through(body, "m");
            assert_eq!(out, expected, "{body}");
            serde_json::from_str::<Value>(&out).unwrap();
        }
    }

    #[test]
    fn an_escaped_fallbacks_key_is_refused_rather_than_forwarded() {
        assert!(passthrough_body(br#"{"model":"m","fallback\u0073":[]}"#, "m").is_err());
    }
}
