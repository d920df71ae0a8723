//! The one trait a plugin implements, and its bridge to the generated bindings.

use std::cell::RefCell;

use crate::bindings::exports::aigate::provider::adapter::{Guest, GuestStreamDecoder};
use crate::types::{
    Capabilities, ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, HttpRequest, HttpResponse,
    ModelInfo, PluginInfo, ProviderError, SseEvent, StreamChunk,
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

    /// What the plugin serves beyond chat (contract 0.3.0). Called at load
    /// time, like [`Provider::describe`], so it must not fail.
    ///
    /// The default is nothing: no embeddings, no native inbound APIs. A plugin
    /// that implements [`Provider::build_embeddings_request`] and
    /// [`Provider::parse_embeddings_response`] must say `embeddings: true`
    /// here, because the host never calls them otherwise.
    fn capabilities() -> Capabilities {
        Capabilities::default()
    }

    /// Translates an embeddings request into the provider's HTTP request
    /// (contract 0.3.0). `base_url` is the operator's configured URL or the
    /// plugin's default.
    ///
    /// The default refuses with [`ProviderError::embeddings_unsupported`] (a
    /// 400, not retryable). For an OpenAI-compatible `POST /embeddings`, use
    /// [`crate::openai_compat::Dialect::build_embeddings_request`].
    fn build_embeddings_request(base_url: &str, request: EmbeddingsRequest) -> Result<HttpRequest, ProviderError> {
        let _ = (base_url, request);
        Err(ProviderError::embeddings_unsupported(&Self::describe().name))
    }

    /// Translates the provider's embeddings response, whatever its status,
    /// into one vector per input in input order, or the provider's error
    /// (contract 0.3.0).
    ///
    /// The default refuses like [`Provider::build_embeddings_request`]. For an
    /// OpenAI-shaped response, use
    /// [`crate::openai_compat::Dialect::parse_embeddings_response`].
    fn parse_embeddings_response(response: HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
        let _ = response;
        Err(ProviderError::embeddings_unsupported(&Self::describe().name))
    }
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

    fn capabilities() -> Capabilities {
        P::capabilities()
    }

    fn build_embeddings_request(base_url: String, request: EmbeddingsRequest) -> Result<HttpRequest, ProviderError> {
        P::build_embeddings_request(&base_url, request)
    }

    fn parse_embeddings_response(response: HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
        P::parse_embeddings_response(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::EMBEDDINGS_UNSUPPORTED;
    use crate::openai_compat::{Dialect, StreamDecoder};

    /// A chat-only plugin written for the 0.2 SDK: only the required functions.
    struct ChatOnly;

    impl Provider for ChatOnly {
        type Decoder = StreamDecoder;

        fn describe() -> PluginInfo {
            PluginInfo {
                name: "chat-only".to_string(),
                version: "1.0.0".to_string(),
                contract_version: crate::CONTRACT_VERSION.to_string(),
                default_base_url: "http://localhost/v1".to_string(),
                auth: crate::types::AuthScheme::None,
                models: Vec::new(),
            }
        }

        fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
            Dialect::OPENAI.build_chat_request(base_url, &request)
        }

        fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
            Dialect::OPENAI.parse_chat_response(&response)
        }

        fn stream_decoder(model: String) -> StreamDecoder {
            Dialect::OPENAI.stream_decoder(model)
        }
    }

    fn refused<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> ProviderError {
        match result {
            Ok(value) => unreachable!("expected the default refusal, got {value:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn defaults_serve_nothing_beyond_chat() {
        assert_eq!(<ChatOnly as Provider>::capabilities(), Capabilities { embeddings: false, native_apis: vec![] });
        assert_eq!(crate::CONTRACT_VERSION, "0.3.0");

        let request = EmbeddingsRequest::new("m", vec!["hi".to_string()]);
        let build = refused(<ChatOnly as Provider>::build_embeddings_request("http://localhost/v1", request));
        let ok_body = HttpResponse { status: 200, headers: vec![], body: br#"{"data":[]}"#.to_vec() };
        let parse = refused(<ChatOnly as Provider>::parse_embeddings_response(ok_body));
        for error in [build, parse] {
            assert_eq!(
                error,
                ProviderError {
                    status: 400,
                    error_type: "invalid_request_error".to_string(),
                    code: Some(EMBEDDINGS_UNSUPPORTED.to_string()),
                    message: "provider `chat-only` serves no embeddings".to_string(),
                    retryable: false,
                }
            );
        }
    }

    /// The component exports reach the trait's functions, defaults included.
    #[test]
    fn guest_exports_call_the_trait() {
        assert_eq!(<ChatOnly as Guest>::capabilities(), Capabilities::default());
        let request = EmbeddingsRequest::new("m", vec!["hi".to_string()]);
        let error = refused(<ChatOnly as Guest>::build_embeddings_request("http://localhost/v1".to_string(), request));
        assert_eq!((error.status, error.code.as_deref()), (400, Some(EMBEDDINGS_UNSUPPORTED)));
        let response = HttpResponse { status: 200, headers: vec![], body: Vec::new() };
        let error = refused(<ChatOnly as Guest>::parse_embeddings_response(response));
        assert_eq!((error.status, error.retryable), (400, false));
    }
}
