//! `cargo xtask new-plugin NAME`: a new provider plugin crate that builds and
//! passes `aigate plugin check` as generated, and `scaffold-test`, which proves
//! that on a copy of the repository.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{artifact, build_plugins_into, cargo, workspace_members};

/// Creates `plugins/NAME/` (manifest, `src/lib.rs`, README), `fixtures/NAME/basic/`
/// and adds the crate to the plugins workspace.
pub fn new_plugin(root: &Path, name: &str) -> Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!("plugin name `{name}`: use lowercase letters, digits and `-`, starting with a letter (it is the model prefix clients write: `{name}:model`)");
    }
    let plugins = root.join("plugins");
    let manifest_path = plugins.join("Cargo.toml");
    let manifest = fs::read_to_string(&manifest_path).context("cannot read plugins/Cargo.toml")?;
    let members = workspace_members(&manifest)?;
    let dir = plugins.join(name);
    if dir.exists() || members.iter().any(|m| m == name) {
        bail!("plugins/{name} already exists");
    }

    let write = |path: PathBuf, text: String| -> Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let fill = |template: &str| template.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_"));
    write(dir.join("Cargo.toml"), fill(CARGO_TOML))?;
    write(dir.join("src/lib.rs"), fill(LIB_RS))?;
    write(dir.join("README.md"), fill(README))?;
    let fixtures = root.join("fixtures").join(name).join("basic");
    write(fixtures.join("request.json"), fill(FIXTURE_REQUEST))?;
    write(fixtures.join("expected_upstream.json"), fill(FIXTURE_UPSTREAM))?;
    write(fixtures.join("response.json"), fill(FIXTURE_RESPONSE))?;
    write(fixtures.join("expected.json"), fill(FIXTURE_EXPECTED))?;

    // Append to `members = [...]`, keeping the rest of the manifest as written.
    let start = manifest.find("members").context("no members")?;
    let close = start + manifest[start..].find(']').context("`members` is not closed")?;
    let before = manifest[..close].trim_end();
    let separator = if before.ends_with('[') || before.ends_with(',') { " " } else { ", " };
    let updated = format!("{before}{separator}\"{name}\"{}", &manifest[close..]);
    fs::write(&manifest_path, updated).context("cannot update plugins/Cargo.toml")?;

    println!("created plugins/{name}/ (Cargo.toml, src/lib.rs, README.md) and fixtures/{name}/basic/");
    println!("added `{name}` to the plugins workspace members");
    println!("next: cargo xtask build-plugins && cargo run -p aigate -- plugin check plugins/dist/{}", artifact(name));
    Ok(())
}

