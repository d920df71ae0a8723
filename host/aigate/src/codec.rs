//! Wire formats of the inbound APIs.
//!
//! The request path is one pipeline (authenticate → decode → plan → price check →
//! idempotency → limits → attempts → encode → meter, `chat.rs` and `router.rs`) whatever API
//! the client speaks. What differs per API is only its wire format: a [`Codec`] turns the
//! client's body into the canonical request and the canonical answer (a whole response, stream
//! chunks, an error inside a stream, the end of a stream) back into the client's format.
//! [`OpenAiChat`] (OpenAI Chat Completions, `openai.rs`) is the first.

use aigate_plugins::canonical::{ChatRequest, ChatResponse, StreamChunk};

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
    /// The method and path clients call (part of the idempotency fingerprint, so a key
    /// reused on another API is another request).
    fn endpoint(&self) -> (&'static str, &'static str);

    /// Parses and validates a body (already known to be UTF-8). Errors are the client's 4xx.
    fn decode(&self, body: &str) -> Result<Decoded, ApiError>;

    /// A whole answer's body; `model` is the model that served (`provider:model`).
    fn response(&self, answer: &ChatResponse, model: &str) -> Vec<u8>;

    /// One stream chunk as the API's SSE event(s); `None` when it has nothing for this client.
    fn chunk(&self, chunk: &StreamChunk, model: &str, include_usage: bool) -> Option<Vec<u8>>;

    /// The event that ends a stream with an error, once content was sent.
    fn stream_error(&self, err: &ApiError) -> Vec<u8>;

    /// The event that ends a stream that finished.
    fn stream_end(&self) -> &'static [u8];
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiChat;

impl Codec for OpenAiChat {
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

    fn chunk(&self, chunk: &StreamChunk, model: &str, include_usage: bool) -> Option<Vec<u8>> {
        openai::chunk_event(chunk, model, include_usage)
    }

    fn stream_error(&self, err: &ApiError) -> Vec<u8> {
        openai::error_event(err)
    }

    fn stream_end(&self) -> &'static [u8] {
        openai::DONE_EVENT
    }
}
