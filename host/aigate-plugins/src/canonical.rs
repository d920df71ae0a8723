//! The canonical chat format: the types of `aigate:provider/types@0.2.0` (the newest contract,
//! the only one the host implements for real), generated from the WIT. Plugins built against an
//! older contract are adapted to these types by [`crate::compat_0_1`].
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
mod generated {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../../wit/provider@0.2.0",
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub(crate) use generated::{Provider, ProviderPre};

pub use generated::aigate::provider::types::{
    AuthScheme, ChatRequest, ChatResponse, Choice, ChoiceDelta, ContentPart, FinishReason, FunctionTool, HttpRequest,
    HttpResponse, ImageUrl, Message, MessageContent, ModelInfo, PluginInfo, ProviderError, RawCost, ResponseFormat,
    ResponseMessage, Role, SseEvent, StreamChunk, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

/// The (empty) host side of the types-only `types` interface, which the component imports.
pub(crate) use generated::aigate::provider::types as types_interface;

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
    }
}
