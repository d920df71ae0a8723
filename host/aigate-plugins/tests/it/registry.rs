//! The registry and its folder watcher, on a temp folder. Waits poll with a deadline.

use std::path::Path;
use std::sync::Arc;

use aigate_plugins::{PluginRegistry, PluginStatus};

use crate::support::{RELOAD_TIMEOUT, bytes, chat_request, eventually, runtime};

const NEXT_VERSION: &str = "0.1.1-next";

fn status(registry: &PluginRegistry, file: &str) -> Option<PluginStatus> {
    registry.statuses().into_iter().find(|s| s.file == file)
}

fn version_of(registry: &PluginRegistry, name: &str) -> Option<String> {
    registry.get(name).map(|p| p.version().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_dir_loads_plugins_and_records_refusals() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qwen.wasm"), bytes("qwen.wasm")).unwrap();
    std::fs::write(dir.path().join("openai.wasm"), bytes("openai.wasm")).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    std::fs::create_dir(dir.path().join("sub.wasm")).unwrap();

    let registry = PluginRegistry::new(runtime());
    assert_eq!(registry.load_dir(dir.path()).await, 2);

    let mut names: Vec<String> = registry.plugins().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["openai", "qwen"]);

    let statuses = registry.statuses();
    let files: Vec<&str> = statuses.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files, ["broken.wasm", "openai.wasm", "qwen.wasm"], "sorted by file name");
    let broken = &statuses[0];
    assert_eq!(broken.state, "refused");
    assert!(broken.name.is_none() && broken.last_error.is_some() && broken.last_error_at.is_some());
    let qwen = &statuses[2];
    assert_eq!(qwen.state, "serving");
    assert_eq!(qwen.name.as_deref(), Some("qwen"));
    assert!(qwen.hash.is_some() && qwen.loaded_at.is_some() && qwen.last_error.is_none());
    assert!(qwen.contract_version.is_some());
    // The status is what an admin endpoint serialises.
    let json = serde_json::to_value(qwen).unwrap();
    assert_eq!(json["state"], "serving");

    // A rescan after removing a file unloads it.
    std::fs::remove_file(dir.path().join("openai.wasm")).unwrap();
    assert_eq!(registry.load_dir(dir.path()).await, 1);
    assert!(registry.get("openai").is_none());
}

/// In-place writes, renames into the folder, a broken file, and removal, all seen by the
/// watcher; in-flight users keep the version they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reloads_refuses_and_unloads() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let file = dir.path().join("qwen.wasm");
    std::fs::write(&file, bytes("qwen.wasm")).unwrap();

    let registry = PluginRegistry::new(runtime());
    let _watch = registry.watch(dir.path()).unwrap();
    assert_eq!(registry.load_dir(dir.path()).await, 1);
    let original = registry.get("qwen").unwrap();
    let original_version = original.version().to_owned();
    assert_ne!(original_version, NEXT_VERSION);
    let mut in_flight = original.instantiate().await.unwrap();

    // 1. In-place write of a new version (truncate + write: Modify(Data) then Close(Write)).
    write_in_place(&file, &bytes("test/qwen-next.wasm"));
    eventually("the in-place write is served", RELOAD_TIMEOUT, || {
        version_of(&registry, "qwen").as_deref() == Some(NEXT_VERSION)
    })
    .await;
    // The request that started on the old version finishes on it.
    in_flight.build_request("https://x.example/v1", &chat_request("qwen-plus")).await.unwrap().unwrap();
    assert_eq!(in_flight.plugin().version(), original_version);

    // 2. Rename in (only Modify(Name) events): back to the original version.
    let staged = outside.path().join("qwen.wasm");
    std::fs::write(&staged, bytes("qwen.wasm")).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    eventually("the renamed-in file is served", RELOAD_TIMEOUT, || {
        version_of(&registry, "qwen").as_deref() == Some(original_version.as_str())
    })
    .await;

    // 3. A broken file is refused; the previous version keeps serving, and the status shows
    //    both.
    write_in_place(&file, b"\0asm\x0d\0\x01\0 broken");
    eventually("the broken file is refused", RELOAD_TIMEOUT, || {
        status(&registry, "qwen.wasm").is_some_and(|s| s.last_error.is_some())
    })
    .await;
    let refused = status(&registry, "qwen.wasm").unwrap();
    assert_eq!(refused.state, "serving");
    assert_eq!(refused.version.as_deref(), Some(original_version.as_str()));
    let still = registry.get("qwen").unwrap();
    still
        .instantiate()
        .await
        .unwrap()
        .build_request("https://x.example/v1", &chat_request("q"))
        .await
        .unwrap()
        .unwrap();

    // 4. Removing the file unloads the plugin and its status.
    std::fs::remove_file(&file).unwrap();
    eventually("the removed file is unloaded", RELOAD_TIMEOUT, || {
        registry.get("qwen").is_none() && status(&registry, "qwen.wasm").is_none()
    })
    .await;
}

