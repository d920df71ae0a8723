//! Hot reload under load: a new version copied over, one renamed in, then a
//! broken file; no request fails and the broken file is refused visibly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::harness::{Setup, artifact, chat_body, eventually, start_with};

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicUsize,
    failed: Mutex<Vec<String>>,
    /// The plugin that served the most recently *started* successful request
    /// (an older in-flight request finishing late on the old version must
    /// not count as the current one).
    last_plugin: Mutex<(Option<tokio::time::Instant>, String)>,
}

async fn plugin_state(gw: &crate::harness::TestGateway) -> Value {
    let (_, body) = gw.admin_json("/admin/plugins").await;
    body["data"].as_array().unwrap().iter().find(|p| p["file"] == "qwen.wasm").cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_swaps_under_load_without_failing_a_request() {
    let gw = Arc::new(start_with(Setup { plugins: vec![("qwen.wasm", "qwen.wasm")], ..Default::default() }).await);
    let v1 = std::fs::read(artifact("qwen.wasm")).unwrap();
    let v2 = std::fs::read(artifact("test/qwen-next.wasm")).unwrap();
    let live = gw.plugins_dir.path().join("qwen.wasm");

    let load = Arc::new(Load::default());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gw, load) = (gw.clone(), load.clone());
        clients.push(tokio::spawn(async move {
            while !load.stop.load(Ordering::Relaxed) {
                let started = tokio::time::Instant::now();
                let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
                let status = r.status();
                let plugin =
                    r.headers().get("x-aigate-plugin").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                let body = r.text().await.unwrap_or_default();
                if status == 200 {
                    load.ok.fetch_add(1, Ordering::Relaxed);
                    let mut last = load.last_plugin.lock().await;
                    if last.0.is_none_or(|t| t < started) {
                        *last = (Some(started), plugin);
                    }
                } else {
                    load.failed.lock().await.push(format!("{status}: {body}"));
                }
            }
        }));
    }
    let serving = |version: &'static str| {
        let load = load.clone();
        async move || load.last_plugin.lock().await.1 == format!("qwen@{version}")
    };
    assert!(eventually(Duration::from_secs(5), serving("0.1.0")).await, "starts on 0.1.0");

    // 1. A new version copied over the file in place.
    std::fs::write(&live, &v2).unwrap();
    assert!(eventually(Duration::from_secs(2), serving("0.1.1-next")).await, "copied-in version serves within 2 s");

    // 2. The old version renamed in over it (what deploy tools do).
    let staged = gw.plugins_dir.path().join(".qwen.wasm.partial");
    std::fs::write(&staged, &v1).unwrap();
    std::fs::rename(&staged, &live).unwrap();
    assert!(eventually(Duration::from_secs(2), serving("0.1.0")).await, "renamed-in version serves within 2 s");

    // 3. A broken file: refused, the previous version keeps serving, the error is visible.
    // (An earlier refusal, e.g. of a half-written copy in step 1, may already be
    // recorded: wait for a new one.)
    let earlier = plugin_state(&gw).await["last_error_at"].clone();
    std::fs::write(&live, b"\0asm this is not a component").unwrap();
    let gw2 = gw.clone();
    assert!(
        eventually(Duration::from_secs(5), async || {
            let state = plugin_state(&gw2).await;
            state["last_error"].is_string() && state["last_error_at"] != earlier
        })
        .await,
        "the refusal shows in /admin/plugins"
    );
    let state = plugin_state(&gw).await;
    assert_eq!(state["version"], "0.1.0", "{state}");
    assert_eq!(state["state"], "serving", "{state}");
    let error = state["last_error"].as_str().unwrap_or_default();
    assert!(!error.contains('\n') && error.len() <= 610, "one readable line: {error}");
    let before = load.ok.load(Ordering::Relaxed);
    assert!(eventually(Duration::from_secs(2), async || load.ok.load(Ordering::Relaxed) > before + 5).await);
    assert_eq!(load.last_plugin.lock().await.1, "qwen@0.1.0");

    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failed = load.failed.lock().await;
    assert!(failed.is_empty(), "{} requests failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert!(load.ok.load(Ordering::Relaxed) > 20, "the load really ran");
}

