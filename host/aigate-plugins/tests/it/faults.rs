//! Every fault of `test/faulty.wasm` becomes the right `PluginFault`, poisons only the instance
//! that hit it, and leaves fresh instances (of the same plugin and of another) working.

use std::sync::Arc;
use std::time::Duration;

use aigate_plugins::canonical::{HttpResponse, SseEvent};
use aigate_plugins::{LoadedPlugin, PluginFault, PluginRuntime, RuntimeConfig};

use crate::support::{chat_request, config, dist};

const BASE_URL: &str = "https://api.example.com/v1";

async fn load(runtime: &PluginRuntime, file: &str) -> Arc<LoadedPlugin> {
    runtime.load(&dist(file)).await.unwrap()
}

/// `build_request` with `model` must fail with a fault `expected` accepts; the instance is then
/// poisoned, and fresh instances of faulty (normal model) and of qwen still work.
async fn assert_build_fault(
    config: RuntimeConfig,
    model: &str,
    expected: impl Fn(&PluginFault) -> bool,
) -> PluginFault {
    let runtime = PluginRuntime::new(config).unwrap();
    let faulty = load(&runtime, "test/faulty.wasm").await;
    let qwen = load(&runtime, "qwen.wasm").await;

    let mut instance = faulty.instantiate().await.unwrap();
    let fault = instance.build_request(BASE_URL, &chat_request(model)).await.unwrap_err();
    eprintln!("model {model}: {fault}");
    assert!(expected(&fault), "model {model}: unexpected fault {fault:?}");
    assert_eq!(fault.plugin(), faulty.name());
    assert!(fault.to_string().contains(faulty.name()), "{fault}");

    // Poisoned: the same fault again, without entering the plugin.
    let again = instance.build_request(BASE_URL, &chat_request("gpt-4o")).await.unwrap_err();
    assert_eq!(again, fault);

    let mut fresh = faulty.instantiate().await.unwrap();
    fresh.build_request(BASE_URL, &chat_request("gpt-4o")).await.unwrap().unwrap();
    let mut other = qwen.instantiate().await.unwrap();
    other.build_request(BASE_URL, &chat_request("qwen-plus")).await.unwrap().unwrap();
    fault
}

#[tokio::test]
async fn a_panic_is_a_trap_with_the_panic_message() {
    let fault = assert_build_fault(config(), "trap", |f| matches!(f, PluginFault::Trap { .. })).await;
    let PluginFault::Trap { message, .. } = &fault else { unreachable!() };
    assert!(message.contains("panicked"), "the captured panic message is reported: {message}");
}

#[tokio::test]
async fn an_endless_loop_hits_the_cpu_budget() {
    let config = RuntimeConfig { cpu_timeout: Duration::from_millis(100), ..config() };
    let fault = assert_build_fault(config, "loop", |f| matches!(f, PluginFault::CpuTimeout { .. })).await;
    assert!(fault.to_string().contains("100ms"), "{fault}");
}

#[tokio::test]
async fn the_wall_clock_timeout_applies_when_the_cpu_budget_is_larger() {
    let config =
        RuntimeConfig { cpu_timeout: Duration::from_secs(60), wall_timeout: Duration::from_millis(300), ..config() };
    let started = std::time::Instant::now();
    assert_build_fault(config, "loop", |f| matches!(f, PluginFault::WallTimeout { .. })).await;
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn growing_past_the_memory_limit_is_out_of_memory() {
    let config = RuntimeConfig { memory_limit_bytes: 16 << 20, ..config() };
    let fault = assert_build_fault(config, "oom", |f| matches!(f, PluginFault::OutOfMemory { .. })).await;
    assert!(fault.to_string().contains("16 MiB"), "{fault}");
}

#[tokio::test]
async fn a_result_breaking_the_contract_is_malformed() {
    assert_build_fault(config(), "garbage", |f| matches!(f, PluginFault::Malformed { .. })).await;
}

#[tokio::test]
async fn a_trap_while_parsing_a_response_is_a_trap() {
    let runtime = PluginRuntime::new(config()).unwrap();
    let faulty = load(&runtime, "test/faulty.wasm").await;
    let mut instance = faulty.instantiate().await.unwrap();
    let response = HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"id":"x","object":"chat.completion","created":1,"model":"parse-trap","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#.to_vec(),
    };
    let fault = instance.parse_response(&response).await.unwrap_err();
    assert!(matches!(&fault, PluginFault::Trap { message, .. } if message.contains("panicked")), "{fault:?}");
}

