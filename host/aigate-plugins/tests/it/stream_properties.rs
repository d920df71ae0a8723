//! Property tests of the shipped plugins' stream decoders, through the real components.
//!
//! - Arbitrary events (names, text, JSON shaped like provider chunks, recorded events with a
//!   value replaced) never fault a decoder: every push and the finish return chunks or a
//!   provider error, never a trap, timeout or malformed result.
//! - A valid stream, cut into network reads at arbitrary byte offsets (inside a UTF-8
//!   character, between `\r` and `\n`) and framed as the gateway frames it
//!   (`eventsource-stream`, as in `host/aigate/src/chat.rs`), decodes to the same chunks as
//!   the stream read at once, and to the text that was sent.
//!
//! Case counts are small: each case instantiates a component.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};

use aigate_plugins::canonical::{ProviderError, SseEvent, StreamChunk};
use aigate_plugins::{LoadedPlugin, PluginFault, PluginRuntime};
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::support::{dist, runtime};

/// The shipped plugins, loaded once, with the model each stream is for.
struct Shipped {
    tokio: tokio::runtime::Runtime,
    plugins: Vec<(Arc<LoadedPlugin>, &'static str)>,
    _runtime: PluginRuntime,
}

static SHIPPED: LazyLock<Shipped> = LazyLock::new(|| {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let runtime = tokio.block_on(async { runtime() });
    let plugins = tokio.block_on(async {
        let mut plugins = Vec::new();
        for (file, model) in
            [("qwen.wasm", "qwen-plus"), ("openai.wasm", "gpt-4o-mini"), ("anthropic.wasm", "claude-sonnet-4-5")]
        {
            plugins.push((runtime.load(&dist(file)).await.unwrap(), model));
        }
        plugins
    });
    Shipped { tokio, plugins, _runtime: runtime }
});

fn plugin(name: &str) -> (&'static Arc<LoadedPlugin>, &'static str) {
    let (plugin, model) = SHIPPED.plugins.iter().find(|(p, _)| p.name() == name).unwrap();
    (plugin, *model)
}

/// What a decoder made of a stream: its chunks, and the provider error that ended it, if any.
#[derive(Debug, PartialEq)]
struct Decoded {
    chunks: Vec<StreamChunk>,
    error: Option<ProviderError>,
}

impl Decoded {
    fn content(&self) -> String {
        self.chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.content.as_deref()).collect()
    }
}

/// Pushes every event, then finishes, stopping at a provider error as the gateway does.
fn decode(name: &str, events: &[SseEvent]) -> Result<Decoded, PluginFault> {
    let (plugin, model) = plugin(name);
    SHIPPED.tokio.block_on(async {
        let mut decoder = plugin.instantiate().await?.stream_decoder(model).await?;
        let mut chunks = Vec::new();
        for event in events {
            match decoder.push(event).await? {
                Ok(more) => chunks.extend(more),
                Err(error) => return Ok(Decoded { chunks, error: Some(error) }),
            }
        }
        match decoder.finish().await? {
            Ok(more) => chunks.extend(more),
            Err(error) => return Ok(Decoded { chunks, error: Some(error) }),
        }
        Ok(Decoded { chunks, error: None })
    })
}

/// Frames `bytes`, delivered in reads cut at `cuts`, into events as the gateway does.
fn frame(bytes: &[u8], cuts: &[Index]) -> Vec<SseEvent> {
    let mut offsets: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    offsets.extend([0, bytes.len()]);
    offsets.sort_unstable();
    offsets.dedup();
    let reads: Vec<Result<Bytes, Infallible>> =
        offsets.windows(2).map(|w| Ok(Bytes::copy_from_slice(&bytes[w[0]..w[1]]))).collect();
    let events = futures_util::stream::iter(reads).eventsource().collect::<Vec<_>>();
    SHIPPED
        .tokio
        .block_on(events)
        .into_iter()
        .map(|event| {
            let event = event.unwrap();
            SseEvent { event: (event.event != "message").then_some(event.event), data: event.data }
        })
        .collect()
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(path)).unwrap()
}

const RECORDED: &[(&str, &str)] = &[
    ("qwen", "qwen/stream/response.sse"),
    ("qwen", "qwen/stream-moderated/response.sse"),
    ("openai", "openai/stream/response.sse"),
    ("openai", "openai/stream-refusal/response.sse"),
    ("anthropic", "anthropic/stream/response.sse"),
    ("anthropic", "anthropic/stream-tool-use/response.sse"),
    ("anthropic", "anthropic/stream-overloaded/response.sse"),
];

/// Keys of the providers' chunks, so generated JSON reaches the decoders' branches.
const KEYS: &[&str] = &[
    "id",
    "model",
    "created",
    "choices",
    "index",
    "delta",
    "role",
    "content",
    "reasoning_content",
    "refusal",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "error",
    "code",
    "message",
    "type",
    "content_block",
    "text",
    "thinking",
    "partial_json",
    "input",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
];

const NAMES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "tool_use",
    "assistant",
    "stop",
    "[DONE]",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![proptest::sample::select(NAMES).prop_map(str::to_owned), "\\PC{0,10}"].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        let key = prop_oneof![3 => proptest::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,6}"];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6).prop_map(|e| Value::Object(e.into_iter().collect())),
        ]
    })
}

