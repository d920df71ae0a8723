//! Trusted loading: only files whose sha256 is on the allowlist load, at start-up and on reload.

use aigate_plugins::PluginRegistry;
use sha2::{Digest, Sha256};

use crate::support::{RELOAD_TIMEOUT, bytes, eventually, runtime};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_hashes_load_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let qwen = bytes("qwen.wasm");
    std::fs::write(dir.path().join("qwen.wasm"), &qwen).unwrap();
    std::fs::write(dir.path().join("openai.wasm"), bytes("openai.wasm")).unwrap();

    // Upper case in the list is accepted: operators paste hashes from many tools.
    let trusted = vec![sha256(&qwen).to_ascii_uppercase()];
    let registry = PluginRegistry::with_trusted_hashes(runtime(), Some(trusted));
    let _watch = registry.watch(dir.path()).unwrap();
    assert_eq!(registry.load_dir(dir.path()).await, 1);
    assert!(registry.get("qwen").is_some());
    assert!(registry.get("openai").is_none());

    let openai_hash = sha256(&bytes("openai.wasm"));
    let status = |file: &str| registry.statuses().into_iter().find(|s| s.file == file).unwrap();
    let refused = status("openai.wasm");
    assert_eq!(refused.state, "refused");
    let error = refused.last_error.unwrap();
    assert!(error.contains(&openai_hash) && error.contains("not in the trusted plugin hashes"), "{error}");

    // A new, untrusted version of a serving file: refused by the watcher, the trusted one serves on.
    let serving_version = registry.get("qwen").unwrap().version().to_owned();
    let next = bytes("test/qwen-next.wasm");
    let staged = outside.path().join("qwen.wasm");
    std::fs::write(&staged, &next).unwrap();
    std::fs::rename(&staged, dir.path().join("qwen.wasm")).unwrap();
    eventually("the untrusted reload is refused", RELOAD_TIMEOUT, || {
        status("qwen.wasm").last_error.is_some_and(|e| e.contains(&sha256(&next)))
    })
    .await;
    let qwen_status = status("qwen.wasm");
    assert_eq!(qwen_status.state, "serving", "the previous trusted version keeps serving");
    assert_eq!(registry.get("qwen").unwrap().version(), serving_version);
    assert_eq!(qwen_status.hash.as_deref(), Some(sha256(&qwen).as_str()));

    // A new untrusted file dropped into the folder is refused too.
    std::fs::write(dir.path().join("extra.wasm"), bytes("test/faulty.wasm")).unwrap();
    eventually("the new untrusted file is refused", RELOAD_TIMEOUT, || {
        registry.statuses().iter().any(|s| s.file == "extra.wasm" && s.state == "refused" && s.last_error.is_some())
    })
    .await;
    assert!(registry.get("faulty").is_none());

    // Putting the trusted content back clears the error.
    std::fs::write(&staged, &qwen).unwrap();
    std::fs::rename(&staged, dir.path().join("qwen.wasm")).unwrap();
    eventually("the trusted content is back", RELOAD_TIMEOUT, || status("qwen.wasm").last_error.is_none()).await;
}

#[tokio::test]
async fn without_an_allowlist_every_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openai.wasm"), bytes("openai.wasm")).unwrap();
    let registry = PluginRegistry::with_trusted_hashes(runtime(), None::<Vec<String>>);
    assert_eq!(registry.load_dir(dir.path()).await, 1);
}