/// The acceptance test of the scaffold, on a copy so the real tree is
/// untouched: `new-plugin demo`, `build-plugins`, then `aigate plugin check`
/// on `demo.wasm` must pass. Compiled dependencies come from the real
/// `plugins/target`, so this takes seconds once the plugins were built.
pub fn scaffold_test(root: &Path) -> Result<()> {
    let temp = std::env::temp_dir().join(format!("aigate-scaffold-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&temp);
    let result = (|| -> Result<()> {
        for folder in ["plugins", "wit", "fixtures"] {
            copy_tree(&root.join(folder), &temp.join(folder))?;
        }
        new_plugin(&temp, "demo")?;
        build_plugins_into(&temp, &root.join("plugins").join("target"))?;
        let wasm = temp.join("plugins/dist").join(artifact("demo"));
        let output = cargo(root)
            .args(["run", "--quiet", "--package", "aigate", "--", "plugin", "check"])
            .arg(&wasm)
            .arg("--fixtures")
            .arg(temp.join("fixtures"))
            .output()
            .context("cannot run aigate plugin check")?;
        let report = String::from_utf8_lossy(&output.stdout);
        println!("{report}");
        if !output.status.success() {
            bail!("`aigate plugin check` failed on the fresh scaffold:\n{report}{}", String::from_utf8_lossy(&output.stderr));
        }
        if !report.contains("PASS demo/basic/build-request") || !report.contains("PASS demo/basic/parse-response") {
            bail!("the scaffold's own fixtures did not run:\n{report}");
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&temp);
    result?;
    println!("scaffold test: new-plugin demo builds and passes `aigate plugin check`");
    Ok(())
}

/// Copies a folder, skipping build output (`target`, `dist`).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if name == "target" || name == "dist" {
                continue;
            }
            copy_tree(&path, &to.join(&name))?;
        } else {
            fs::copy(&path, to.join(&name)).with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{{name}}"
description = "AIGate provider plugin: {{name}} (OpenAI-compatible Chat Completions)"
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
aigate-plugin-sdk.workspace = true

[lints]
workspace = true
"#;

const LIB_RS: &str = r#"//! AIGate provider plugin `{{name}}`: a provider that speaks OpenAI's Chat
//! Completions API (the SDK's `openai_compat` translation does the work).
//!
//! Adapt it to your provider by changing the constants below: the default
//! base URL, the auth scheme, the models, and the [`Dialect`] (which error
//! codes are retryable or billing states, which request key carries
//! `max_tokens`, ...). For a provider with a different wire format, implement
//! the `Provider` functions yourself (see the anthropic plugin).
//!
//! Check it with `cargo xtask build-plugins` and
//! `aigate plugin check plugins/dist/{{crate}}.wasm` (fixtures in `fixtures/{{name}}/`).

use aigate_plugin_sdk::openai_compat::{Dialect, StreamDecoder};
use aigate_plugin_sdk::types::{
    AuthScheme, ChatRequest, ChatResponse, HttpRequest, HttpResponse, ModelInfo, PluginInfo, ProviderError,
};
use aigate_plugin_sdk::{CONTRACT_VERSION, Provider, export_plugin, plugin_version};

/// Where the provider lives unless the operator configures another base URL.
const DEFAULT_BASE_URL: &str = "http://localhost:8000/v1";

/// OpenAI's rules. Override fields for your provider, e.g.
/// `Dialect { developer_as_system: true, ..Dialect::OPENAI }`.
const DIALECT: Dialect = Dialect::OPENAI;

struct Plugin;

impl Provider for Plugin {
    type Decoder = StreamDecoder;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: plugin_version!().to_string(),
            contract_version: CONTRACT_VERSION.to_string(),
            default_base_url: DEFAULT_BASE_URL.to_string(),
            auth: AuthScheme::Bearer,
            models: vec![ModelInfo {
                id: "{{name}}-chat".to_string(),
                context_window: Some(32_768),
                max_output_tokens: Some(4_096),
            }],
        }
    }

    fn build_request(base_url: &str, request: ChatRequest) -> Result<HttpRequest, ProviderError> {
        DIALECT.build_chat_request(base_url, &request)
    }

    fn parse_response(response: HttpResponse) -> Result<ChatResponse, ProviderError> {
        DIALECT.parse_chat_response(&response)
    }

    fn build_models_request(base_url: &str) -> Option<HttpRequest> {
        Some(DIALECT.build_models_request(base_url))
    }

    fn parse_models(response: HttpResponse) -> Result<Vec<ModelInfo>, ProviderError> {
        DIALECT.parse_models(&response, &Self::describe().models)
    }

    fn stream_decoder(model: String) -> StreamDecoder {
        DIALECT.stream_decoder(model)
    }
}

export_plugin!(Plugin);

#[cfg(test)]
mod tests {
    use aigate_plugin_sdk::types::{Message, Role};

    use super::*;

    #[test]
    fn builds_a_chat_request() {
        let request = ChatRequest::new("{{name}}-chat", vec![Message::text(Role::User, "Hello")]);
        let http = Plugin::build_request(DEFAULT_BASE_URL, request);
        assert!(matches!(http, Ok(ref http) if http.url.ends_with("/chat/completions")), "{http:?}");
    }
}
"#;

const README: &str = r#"# `{{name}}`: an AIGate provider plugin

Generated by `cargo xtask new-plugin {{name}}`: an OpenAI-compatible provider on
`aigate-plugin-sdk`. Clients reach it as `{{name}}:<model>`.

```sh
cargo xtask build-plugins                                   # -> plugins/dist/{{crate}}.wasm
cargo run -p aigate -- plugin check plugins/dist/{{crate}}.wasm   # conformance: generic + fixtures/{{name}}/
cd plugins && cargo test -p {{name}}                        # unit tests on the host target
```

Add fixtures for your provider's real responses under `fixtures/{{name}}/<case>/`
and see `docs/plugins.md` for the contract, the sandbox and hot reload.
"#;

const FIXTURE_REQUEST: &str = r#"{
  "model": "{{name}}-chat",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hi"}
  ],
  "max_tokens": 16,
  "temperature": 0.5
}
"#;

const FIXTURE_UPSTREAM: &str = r#"{
  "method": "POST",
  "url_suffix": "/chat/completions",
  "headers": {"content-type": "application/json"},
  "body": {
    "model": "{{name}}-chat",
    "messages": [
      {"role": "system", "content": "You are terse."},
      {"role": "user", "content": "Say hi"}
    ],
    "max_tokens": 16,
    "temperature": 0.5
  }
}
"#;

const FIXTURE_RESPONSE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"{{name}}-chat","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}
"#;

const FIXTURE_EXPECTED: &str = r#"{
  "id": "chatcmpl-1",
  "model": "{{name}}-chat",
  "choices": [
    {"index": 0, "message": {"content": "Hi!", "tool_calls": []}, "finish_reason": "stop"}
  ],
  "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
}
"#;
