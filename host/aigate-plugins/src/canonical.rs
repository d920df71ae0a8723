//! The canonical chat format: the types of `aigate:provider/types@0.3.0` (the newest contract,
//! the only one the host implements for real), generated from the WIT. Plugins built against
//! 0.2.0 use these very types (0.3.0 kept every 0.2 record's shape, see [`crate::compat_0_2`]);
//! 0.1.0 plugins are adapted to them by [`crate::compat_0_1`].
//!
//! The WIT contract *is* the canonical format, so the host uses the very types `bindgen!` generates
//! for the plugin boundary instead of a hand-written copy that could drift. Every type is `Clone`,
//! `Debug` and `PartialEq` (records carrying `f64` cannot be `Eq`).
//!
//! Only this crate links wasmtime; the rest of the host sees these plain data types and nothing of
//! the generated call machinery, which stays private to the crate (see [`crate::PluginInstance`]).

// `bindgen!` generates one module tree per WIT package: `aigate::provider::types` for the imported
// (types-only) interface, `exports::aigate::provider::adapter` for what a plugin exports, and the
// `Provider`/`ProviderPre` structs for the world.
pub(crate) mod generated {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../../wit/provider@0.3.0",
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub(crate) use generated::{Provider, ProviderPre};

pub use generated::aigate::provider::types::{
    AuthScheme, Capabilities, ChatRequest, ChatResponse, Choice, ChoiceDelta, ContentPart, EmbeddingsRequest,
    EmbeddingsResponse, FinishReason, FunctionTool, HttpRequest, HttpResponse, ImageUrl, Message, MessageContent,
    ModelInfo, PluginInfo, ProviderError, RawCost, ResponseFormat, ResponseMessage, Role, SseEvent, StreamChunk,
    ToolCall, ToolCallDelta, ToolChoice, Usage,
};

/// The (empty) host side of the types-only `types` interface, which the component imports.
pub(crate) use generated::aigate::provider::types as types_interface;

impl Capabilities {
    /// What a plugin of an older contract (0.1, 0.2) serves beyond chat: nothing.
    pub fn none() -> Self {
        Capabilities { embeddings: false, native_apis: Vec::new() }
    }

    /// Whether the provider speaks the inbound API `api` (`anthropic-messages`) natively.
    pub fn speaks(&self, api: &str) -> bool {
        self.native_apis.iter().any(|name| name == api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_data<T: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static>() {}

    #[test]
    fn canonical_types_are_plain_data() {
        plain_data::<ChatRequest>();
        plain_data::<ChatResponse>();
        plain_data::<StreamChunk>();
        plain_data::<HttpRequest>();
        plain_data::<HttpResponse>();
        plain_data::<SseEvent>();
        plain_data::<ProviderError>();
        plain_data::<PluginInfo>();
        plain_data::<ModelInfo>();
        plain_data::<Role>();
        plain_data::<Capabilities>();
        plain_data::<EmbeddingsRequest>();
        plain_data::<EmbeddingsResponse>();
    }
}
