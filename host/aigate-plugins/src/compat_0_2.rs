//! Plugins built against contract `aigate:provider@0.2.0`.
//!
//! 0.3.0 added records and adapter functions but kept the shape of every 0.2 record, and
//! wasmtime checks component types by structure, not by name. So the 0.2 bindings reuse the
//! canonical (0.3) Rust types (`with`): no conversion at all, only a second set of export
//! bindings. What a 0.2 plugin cannot do (capabilities, embeddings) is answered by the host
//! without entering the plugin ([`crate::instance`]).

mod generated {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../../wit/provider@0.2.0",
        exports: { default: async },
        with: { "aigate:provider/types@0.2.0": crate::canonical::generated::aigate::provider::types },
    });
}

pub(crate) use generated::{Provider, ProviderPre};

/// The contract version these bindings implement.
pub(crate) const VERSION: &str = "0.2.0";

/// The name under which a 0.2 component imports the (types-only, empty) `types` interface.
pub(crate) const TYPES_INTERFACE: &str = "aigate:provider/types@0.2.0";