#[tokio::test]
async fn removed_file_unloads_and_new_file_loads() {
    let gw = start_with(Setup { plugins: vec![("qwen.wasm", "qwen.wasm")], ..Default::default() }).await;
    std::fs::remove_file(gw.plugins_dir.path().join("qwen.wasm")).unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || gw.chat(&chat_body("qwen:qwen-turbo")).await.status() == 503).await,
        "a configured provider whose plugin is gone is unavailable"
    );
    std::fs::copy(artifact("openai.wasm"), gw.plugins_dir.path().join("openai.wasm")).unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || gw.chat(&chat_body("openai:qwen-plus")).await.status() == 200)
            .await
    );
}

/// The gateway binary's way of compiling: a child process of its own executable
/// (`aigate __compile-plugin`), here behind a shell that notes each call and the child's
/// environment. The plugin loads, serves, reloads; the cache holds what the child compiled; a
/// file the child refuses keeps the previous version serving; the child sees no environment.
#[tokio::test]
async fn plugins_compiled_in_a_child_process_serve_reload_and_refuse() {
    let calls = tempfile::tempdir().unwrap();
    let log = calls.path().join("calls");
    let script = format!(
        r#"echo call >> '{log}'; env >> '{log}'; exec '{bin}' __compile-plugin "$@""#,
        log = log.display(),
        bin = env!("CARGO_BIN_EXE_aigate"),
    );
    let compiler = aigate_plugins::Compiler::Subprocess {
        program: "sh".into(),
        args: vec!["-c".into(), script.into(), "aigate-compiler".into()],
        timeout: Duration::from_secs(120),
    };
    let gw =
        start_with(Setup { plugins: vec![("qwen.wasm", "qwen.wasm")], compiler: Some(compiler), ..Default::default() })
            .await;
    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-plugin"], "qwen@0.1.0");
    let called = || std::fs::read_to_string(&log).unwrap_or_default().matches("call\n").count();
    assert_eq!(called(), 1, "the one plugin was compiled by the child");

    std::fs::write(gw.plugins_dir.path().join("qwen.wasm"), std::fs::read(artifact("test/qwen-next.wasm")).unwrap())
        .unwrap();
    let next = async || {
        let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
        r.status() == 200 && r.headers()["x-aigate-plugin"] == "qwen@0.1.1-next"
    };
    assert!(eventually(Duration::from_secs(10), next).await, "the new version, compiled by the child, serves");
    assert!(called() >= 2, "the reload compiled in the child too");
    let cached = std::fs::read_dir(gw.data_dir.path().join("plugin-cache")).unwrap().count();
    assert!(cached >= 2, "both compiled versions are in the cache: {cached} files");

    // A file the child cannot compile: refused with the child's reason, 0.1.1-next keeps serving.
    std::fs::write(gw.plugins_dir.path().join("qwen.wasm"), b"\0asm this is not a component").unwrap();
    let refused = async || {
        let (_, body) = gw.admin_json("/admin/plugins").await;
        body["data"].as_array().unwrap().iter().any(|p| {
            p["file"] == "qwen.wasm" && p["last_error"].as_str().is_some_and(|e| e.contains("not a valid WebAssembly"))
        })
    };
    assert!(eventually(Duration::from_secs(10), refused).await, "the refusal is visible");
    assert!(next().await, "the previous version still serves");

    let seen = std::fs::read_to_string(&log).unwrap();
    for secret_bearing in ["QWEN_API_KEY", "DATABASE_URL", "REDIS_URL", "AIGATE_", "HOME="] {
        assert!(!seen.contains(secret_bearing), "the compiler child got `{secret_bearing}` in its environment");
    }
}
