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
pub fn sse_event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

/// Readers the codecs of JSON APIs share: each error is a 400 naming the field.
pub mod json {
    use super::{ApiError, Map, Value};

    /// The body as a JSON object.
    pub fn object(body: &str) -> Result<Map<String, Value>, ApiError> {
        let value: Value = serde_json::from_str(body).map_err(|e| {
            ApiError::invalid_json(format!("The request body is not valid JSON ({e}). Send a JSON object."))
        })?;
        match value {
            Value::Object(map) => Ok(map),
            _ => Err(ApiError::invalid_json("The request body must be a JSON object.")),
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
        Ok(Decoded { fallbacks: request.fallbacks.unwrap_or_default(), model: request.model, canonical, options })
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
