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
    let config = RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), ..config() };
    let runtime = PluginRuntime::new(config.clone()).unwrap();

    let first = runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap();
    assert!(!first.from_cache());
    let files = cwasm_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with(first.hash()));

    let second = runtime.load_bytes("renamed.wasm".into(), bytes("qwen.wasm")).await.unwrap();
    assert!(second.from_cache(), "same bytes, another name: still a cache hit");
    assert_eq!(second.hash(), first.hash());
    let mut instance = second.instantiate().await.unwrap();
    instance.build_request("https://x.example/v1", &chat_request("qwen-plus")).await.unwrap().unwrap();

    // A new engine with the same settings (a restart) uses the cache too.
    let restarted = PluginRuntime::new(config).unwrap();
    assert!(restarted.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap().from_cache());
}

#[tokio::test]
async fn a_corrupted_cache_file_falls_back_to_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), ..config() }).unwrap();
    runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap();
    let files = cwasm_files(dir.path());
    std::fs::write(&files[0], b"definitely not a compiled component").unwrap();

    let plugin = runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap();
    assert!(!plugin.from_cache());
    let mut instance = plugin.instantiate().await.unwrap();
    instance.build_request("https://x.example/v1", &chat_request("qwen-plus")).await.unwrap().unwrap();
    // The bad file was replaced by a good one.
    assert!(runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap().from_cache());
    assert_eq!(cwasm_files(dir.path()), files, "no temp files left behind");
}

#[tokio::test]
async fn without_a_cache_folder_nothing_is_written() {
    let runtime = PluginRuntime::new(RuntimeConfig { cache_dir: None, ..config() }).unwrap();
    let plugin = runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap();
    assert!(!plugin.from_cache());
}

/// A compiled component planted in the cache under a trusted plugin's name (here faulty's code
/// as qwen's entry) never runs: its MAC does not verify, so qwen is compiled from its `.wasm`
/// again and the entry rewritten.
#[tokio::test]
async fn a_planted_cache_entry_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = cached_runtime(dir.path());
    let qwen = runtime.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap();
    let faulty = runtime.load_bytes("faulty.wasm".into(), bytes("test/faulty.wasm")).await.unwrap();
    let entry = |hash: &str| {
        cwasm_files(dir.path())
            .into_iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(hash))
            .unwrap()
    };
    let (qwen_entry, faulty_entry) = (entry(qwen.hash()), entry(faulty.hash()));

    // A whole entry of another plugin, and one with its compiled code unsigned.
    let faulty_file = std::fs::read(&faulty_entry).unwrap();
    let unsigned = faulty_file[..faulty_file.len() - 32].to_vec();
    for planted in [faulty_file.clone(), unsigned] {
        std::fs::write(&qwen_entry, planted).unwrap();
        let restarted = cached_runtime(dir.path());
        let loaded = restarted.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap();
        assert_eq!(loaded.name(), "qwen", "the planted code did not run");
        assert!(!loaded.from_cache());
        assert_ne!(std::fs::read(&qwen_entry).unwrap(), faulty_file, "the entry was rewritten");
    }

    // Another installation (another key beside the folder) cannot use this one's entries.
    let mut key_file = dir.path().as_os_str().to_owned();
    key_file.push(".key");
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 32);
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let other = cached_runtime(dir.path());
    assert!(!other.load_bytes("qwen.wasm".into(), bytes("qwen.wasm")).await.unwrap().from_cache());
}

fn cached_runtime(dir: &std::path::Path) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig { cache_dir: Some(dir.to_path_buf()), ..config() }).unwrap()
}
