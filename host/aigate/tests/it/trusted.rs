//! Trusted loading at the gateway: `AIGATE_TRUSTED_PLUGINS` lets only listed files serve, and a
//! refused file is visible in `/admin/plugins`.

use sha2::{Digest, Sha256};

use crate::harness::{Setup, artifact, start_with};

const ADMIN_TOKEN: &str = "admin-token-for-the-trust-test";

fn sha256_of(relative: &str) -> String {
    let bytes = std::fs::read(artifact(relative)).unwrap();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_plugin_files_serve() {
    let mut setup =
        Setup { plugins: vec![("qwen.wasm", "qwen.wasm"), ("openai.wasm", "openai.wasm")], ..Default::default() };
    setup.env.insert("AIGATE_TRUSTED_PLUGINS".to_owned(), sha256_of("qwen.wasm"));
    setup.env.insert("AIGATE_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned());
    let gw = start_with(setup).await;

    let response = gw.http.get(gw.url("/admin/plugins")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let files = body["data"].as_array().unwrap_or_else(|| panic!("{body}"));
    let by_file = |file: &str| files.iter().find(|p| p["file"] == file).cloned().unwrap();
    assert_eq!(by_file("qwen.wasm")["state"], "serving", "{body}");
    let openai = by_file("openai.wasm");
    assert_eq!(openai["state"], "refused", "{body}");
    let error = openai["last_error"].as_str().unwrap();
    assert!(error.contains(&sha256_of("openai.wasm")) && error.contains("not in the trusted plugin hashes"), "{error}");
}