#[tokio::test]
async fn a_trap_inside_a_stream_poisons_only_that_stream() {
    let runtime = PluginRuntime::new(config()).unwrap();
    let faulty = load(&runtime, "test/faulty.wasm").await;
    let event = SseEvent {
        event: None,
        data: r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"stream-trap","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}"#.into(),
    };
    // The fault may come from the constructor or from the first push.
    let fault = match faulty.instantiate().await.unwrap().stream_decoder("stream-trap").await {
        Err(fault) => fault,
        Ok(mut decoder) => {
            let fault = decoder.push(&event).await.unwrap_err();
            assert_eq!(decoder.finish().await.unwrap_err(), fault, "the decoder stays poisoned");
            fault
        }
    };
    assert!(matches!(&fault, PluginFault::Trap { message, .. } if message.contains("panicked")), "{fault:?}");

    let mut healthy = faulty.instantiate().await.unwrap().stream_decoder("gpt-4o").await.unwrap();
    healthy.push(&event).await.unwrap().unwrap();
}

#[tokio::test]
async fn no_free_slot_is_busy_until_an_instance_is_dropped() {
    let runtime = PluginRuntime::new(RuntimeConfig { max_instances: 2, ..config() }).unwrap();
    let qwen = load(&runtime, "qwen.wasm").await;
    let first = qwen.instantiate().await.unwrap();
    let _second = qwen.instantiate().await.unwrap();
    let fault = qwen.instantiate().await.unwrap_err();
    assert!(matches!(fault, PluginFault::Busy { .. }), "{fault:?}");
    assert!(fault.is_retryable());
    drop(first);
    qwen.instantiate().await.unwrap();
}

#[tokio::test]
async fn a_spinning_plugin_does_not_block_its_thread() {
    // On a single-threaded runtime, a plugin in an endless loop must still let a timer fire:
    // the epoch callback yields every tick.
    let runtime = PluginRuntime::new(RuntimeConfig { cpu_timeout: Duration::from_secs(2), ..config() }).unwrap();
    let faulty = load(&runtime, "test/faulty.wasm").await;
    let mut instance = faulty.instantiate().await.unwrap();
    let request = chat_request("loop");
    let spinning = instance.build_request(BASE_URL, &request);
    let ticked = tokio::time::sleep(Duration::from_millis(50));
    tokio::select! {
        _ = spinning => panic!("the loop should run for its whole budget"),
        () = ticked => {}
    }
}

/// Plugins see a fixed clock and fixed random: the same in every instance and every runtime,
/// wall clock at the Unix epoch, and no time passing (no timing channel).
#[tokio::test]
async fn plugins_see_no_real_clock_or_random() {
    let mut seen = Vec::new();
    for _ in 0..2 {
        let runtime = PluginRuntime::new(config()).unwrap();
        let faulty = load(&runtime, "test/faulty.wasm").await;
        for _ in 0..2 {
            let mut instance = faulty.instantiate().await.unwrap();
            let senses = instance.build_request(BASE_URL, &chat_request("senses")).await.unwrap().unwrap_err();
            seen.push(senses.message);
        }
    }
    assert!(seen[0].starts_with("wall=0 elapsed=0 random="), "{seen:?}");
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
}

/// The sandbox of a request starts fresh even on a reused slot: with one slot, every instance
/// takes the memory the previous one wrote its marker into (a static in the module's data, and
/// both ends of a 4 MiB heap block: one end in the part of the slot kept resident and reset in
/// place, the other beyond it), and none of it may show.
#[tokio::test]
async fn a_value_written_by_one_request_is_not_visible_to_the_next_on_the_same_slot() {
    let runtime = PluginRuntime::new(RuntimeConfig { max_instances: 1, ..config() }).unwrap();
    let faulty = load(&runtime, "test/faulty.wasm").await;
    let seen = |request: &aigate_plugins::canonical::HttpRequest| {
        request
            .headers
            .iter()
            .find(|(name, _)| name == "x-faulty-seen")
            .map(|(_, value)| value.clone())
            .expect("the marker model reports what it saw")
    };
    for round in 0..3 {
        let mut instance = faulty.instantiate().await.unwrap();
        // The slot is reused: a second instance cannot exist meanwhile.
        assert!(matches!(faulty.instantiate().await.unwrap_err(), PluginFault::Busy { .. }));
        let request = instance.build_request(BASE_URL, &chat_request("marker")).await.unwrap().unwrap();
        assert_eq!(
            seen(&request),
            "static=0x0 heap-low=0x0 heap-high=0x0",
            "round {round}: the previous request's marker is visible"
        );
        // Within one request the memory is the plugin's own: a second call sees the marker.
        let again = instance.build_request(BASE_URL, &chat_request("marker")).await.unwrap().unwrap();
        assert!(seen(&again).starts_with("static=0x5ec2e7edda7a0001"), "{}", seen(&again));
    }
}