/// Two files describing the same plugin name: the second is refused, naming the owner; when the
/// owner goes, the second takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_belongs_to_one_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qwen.wasm"), bytes("qwen.wasm")).unwrap();
    let registry = PluginRegistry::new(runtime());
    let _watch = registry.watch(dir.path()).unwrap();
    assert_eq!(registry.load_dir(dir.path()).await, 1);

    std::fs::write(dir.path().join("qwen-next.wasm"), bytes("test/qwen-next.wasm")).unwrap();
    eventually("the second file is refused", RELOAD_TIMEOUT, || {
        status(&registry, "qwen-next.wasm").is_some_and(|s| s.state == "refused")
    })
    .await;
    let refused = status(&registry, "qwen-next.wasm").unwrap();
    assert!(refused.last_error.as_deref().unwrap().contains("qwen.wasm"), "{refused:?}");
    assert_ne!(version_of(&registry, "qwen").as_deref(), Some(NEXT_VERSION));

    std::fs::remove_file(dir.path().join("qwen.wasm")).unwrap();
    eventually("the second file takes the name over", RELOAD_TIMEOUT, || {
        version_of(&registry, "qwen").as_deref() == Some(NEXT_VERSION)
            && status(&registry, "qwen-next.wasm").is_some_and(|s| s.state == "serving" && s.last_error.is_none())
    })
    .await;
}

#[tokio::test]
async fn dropping_the_guard_stops_watching() {
    let dir = tempfile::tempdir().unwrap();
    let registry = PluginRegistry::new(runtime());
    let watch = registry.watch(dir.path()).unwrap();
    drop(watch);
    std::fs::write(dir.path().join("qwen.wasm"), bytes("qwen.wasm")).unwrap();
    tokio::time::sleep(aigate_plugins::DEBOUNCE * 3).await;
    assert!(registry.statuses().is_empty());
    assert!(Arc::strong_count(&registry) == 1, "the watcher task released the registry");
}

fn write_in_place(path: &Path, contents: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    // Several writes, like a copy tool: the watcher must wait for the last one.
    for chunk in contents.chunks(16 * 1024) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
    }
}

/// A file dropped into the folder while the first scan runs (after it listed the folder) is
/// still loaded: `start` watches before it scans. The scan compiles three plugins into an empty
/// cache; the file arrives as soon as the first is compiled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_during_start_up_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    for (from, to) in [("test/faulty.wasm", "faulty.wasm"), ("openai.wasm", "openai.wasm"), ("qwen.wasm", "qwen.wasm")]
    {
        std::fs::write(dir.path().join(to), bytes(from)).unwrap();
    }
    let registry = PluginRegistry::new(
        aigate_plugins::PluginRuntime::new(aigate_plugins::RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..crate::support::config()
        })
        .unwrap(),
    );
    let starting = {
        let registry = Arc::clone(&registry);
        let dir = dir.path().to_path_buf();
        tokio::spawn(async move { registry.start(&dir, true).await.unwrap() })
    };
    let compiled_one = || {
        std::fs::read_dir(cache.path()).unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "cwasm"))
    };
    eventually("the scan compiled its first plugin", RELOAD_TIMEOUT, compiled_one).await;
    let staged = outside.path().join("anthropic.wasm");
    std::fs::write(&staged, bytes("anthropic.wasm")).unwrap();
    std::fs::rename(&staged, dir.path().join("anthropic.wasm")).unwrap();

    let (loaded, _watch) = starting.await.unwrap();
    assert!(loaded >= 3, "{loaded}");
    eventually("the file dropped during start-up serves", RELOAD_TIMEOUT, || registry.get("anthropic").is_some()).await;
}
