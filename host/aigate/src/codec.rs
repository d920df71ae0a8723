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
