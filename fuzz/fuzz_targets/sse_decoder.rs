//! The shipped plugins' stream decoders (the real components, through `aigate-plugins`) on any
//! provider stream, framed as the gateway frames it (`eventsource-stream`, as in
//! `host/aigate/src/chat.rs`): a decoder never faults (no trap, timeout or malformed result),
//! only chunks or a provider error; and a UTF-8 stream delivered in small reads decodes to
//! exactly what it decodes to when read at once.
//!
//! Input: byte 0 picks the plugin (qwen, openai, anthropic), byte 1 the read size, the rest is
//! the stream. Needs `plugins/dist/` (`cargo xtask fuzz` builds it first).
#![no_main]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use aigate_plugins::canonical::{ProviderError, SseEvent, StreamChunk};
use aigate_plugins::{LoadedPlugin, PluginFault, PluginRuntime, RuntimeConfig};
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;

const PLUGINS: [(&str, &str); 3] =
    [("qwen.wasm", "qwen-plus"), ("openai.wasm", "gpt-4o-mini"), ("anthropic.wasm", "claude-sonnet-4-5")];

struct Shipped {
    tokio: tokio::runtime::Runtime,
    plugins: Vec<Arc<LoadedPlugin>>,
}

static SHIPPED: LazyLock<Shipped> = LazyLock::new(|| {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = RuntimeConfig {
        max_instances: 4,
        wall_timeout: Duration::from_secs(5),
        cache_dir: Some(root.join("target/plugin-cache")),
        ..RuntimeConfig::default()
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let runtime = PluginRuntime::new(config).unwrap();
    let plugins = tokio.block_on(async {
        let mut plugins = Vec::new();
        for (file, _) in PLUGINS {
            let path = root.join("../plugins/dist").join(file);
            plugins.push(runtime.load(&path).await.unwrap_or_else(|e| panic!("{e}: run `cargo xtask build-plugins`")));
        }
        plugins
    });
    Shipped { tokio, plugins }
});

#[derive(Debug, PartialEq)]
struct Decoded {
    chunks: Vec<StreamChunk>,
    error: Option<ProviderError>,
    /// The framing refused the bytes (not UTF-8): the gateway ends the stream there.
    broken: bool,
}

/// Frames `stream` delivered in reads of `read` bytes, then decodes it event by event as the
/// gateway's relay does: stop at a provider error or a broken stream, else `finish`.
async fn decode(plugin: &Arc<LoadedPlugin>, model: &str, stream: &[u8], read: usize) -> Result<Decoded, PluginFault> {
    let reads: Vec<Result<Bytes, Infallible>> = stream.chunks(read).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let mut events = futures_util::stream::iter(reads).eventsource();
    let mut decoder = plugin.instantiate().await?.stream_decoder(model).await?;
    let mut decoded = Decoded { chunks: Vec::new(), error: None, broken: false };
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            decoded.broken = true;
            return Ok(decoded);
        };
        let event = SseEvent { event: (event.event != "message").then_some(event.event), data: event.data };
        match decoder.push(&event).await? {
            Ok(chunks) => decoded.chunks.extend(chunks),
            Err(error) => {
                decoded.error = Some(error);
                return Ok(decoded);
            }
        }
    }
    match decoder.finish().await? {
        Ok(chunks) => decoded.chunks.extend(chunks),
        Err(error) => decoded.error = Some(error),
    }
    Ok(decoded)
}

fuzz_target!(|data: &[u8]| {
    let [pick, read, stream @ ..] = data else { return };
    let index = usize::from(*pick) % PLUGINS.len();
    let (plugin, model) = (&SHIPPED.plugins[index], PLUGINS[index].1);
    SHIPPED.tokio.block_on(async {
        let whole = match decode(plugin, model, stream, stream.len().max(1)).await {
            Ok(decoded) => decoded,
            Err(fault) => panic!("{} faulted: {fault}", plugin.name()),
        };
        if let Some(error) = &whole.error {
            assert!((100..=599).contains(&error.status), "{error:?}");
        }
        if std::str::from_utf8(stream).is_ok() {
            let read = usize::from(*read % 16) + 1;
            match decode(plugin, model, stream, read).await {
                Ok(cut) => assert_eq!(cut, whole, "{} decoded reads of {read} bytes differently", plugin.name()),
                Err(fault) => panic!("{} faulted: {fault}", plugin.name()),
            }
        }
    });
});
