//! The three error enums of the plugin runtime, one per concern:
//!
//! - [`RuntimeError`]: setting the runtime itself up (engine, linker, ticker, cache, watcher).
//!   Fatal at start-up; never caused by a plugin.
//! - [`LoadError`]: a plugin file was refused at load time (it does not compile, does not fit the
//!   contract, or its `describe` fails). The previous version of that plugin keeps serving.
//! - [`PluginFault`]: a loaded plugin failed one request (trap, timeout, out of memory, a result
//!   that breaks the contract, no free instance slot). The request fails; the host and every
//!   other request are unaffected.
//!
//! Every `Display` names the plugin (or file) and says what happened in words an operator
//! understands; the server maps them to its client-facing error in one place.

use std::path::PathBuf;
use std::time::Duration;

/// Setting up the runtime failed. Nothing here is caused by a plugin.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine refused the configuration (for example a pooling allocator that does
    /// not fit the address space).
    #[error("cannot create the WebAssembly engine: {message}")]
    Engine { message: String },
    /// WASI could not be added to the linker.
    #[error("cannot set up the plugin linker: {message}")]
    Linker { message: String },
    /// The epoch ticker thread could not be started.
    #[error("cannot start the plugin CPU-budget ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
    /// The compiled-component cache folder cannot be created.
    #[error("cannot create the plugin cache folder {}: {source}", path.display())]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The secret that authenticates cache files cannot be read or created.
    #[error("cannot read or create the plugin cache key {}: {message}", path.display())]
    CacheKey { path: PathBuf, message: String },
    /// [`crate::PluginRegistry::watch`] was called outside a tokio runtime.
    #[error("the plugin folder watcher must be started from within a tokio runtime")]
    NoAsyncRuntime,
    /// The plugin folder cannot be watched.
    #[error("cannot watch the plugin folder {}: {source}", dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// A plugin file was refused. `origin` is the file path (or whatever label the caller gave
/// [`crate::PluginRuntime::load_bytes`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin file {origin}: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component (or wasmtime cannot compile it).
    #[error("plugin {origin} is not a valid WebAssembly component: {message}")]
    Compile { origin: String, message: String },
    /// The compiler process failed on this file (it crashed, ran past its time limit, or its
    /// output did not load): the file may be hostile, or the compiler broken.
    #[error("the plugin compiler failed on {origin}: {message}")]
    Compiler { origin: String, message: String },
    /// The component does not fit the host: it does not export `aigate:provider/adapter` at a
    /// version this host accepts, or it imports something the host does not provide.
    #[error(
        "plugin {origin} does not implement an aigate:provider contract this host speaks \
         ({hosts}) ({message})",
        hosts = crate::SUPPORTED_CONTRACTS.join(", ")
    )]
    Contract { origin: String, message: String },
    /// `describe` says the plugin was built against a contract version this host does not accept.
    #[error(
        "plugin {origin} was built against contract version {plugin_contract}, but this host \
         implements {host} and accepts {accepted} (same major and minor version; see \
         docs/plugins.md for the versioning policy)",
        host = crate::CONTRACT_VERSION,
        accepted = crate::SUPPORTED_CONTRACTS.iter().map(|v| format!("{}.x", v.rsplit_once('.').map_or(*v, |(mm, _)| mm))).collect::<Vec<_>>().join(", ")
    )]
    IncompatibleContract { origin: String, plugin_contract: String },
    /// `describe` returned facts that break the contract (empty or invalid name, version that is
    /// not semver, default base URL that is not an absolute http(s) URL, ...).
    #[error("plugin {origin} describes itself wrongly: {what}")]
    InvalidInfo { origin: String, what: String },
    /// Instantiating the plugin or calling `describe` failed.
    #[error("plugin {origin} failed its load-time check: {fault}")]
    Describe {
        origin: String,
        #[source]
        fault: PluginFault,
    },
    /// An internal failure while loading (a compile task that panicked or was cancelled).
    #[error("loading plugin {origin} failed: {message}")]
    Internal { origin: String, message: String },
}

