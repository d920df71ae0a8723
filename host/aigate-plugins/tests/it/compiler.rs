//! A compiler process that fails refuses only the load it was asked for, with a reason, and the
//! runtime goes on. (The real compiler child, `aigate __compile-plugin`, is exercised by the
//! gateway's tests: `host/aigate/tests/it/plugins.rs`.)

use std::time::{Duration, Instant};

use aigate_plugins::{Compiler, LoadError, PluginRuntime, RuntimeConfig};

use crate::support::{bytes, config};

/// A runtime whose compiler is `sh -c SCRIPT`, with no cache (every load compiles).
fn runtime_with(script: &str, timeout: Duration) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        cache_dir: None,
        compiler: Compiler::Subprocess { program: "sh".into(), args: vec!["-c".into(), script.into()], timeout },
        ..config()
    })
    .unwrap()
}

async fn refusal(script: &str, timeout: Duration) -> LoadError {
    let runtime = runtime_with(script, timeout);
    let err = runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap_err();
    assert!(err.to_string().contains("qwen.wasm"), "names the file: {err}");
    err
}

#[tokio::test]
async fn a_compiler_that_crashes_refuses_the_load_and_says_so() {
    let err = refusal("cat >/dev/null; kill -SEGV $$", Duration::from_secs(30)).await;
    assert!(matches!(err, LoadError::Compiler { .. }), "{err}");
    assert!(err.to_string().contains("ended by a signal"), "{err}");
}

#[tokio::test]
async fn a_compiler_that_never_ends_is_stopped_at_its_time_limit() {
    let started = Instant::now();
    let err = refusal("exec sleep 60", Duration::from_millis(300)).await;
    assert!(matches!(err, LoadError::Compiler { .. }), "{err}");
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "stopped, not waited for: {:?}", started.elapsed());
}

#[tokio::test]
async fn garbage_from_the_compiler_is_never_run() {
    let err = refusal("cat >/dev/null; echo 'not machine code'", Duration::from_secs(30)).await;
    assert!(matches!(err, LoadError::Compiler { .. }), "{err}");
    assert!(err.to_string().contains("does not load"), "{err}");
}

#[tokio::test]
async fn a_refusal_by_the_compiler_is_a_compile_error_with_its_reason() {
    // Exit status 3: the child's "this is not a component I can compile" (`compiler::child_main`).
    let err =
        refusal("cat >/dev/null; echo 'failed to parse WebAssembly module' >&2; exit 3", Duration::from_secs(30)).await;
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    assert!(err.to_string().contains("failed to parse WebAssembly module"), "{err}");
}

#[tokio::test]
async fn a_talkative_compiler_cannot_block_on_a_full_pipe() {
    // 1 MiB on stderr, far past what is kept of it: read and dropped, the exit status reported.
    let err =
        refusal("cat >/dev/null; head -c 1048576 /dev/zero | tr '\\0' x >&2; exit 1", Duration::from_secs(30)).await;
    assert!(matches!(err, LoadError::Compiler { .. }), "{err}");
    assert!(err.to_string().contains("exited with status 1"), "{err}");
    assert!(err.to_string().len() < 16 << 10, "the reason is bounded: {} bytes", err.to_string().len());
}
