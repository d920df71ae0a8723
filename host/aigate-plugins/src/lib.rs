//! AIGate's plugin runtime: provider plugins are WebAssembly components implementing the
//! `aigate:provider` contract (`wit/provider@<version>/provider.wit`: 0.3.0, 0.2.0 with the same
//! types, or 0.1.0 through an adapter, see [`SUPPORTED_CONTRACTS`]), run in a sandbox.
//!
//! This is the only crate that links wasmtime. The rest of the host sees the canonical types
//! ([`canonical`]), the runtime ([`PluginRuntime`]), loaded plugins ([`LoadedPlugin`]), per-request
//! instances ([`PluginInstance`], [`StreamDecoder`]) and the hot-reloading [`PluginRegistry`].
//!
//! # Design
//!
//! **Compile once, pre-link once, fresh instance per request.** Compiling a 200–300 KB component
//! takes hundreds of milliseconds, so it happens once per file content, on a blocking thread.
//! The compiled component is then pre-linked against the host's imports (`InstancePre`:
//! imports resolved and type-checked once). Each request gets a fresh store and instance from
//! it: tens of microseconds with the pooling allocator, whose instance slots are reserved up
//! front. Nothing a plugin leaves in memory survives into another request (another tenant's),
//! and a plugin that crashed can never be called again by accident.
//!
//! **Limits per call: epochs *and* a wall-clock timeout.** A background thread advances the
//! engine epoch every few milliseconds; the store's epoch callback charges each tick to the
//! call's CPU budget and yields to the executor meanwhile (so a spinning plugin does not hog
//! a tokio worker), then stops the plugin when the budget is spent. Epochs only interrupt
//! WebAssembly code, though: a plugin blocked inside a host call (a WASI poll, say) is not
//! stopped by them, so every call also runs under `tokio::time::timeout`. Memory is capped per
//! instance by a store limiter that traps on a refused growth; the trap (or the Rust allocator
//! abort that a refused growth can cause) is reported as out-of-memory.
//!
//! **Compiled components cached by content hash.** With a cache folder, the compiled code is
//! written as `<sha256 of the .wasm>-<engine key>.cwasm` and later mapped instead of compiled
//! (about a millisecond instead of hundreds). Keying by content rather than by file name makes
//! the cache correct across renames, reloads and rollbacks, and lets two gateways share it; the
//! engine key keeps artifacts from another wasmtime version or configuration apart. Files are
//! written atomically and never modified in place, because a loaded component maps its file.
//!
//! **Faults are per request.** A trap, a timeout, running out of memory or a result that breaks
//! the contract is a [`PluginFault`] for that request (the server answers 502), never a crash
//! of the host nor a problem for other plugins.
//!
//! # Sandbox
//!
//! A plugin gets WASI 0.2 with an empty context, because Rust's standard library imports it:
//! no files, no sockets, no name lookups, no environment, no arguments, closed stdin, stdout
//! discarded, stderr kept (last 4 KiB) for fault messages. It never sees credentials; the host
//! adds them to the requests the plugin builds, per the plugin's declared auth scheme.

pub mod canonical;
mod compat_0_1;
mod compat_0_2;
pub mod compiler;
pub mod conformance;
mod counters;
mod error;
mod instance;
mod output;
mod registry;
mod runtime;
mod validate;

pub use compiler::Compiler;
pub use counters::{PluginCounts, RuntimeCounts};
pub use error::{LoadError, PluginFault, RuntimeError};
pub use instance::{LoadedPlugin, PluginInstance, StreamDecoder};
pub use registry::{DEBOUNCE, PluginRegistry, PluginStatus, WatchGuard};
pub use runtime::{PluginRuntime, RuntimeConfig};

/// The contract version this host implements for real (the canonical types are its types).
pub const CONTRACT_VERSION: &str = "0.3.0";

/// Every contract version this host loads plugins for, newest first: [`CONTRACT_VERSION`] and
/// the older versions served through their own bindings (`compat_0_2`, `compat_0_1`). The policy
/// is in `docs/plugins.md`.
pub const SUPPORTED_CONTRACTS: &[&str] = &[CONTRACT_VERSION, "0.2.0", "0.1.0"];

/// Whether a plugin built against contract version `version` can be loaded by this host: the
/// same major and minor version as one of [`SUPPORTED_CONTRACTS`] (patch versions never change
/// the contract's shape). Text that is not semver is never compatible.
pub fn contract_compatible(version: &str) -> bool {
    let Ok(plugin) = semver::Version::parse(version) else {
        return false;
    };
    SUPPORTED_CONTRACTS.iter().any(|supported| {
        semver::Version::parse(supported).is_ok_and(|host| plugin.major == host.major && plugin.minor == host.minor)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_compatibility_follows_semver_for_0_x() {
        for ok in ["0.3.0", "0.3.2", "0.2.0", "0.2.3", "0.1.0", "0.1.1", "0.1.7-rc.1"] {
            assert!(contract_compatible(ok), "{ok}");
        }
        for bad in ["0.4.0", "1.1.0", "9.1.0", "0.0.9", "0.1", "", "v0.1.0"] {
            assert!(!contract_compatible(bad), "{bad}");
        }
    }
}