/// A plugin failed one call. The request fails (the server answers 502, `plugin_error`); the
/// instance that failed is poisoned and never used again, while fresh instances of the same
/// plugin and every other plugin keep working.
///
/// `plugin` is the plugin's name from `describe` (or the file label while it is being loaded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFault {
    /// The plugin trapped: a panic, an `unreachable`, an out-of-bounds access, a stack overflow.
    /// `message` includes what the plugin wrote to stderr (a Rust panic message) when it wrote
    /// anything.
    #[error("plugin `{plugin}` crashed: {message}")]
    Trap { plugin: String, message: String },
    /// The plugin ran longer than its CPU budget for one call and was stopped.
    #[error("plugin `{plugin}` used up its CPU budget of {budget:?} for one call and was stopped")]
    CpuTimeout { plugin: String, budget: Duration },
    /// The call did not finish within the wall-clock timeout (for example blocked in a host call).
    #[error("plugin `{plugin}` did not answer within {timeout:?} and was stopped")]
    WallTimeout { plugin: String, timeout: Duration },
    /// The plugin tried to grow its memory past the per-instance limit.
    #[error("plugin `{plugin}` ran out of memory (limit {} per instance)", format_bytes(*limit))]
    OutOfMemory { plugin: String, limit: usize },
    /// The plugin returned a result that breaks the contract (an invalid HTTP method, URL or
    /// header, an impossible status code, ...).
    #[error("plugin `{plugin}` returned a result that breaks the contract: {what}")]
    Malformed { plugin: String, what: String },
    /// Every instance slot of the pooling allocator is in use: too many concurrent requests.
    /// Retrying later may succeed.
    #[error("no free instance slot for plugin `{plugin}`: the runtime is at its max_instances limit")]
    Busy { plugin: String },
    /// A fresh instance could not be created for another reason.
    #[error("plugin `{plugin}` could not be instantiated: {message}")]
    Instantiate { plugin: String, message: String },
}

impl PluginFault {
    /// A short name of the kind of fault, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFault::Trap { .. } => "trap",
            PluginFault::CpuTimeout { .. } => "cpu_timeout",
            PluginFault::WallTimeout { .. } => "wall_timeout",
            PluginFault::OutOfMemory { .. } => "out_of_memory",
            PluginFault::Malformed { .. } => "malformed",
            PluginFault::Busy { .. } => "busy",
            PluginFault::Instantiate { .. } => "instantiate",
        }
    }

    /// The plugin the fault belongs to.
    pub fn plugin(&self) -> &str {
        match self {
            PluginFault::Trap { plugin, .. }
            | PluginFault::CpuTimeout { plugin, .. }
            | PluginFault::WallTimeout { plugin, .. }
            | PluginFault::OutOfMemory { plugin, .. }
            | PluginFault::Malformed { plugin, .. }
            | PluginFault::Busy { plugin }
            | PluginFault::Instantiate { plugin, .. } => plugin,
        }
    }

    /// Whether the same request may succeed if sent again. Only [`PluginFault::Busy`] is
    /// transient; every other fault is a property of the plugin and the request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PluginFault::Busy { .. })
    }
}

/// `64 MiB` rather than `67108864`, falling back to bytes when not a whole number of KiB/MiB.
fn format_bytes(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_name_the_plugin_and_the_limit() {
        let oom = PluginFault::OutOfMemory { plugin: "qwen".into(), limit: 64 << 20 };
        assert_eq!(oom.to_string(), "plugin `qwen` ran out of memory (limit 64 MiB per instance)");
        let cpu = PluginFault::CpuTimeout { plugin: "qwen".into(), budget: Duration::from_millis(200) };
        assert_eq!(cpu.to_string(), "plugin `qwen` used up its CPU budget of 200ms for one call and was stopped");
        assert_eq!(format_bytes(1000), "1000 bytes");
        assert_eq!(format_bytes(3 * 1024), "3 KiB");
    }

    #[test]
    fn incompatible_contract_names_both_versions() {
        let e = LoadError::IncompatibleContract { origin: "x.wasm".into(), plugin_contract: "9.1.0".into() };
        let s = e.to_string();
        assert!(s.contains("9.1.0") && s.contains(crate::CONTRACT_VERSION) && s.contains("0.1.x"), "{s}");
    }
}
