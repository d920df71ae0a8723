//! Shared helpers: artifact paths, runtimes, canonical requests, polling.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aigate_plugins::canonical::{ChatRequest, Message, MessageContent, Role};
use aigate_plugins::{PluginRuntime, RuntimeConfig};

/// A plugin component built by `cargo xtask build-plugins`, e.g. `dist("qwen.wasm")`.
pub fn dist(relative: &str) -> PathBuf {
    let root = std::env::var_os("AIGATE_PLUGINS_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist"));
    let path = root.join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-plugins` first (these tests load the real plugin \
         components)",
        path.display()
    );
    path
}

pub fn bytes(relative: &str) -> Vec<u8> {
    std::fs::read(dist(relative)).unwrap()
}

/// A compile cache shared by every test in this process, so each plugin compiles once.
static SHARED_CACHE: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());

/// Small limits: every test process may hold several runtimes at once.
pub fn config() -> RuntimeConfig {
    RuntimeConfig {
        max_instances: 16,
        wall_timeout: Duration::from_secs(10),
        cpu_timeout: Duration::from_secs(2),
        cache_dir: Some(SHARED_CACHE.path().to_path_buf()),
        ..RuntimeConfig::default()
    }
}

pub fn runtime() -> PluginRuntime {
    PluginRuntime::new(config()).unwrap()
}

pub fn chat_request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message {
            role: Role::User,
            content: Some(MessageContent::Text("Say hi".to_owned())),
            name: None,
            tool_calls: vec![],
            tool_call_id: None,
            reasoning_content: None,
        }],
        tools: vec![],
        tool_choice: None,
        parallel_tool_calls: None,
        temperature: Some(0.5),
        top_p: None,
        max_tokens: Some(64),
        stop: vec![],
        seed: None,
        n: None,
        presence_penalty: None,
        frequency_penalty: None,
        response_format: None,
        user: None,
        stream: false,
        extra: String::new(),
    }
}

/// Poll `condition` until it holds or `timeout` passes (then fail with `what`).
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Generous: a debug build compiling a component on 2 busy cores is slow.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
