//! The one trait a plugin implements, and its bridge to the generated bindings.

use std::cell::RefCell;

use crate::bindings::exports::aigate::provider::adapter::{Guest, GuestStreamDecoder};
use crate::types::{
    ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError, SseEvent, StreamChunk,
};

/// A provider plugin: the `adapter` interface of the contract as a Rust trait.
///
/// Associated functions rather than methods because the host creates a fresh
/// instance per request: a plugin has no state worth keeping between calls,
/// except a stream's, which lives in [`Provider::Decoder`].
///
/// Every function must be a pure translation of its arguments. Return a
/// [`ProviderError`] for anything the provider reported or any request that
/// cannot be translated; a panic is a plugin fault and the client gets a 502.
pub trait Provider: 'static {
    /// Decodes one SSE stream of this provider.
    type Decoder: ChunkDecoder;

    /// Static facts about the plugin. Called at load time to validate it, so it
    /// must not fail.
    fn describe() -> PluginInfo;

    /// Translates a canonical request into the provider's HTTP request.
    /// `base_url` is the operator's configured URL or the plugin's default.
    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError>;

    /// Translates the provider's whole response, whatever its status, into a
    /// canonical response or the provider's error. Also sees the body of a
    /// stream request that failed before streaming.
    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError>;

    /// The request that lists the provider's models, when it has such an
    /// endpoint. Without one the host serves the models of [`Provider::describe`].
    fn build_models_request(base_url: &str) -> Option<HttpRequest> {
        let _ = base_url;
        None
    }

    /// Parses the provider's models list, keeping only chat models. Only called
    /// when [`Provider::build_models_request`] returned a request.
    fn parse_models(response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        let _ = response;
        Ok(Self::describe().models)
    }

    /// Starts decoding a stream for a request that asked for `model`.
    fn stream_decoder(model: String) -> Self::Decoder;
}

/// Decodes one provider SSE stream into canonical chunks.
///
/// Takes `&mut self` where the generated resource trait takes `&self`: the SDK
/// keeps the decoder in a `RefCell` so implementations need no interior
/// mutability of their own.
pub trait ChunkDecoder: 'static {
    /// Decodes one event. Returns no chunk for keep-alives and `[DONE]`, and the
    /// provider's error (status 200) for an error event.
    fn push(&mut self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError>;

    /// The upstream stream ended: returns whatever was held back.
    fn finish(&mut self) -> Result<Vec<StreamChunk>, ProviderError>;
}

/// The `stream-decoder` resource for any [`Provider`].
#[doc(hidden)]
pub struct DecoderResource<P: Provider> {
    decoder: RefCell<P::Decoder>,
}

impl<P: Provider> DecoderResource<P> {
    fn with<T>(&self, f: impl FnOnce(&mut P::Decoder) -> Result<T, ProviderError>) -> Result<T, ProviderError> {
        // The component model never re-enters a resource method, so this only
        // fails on a host bug; report it instead of panicking.
        match self.decoder.try_borrow_mut() {
            Ok(mut decoder) => f(&mut decoder),
            Err(_) => Err(ProviderError {
                status: 500,
                error_type: "plugin_error".to_string(),
                code: None,
                message: "stream decoder called re-entrantly".to_string(),
                retryable: false,
            }),
        }
    }
}

impl<P: Provider> GuestStreamDecoder for DecoderResource<P> {
    fn new(model: String) -> Self {
        Self { decoder: RefCell::new(P::stream_decoder(model)) }
    }

    fn push(&self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        self.with(|decoder| decoder.push(event))
    }

    fn finish(&self) -> Result<Vec<StreamChunk>, ProviderError> {
        self.with(ChunkDecoder::finish)
    }
}

impl<P: Provider> Guest for P {
    type StreamDecoder = DecoderResource<P>;

    fn describe() -> PluginInfo {
        P::describe()
    }

    fn build_request(base_url: String, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        P::build_request(&base_url, request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        P::parse_response(response)
    }

    fn build_models_request(base_url: String) -> Option<HttpRequest> {
        P::build_models_request(&base_url)
    }

    fn parse_models(response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        P::parse_models(response)
    }
}
