//! A test plugin that misbehaves on demand, to show that the gateway contains
//! a broken plugin: a trap, a runaway loop or memory exhaustion fails the one
//! request as a plugin fault while the gateway keeps serving.
//!
//! Never loaded by default: `cargo xtask build-plugins` puts it in
//! `plugins/dist/test/`, not in the plugins folder the gateway watches.
//!
//! The request's model picks the behaviour:
//!
//! | model        | behaviour |
//! |--------------|-----------|
//! | `trap`       | `build-request` panics (a wasm trap) |
//! | `loop`       | `build-request` spins forever (only the host's epoch deadline stops it) |
//! | `oom`        | `build-request` allocates and touches 1 MiB blocks until memory runs out |
//! | `garbage`    | `build-request` returns a request with a URL that is not a URL and an invalid header name |
//! | `stream-trap`| `build-request` is normal; the stream decoder panics on its first `push` |
//! | `parse-trap` | `build-request` is normal; `parse-response` panics |
//! | `senses`     | `build-request` fails (400) with what the sandbox shows it: wall clock, monotonic clock, random |
//! | `marker`     | `build-request` reports, in header `x-faulty-seen`, the marker values it finds in its memory (a static, and both ends of a fresh 4 MiB heap block), then writes the marker there |
//! | anything else| a normal OpenAI-compatible plugin |
//!
//! `parse-response` does not see the request, so `parse-trap` is recognised
//! either from this instance's last `build-request` or from a response body
//! naming the model (as providers echo it).
//!
//! `marker` checks the host's promise of a fresh sandbox per request: a
//! fresh instance must report `static=0 heap-low=0 heap-high=0` even when
//! the previous instance in the same slot wrote [`MARKER`] everywhere. The
//! heap block's first bytes lie in the part of a slot the host keeps resident
//! (reset in place), its last ones beyond it (decommitted).

#![allow(clippy::panic, reason = "panicking on demand is this plugin's purpose")]

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError, SseEvent,
    StreamChunk,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, ChunkDecoder, Provider, export_plugin, plugin_version};

/// The models, one per behaviour.
const MODELS: &[&str] = &["trap", "loop", "oom", "garbage", "stream-trap", "parse-trap", "senses", "marker"];

/// What `marker` writes into its memory.
pub const MARKER: u64 = 0x5EC2_E7ED_DA7A_0001;

/// The static `marker` reads and writes (in the module's data, restored from the image).
static STATIC_MARKER: AtomicU64 = AtomicU64::new(0);

/// Size of the heap block `marker` allocates: large enough that the allocator takes it from
/// freshly grown memory, which it trusts to be zero (it does not clear it again).
const HEAP_BLOCK_WORDS: usize = (4 << 20) / 8;

thread_local! {
    /// Set by `build-request` for `parse-trap`, for a host that calls
    /// `parse-response` on the same instance. Thread-local rather than a
    /// static so that parallel native tests do not see each other's state.
    static PARSE_TRAP_ARMED: Cell<bool> = const { Cell::new(false) };
}

struct Faulty;

impl Provider for Faulty {
    type Decoder = FaultyDecoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "faulty".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            // Tests point it at their mock upstream; nothing listens here.
            default_base_url: "http://127.0.0.1:9/v1".to_string(),
            // Bearer like real providers, so tests run it against the mock upstream.
            auth: AuthScheme::Bearer,
            models: MODELS
                .iter()
                .map(|id| ModelInfo { id: id.to_string(), context_window: None, max_output_tokens: None })
                .collect(),
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        PARSE_TRAP_ARMED.set(request.model == "parse-trap");
        match request.model.as_str() {
            "trap" => panic!("faulty plugin: trap requested"),
            "loop" => spin(),
            "oom" => exhaust_memory(),
            "senses" => Err(ProviderError::invalid_request(senses())),
            "marker" => {
                let mut request = Dialect::OPENAI.build_chat_request(base_url, &request)?;
                request.headers.push(("x-faulty-seen".to_string(), read_and_write_markers()));
                Ok(request)
            }
            "garbage" => Ok(HttpRequest {
                method: "POST".to_string(),
                url: "not a url\n at all".to_string(),
                headers: vec![("bad header\r\nname".to_string(), "value".to_string())],
                body: b"{".to_vec(),
            }),
            _ => Dialect::OPENAI.build_chat_request(base_url, &request),
        }
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        let named = String::from_utf8_lossy(&response.body).contains("\"parse-trap\"");
        if PARSE_TRAP_ARMED.get() || named {
            panic!("faulty plugin: parse-trap requested");
        }
        Dialect::OPENAI.parse_chat_response(&response)
    }

    fn stream_decoder(model: String) -> FaultyDecoder {
        if model == "stream-trap" {
            FaultyDecoder::Trap
        } else {
            FaultyDecoder::Normal(Dialect::OPENAI.stream_decoder(model))
        }
    }
}

/// The normal decoder, or one that panics on first use.
enum FaultyDecoder {
    Normal(StreamDecoder),
    Trap,
}

impl ChunkDecoder for FaultyDecoder {
    fn push(&mut self, event: SseEvent) -> Result<Vec<StreamChunk>, ProviderError> {
        match self {
            FaultyDecoder::Normal(decoder) => decoder.push(event),
            FaultyDecoder::Trap => panic!("faulty plugin: stream-trap requested"),
        }
    }

    fn finish(&mut self) -> Result<Vec<StreamChunk>, ProviderError> {
        match self {
            FaultyDecoder::Normal(decoder) => decoder.finish(),
            FaultyDecoder::Trap => Ok(Vec::new()),
        }
    }
}

