use aigate_plugins::{CONTRACT_VERSION, LoadError, contract_compatible};
use sha2::{Digest, Sha256};

use crate::support::{bytes, dist, runtime};

#[tokio::test]
async fn loads_and_describes_a_plugin() {
    let plugin = runtime().load(&dist("qwen.wasm")).await.unwrap();
    assert_eq!(plugin.name(), "qwen");
    assert!(semver::Version::parse(plugin.version()).is_ok(), "{}", plugin.version());
    assert!(contract_compatible(&plugin.info().contract_version));
    assert_eq!(plugin.hash(), hex::encode(Sha256::digest(bytes("qwen.wasm"))));
    assert!(plugin.source().ends_with("qwen.wasm"));
    assert!(plugin.info().default_base_url.starts_with("http"));
}

#[tokio::test]
async fn refuses_bytes_that_are_not_a_component() {
    let err = runtime().load_bytes("junk.wasm".into(), b"\0asm not really".to_vec()).await.unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    assert!(err.to_string().contains("junk.wasm"), "{err}");
}

#[tokio::test]
async fn refuses_a_missing_file() {
    let err = runtime().load(std::path::Path::new("/nonexistent/x.wasm")).await.unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
}

/// A plugin whose `describe` reports another contract version is refused with a message naming
/// both versions. Produced cheaply by patching the contract version text in a real plugin's data
/// (the `@0.x.0` of the component's interface names is left alone, so it still links).
#[tokio::test]
async fn refuses_an_incompatible_contract_version() {
    let patched = patch_contract_version(&bytes("qwen.wasm"));
    let err = runtime().load_bytes("qwen-9.wasm".into(), patched).await.unwrap_err();
    match &err {
        LoadError::IncompatibleContract { plugin_contract, .. } => {
            assert_eq!(plugin_contract, &format!("9{}", &CONTRACT_VERSION[1..]))
        }
        other => panic!("expected IncompatibleContract, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("9{}", &CONTRACT_VERSION[1..])) && message.contains(CONTRACT_VERSION),
        "{message}"
    );
}

fn patch_contract_version(wasm: &[u8]) -> Vec<u8> {
    // Rust packs string constants back to back (`…json0.1.0https://…`), so only the `@` of an
    // interface name tells an occurrence to keep.
    let needle = CONTRACT_VERSION.as_bytes();
    let mut out = wasm.to_vec();
    let mut patched = 0;
    for i in 1..out.len().saturating_sub(needle.len()) {
        if &out[i..i + needle.len()] == needle && out[i - 1] != b'@' {
            out[i] = b'9';
            patched += 1;
        }
    }
    assert!(patched > 0, "no {CONTRACT_VERSION:?} outside interface names in the plugin's bytes");
    out
}