/// The data of a recorded event with the value at a random path replaced.
fn damaged_recorded_data() -> impl Strategy<Value = String> {
    let recorded: Vec<Value> = RECORDED
        .iter()
        .flat_map(|(_, path)| aigate_plugins::conformance::sse_events(&String::from_utf8_lossy(&fixture(path))))
        .filter_map(|e| serde_json::from_str(&e.data).ok())
        .collect();
    (proptest::sample::select(recorded), proptest::collection::vec(any::<Index>(), 1..5), json_value()).prop_map(
        |(mut value, path, replacement)| {
            *descend(&mut value, &path) = replacement;
            value.to_string()
        },
    )
}

/// The value `path` leads to, stopping where there is nothing to descend into.
fn descend<'a>(value: &'a mut Value, path: &[Index]) -> &'a mut Value {
    let Some((step, rest)) = path.split_first() else { return value };
    let len = match &*value {
        Value::Object(map) => map.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if len == 0 {
        return value;
    }
    let n = step.index(len);
    let child = match value {
        Value::Object(map) => map.values_mut().nth(n),
        Value::Array(items) => items.get_mut(n),
        _ => None,
    };
    descend(child.unwrap(), rest)
}

fn event() -> impl Strategy<Value = SseEvent> {
    let name = proptest::option::of(prop_oneof![proptest::sample::select(NAMES).prop_map(str::to_owned), "\\PC{0,8}"]);
    let data = prop_oneof![
        1 => Just(String::new()),
        1 => Just("[DONE]".to_owned()),
        1 => "\\PC{0,40}",
        1 => json_value().prop_map(|v| v.to_string()),
        3 => damaged_recorded_data(),
    ];
    (name, data).prop_map(|(event, data)| SseEvent { event, data })
}

/// A valid stream of `pieces` of text in the plugin's wire format.
fn valid_stream(plugin: &str, pieces: &[String], crlf: bool) -> Vec<u8> {
    let mut events: Vec<(Option<&str>, Value)> = Vec::new();
    if plugin == "anthropic" {
        let start = json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 3, "output_tokens": 1}}});
        events.push((Some("message_start"), start));
        let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
        events.push((Some("content_block_start"), block));
        for piece in pieces {
            let delta =
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
            events.push((Some("content_block_delta"), delta));
        }
        let end = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}});
        events.push((Some("message_delta"), end));
        events.push((Some("message_stop"), json!({"type": "message_stop"})));
    } else {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        events.push((None, chunk(json!({"role": "assistant", "content": ""}), Value::Null)));
        for piece in pieces {
            events.push((None, chunk(json!({"content": piece}), Value::Null)));
        }
        events.push((None, chunk(json!({}), json!("stop"))));
    }
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = format!(": keep-alive{eol}{eol}");
    for (name, data) in events {
        if let Some(name) = name {
            text.push_str(&format!("event: {name}{eol}"));
        }
        text.push_str(&format!("data: {data}{eol}{eol}"));
    }
    if plugin != "anthropic" {
        text.push_str(&format!("data: [DONE]{eol}{eol}"));
    }
    text.into_bytes()
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    proptest::collection::vec(any::<Index>(), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn arbitrary_events_never_fault_a_decoder(events in proptest::collection::vec(event(), 1..6)) {
        for name in ["qwen", "openai", "anthropic"] {
            match decode(name, &events) {
                Ok(decoded) => {
                    if let Some(error) = decoded.error {
                        prop_assert!((100..=599).contains(&error.status), "{error:?}");
                    }
                }
                Err(fault) => return Err(TestCaseError::fail(format!("{name} faulted on {events:?}: {fault}"))),
            }
        }
    }

    #[test]
    fn a_recorded_stream_decodes_the_same_however_it_is_cut(recorded in proptest::sample::select(RECORDED), cuts in cuts()) {
        let (name, path) = recorded;
        let bytes = fixture(path);
        let whole = decode(name, &frame(&bytes, &[])).unwrap();
        prop_assert_eq!(decode(name, &frame(&bytes, &cuts)).unwrap(), whole);
    }

    #[test]
    fn a_valid_stream_decodes_to_its_text_however_it_is_cut(
        name in proptest::sample::select(&["qwen", "openai", "anthropic"][..]),
        pieces in proptest::collection::vec("\\PC{1,12}", 1..6),
        crlf in any::<bool>(),
        cuts in cuts(),
    ) {
        let bytes = valid_stream(name, &pieces, crlf);
        let whole = decode(name, &frame(&bytes, &[])).unwrap();
        prop_assert_eq!(whole.error.as_ref(), None);
        prop_assert_eq!(whole.content(), pieces.concat());
        prop_assert_eq!(decode(name, &frame(&bytes, &cuts)).unwrap(), whole);
    }
}

/// The gateway's framing and the checker's (`conformance::sse_events`, which `aigate plugin
/// check` feeds the fixtures with) agree on every recorded stream.
#[test]
fn the_checker_frames_recorded_streams_like_the_gateway() {
    for (_, path) in RECORDED {
        let bytes = fixture(path);
        let checker = aigate_plugins::conformance::sse_events(&String::from_utf8_lossy(&bytes));
        assert_eq!(frame(&bytes, &[]), checker, "{path}");
    }
}