/// What the host's sandbox lets a plugin observe of time and randomness:
/// `wall=<ns since the Unix epoch> elapsed=<ns between two monotonic reads> random=<hex>`.
/// Random comes through std's hash keys (seeded from `wasi:random`).
fn senses() -> String {
    use std::hash::BuildHasher;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let start = Instant::now();
    black_box(spin_a_little());
    let elapsed = start.elapsed().as_nanos();
    let random = std::collections::hash_map::RandomState::new().hash_one(0u64);
    format!("wall={wall} elapsed={elapsed} random={random:016x}")
}

/// Some work between two clock reads, so a real clock would move.
fn spin_a_little() -> u64 {
    (0..100_000u64).fold(0, |acc, i| black_box(acc.wrapping_mul(31).wrapping_add(i)))
}

/// `static=S heap-low=L heap-high=H`: the values found before writing [`MARKER`] to each.
fn read_and_write_markers() -> String {
    let seen_static = STATIC_MARKER.swap(MARKER, Ordering::Relaxed);
    let mut block = black_box(vec![0u64; HEAP_BLOCK_WORDS]);
    let last = block.len() - 1;
    let (low, high) = (black_box(block[0]), black_box(block[last]));
    block[0] = MARKER;
    block[last] = MARKER;
    black_box(&block);
    // Leaked on purpose: the block must still hold the marker when the instance goes away.
    std::mem::forget(block);
    format!("static={seen_static:#x} heap-low={low:#x} heap-high={high:#x}")
}

/// An endless loop the optimiser cannot remove: `black_box` makes every
/// iteration observable.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates without bound. Every page is written, because fresh wasm memory
/// is already zeroed and untouched pages would cost the host nothing.
fn exhaust_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for byte in block.iter_mut().step_by(4096) {
            *byte = 1;
        }
        blocks.push(black_box(block));
    }
}

export_plugin!(Faulty);

#[cfg(test)]
mod tests {
    use aigate_plugin_sdk::types::{Message, Role};

    use super::*;

    fn request(model: &str) -> ChatRequest {
        ChatRequest::new(model, vec![Message::text(Role::User, "hi")])
    }

    #[test]
    fn describe_lists_the_behaviours() {
        let info = Faulty::describe();
        assert_eq!(info.name, "faulty");
        let ids: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, MODELS);
    }

    #[test]
    #[should_panic(expected = "trap requested")]
    fn trap_panics() {
        let _ = Faulty::build_request("http://x/v1", request("trap"));
    }

    #[test]
    fn garbage_is_not_a_valid_request() {
        let Ok(http) = Faulty::build_request("http://x/v1", request("garbage")) else {
            panic!("garbage must return Ok")
        };
        assert!(!http.url.contains("://"));
        assert!(http.headers.iter().any(|(name, _)| name.contains(' ') && name.contains('\n')));
    }

    #[test]
    fn other_models_work() {
        let Ok(http) = Faulty::build_request("http://x/v1", request("gpt-4o")) else { panic!("normal request failed") };
        assert_eq!(http.url, "http://x/v1/chat/completions");
        let body = br#"{"id":"c","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}]}"#;
        let parsed = Faulty::parse_response(HttpResponse { status: 200, headers: vec![], body: body.to_vec() });
        assert!(matches!(parsed, Ok(ref r) if r.choices[0].message.content.as_deref() == Some("ok")));
        let mut decoder = Faulty::stream_decoder("gpt-4o".to_string());
        assert!(decoder.push(SseEvent { event: None, data: "[DONE]".to_string() }).is_ok());
    }

    #[test]
    fn stream_and_parse_traps_build_normal_requests() {
        for model in ["stream-trap", "parse-trap"] {
            let Ok(http) = Faulty::build_request("http://x/v1", request(model)) else { panic!("{model}") };
            assert_eq!(http.url, "http://x/v1/chat/completions");
            assert!(String::from_utf8_lossy(&http.body).contains(&format!("\"model\":\"{model}\"")));
        }
    }

    #[test]
    fn marker_reports_what_it_found_then_writes_it() {
        let seen = |http: &HttpRequest| {
            http.headers.iter().find(|(name, _)| name == "x-faulty-seen").map(|(_, v)| v.clone()).unwrap_or_default()
        };
        let Ok(first) = Faulty::build_request("http://x/v1", request("marker")) else { panic!("marker failed") };
        assert!(seen(&first).contains("heap-low=0x0 heap-high=0x0"), "{}", seen(&first));
        // Natively the process keeps the static (a sandbox would not): the second call sees it.
        let Ok(second) = Faulty::build_request("http://x/v1", request("marker")) else { panic!("marker failed") };
        assert!(seen(&second).starts_with(&format!("static={MARKER:#x}")), "{}", seen(&second));
    }

    #[test]
    #[should_panic(expected = "stream-trap requested")]
    fn stream_trap_panics_on_push() {
        let mut decoder = Faulty::stream_decoder("stream-trap".to_string());
        let _ = decoder.push(SseEvent { event: None, data: "[DONE]".to_string() });
    }

    #[test]
    #[should_panic(expected = "parse-trap requested")]
    fn parse_trap_panics_on_a_response_naming_it() {
        let body = br#"{"model":"parse-trap","choices":[]}"#;
        let _ = Faulty::parse_response(HttpResponse { status: 200, headers: vec![], body: body.to_vec() });
    }
}
