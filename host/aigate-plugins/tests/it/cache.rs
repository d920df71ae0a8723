use aigate_plugins::{PluginRuntime, RuntimeConfig};

use crate::support::{bytes, chat_request, config};

fn cwasm_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn second_load_of_the_same_bytes_maps_the_cached_component() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    };
    let runtime = PluginRuntime::new(config.clone()).unwrap();

    let first = runtime
        .load_bytes("qwen.wasm".into(), bytes("qwen.wasm"))
        .await
        .unwrap();
    assert!(!first.from_cache());
    let files = cwasm_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(first.hash())
    );

    let second = runtime
        .load_bytes("renamed.wasm".into(), bytes("qwen.wasm"))
        .await
        .unwrap();
    assert!(
        second.from_cache(),
        "same bytes, another name: still a cache hit"
    );
    assert_eq!(second.hash(), first.hash());
    let mut instance = second.instantiate().await.unwrap();
    instance
        .build_request("https://x.example/v1", &chat_request("qwen-plus"))
        .await
        .unwrap()
        .unwrap();

    // A new engine with the same settings (a restart) uses the cache too.
    let restarted = PluginRuntime::new(config).unwrap();
    assert!(
        restarted
            .load_bytes("qwen.wasm".into(), bytes("qwen.wasm"))
            .await
            .unwrap()
            .from_cache()
    );
}

#[tokio::test]
async fn a_corrupted_cache_file_falls_back_to_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    })
    .unwrap();
    runtime
        .load_bytes("qwen.wasm".into(), bytes("qwen.wasm"))
        .await
        .unwrap();
    let files = cwasm_files(dir.path());
    std::fs::write(&files[0], b"definitely not a compiled component").unwrap();

    let plugin = runtime
        .load_bytes("qwen.wasm".into(), bytes("qwen.wasm"))
        .await
        .unwrap();
    assert!(!plugin.from_cache());
    let mut instance = plugin.instantiate().await.unwrap();
    instance
        .build_request("https://x.example/v1", &chat_request("qwen-plus"))
        .await
        .unwrap()
        .unwrap();
    // The bad file was replaced by a good one.
    assert!(
        runtime
            .load_bytes("qwen.wasm".into(), bytes("qwen.wasm"))
            .await
            .unwrap()
            .from_cache()
    );
    assert_eq!(cwasm_files(dir.path()), files, "no temp files left behind");
}

#[tokio::test]
async fn without_a_cache_folder_nothing_is_written() {
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: None,
        ..config()
    })
    .unwrap();
    let plugin = runtime
        .load_bytes("qwen.wasm".into(), bytes("qwen.wasm"))
        .await
        .unwrap();
    assert!(!plugin.from_cache());
}
