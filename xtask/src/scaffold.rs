//! `cargo xtask new-plugin NAME [--format openai|custom]`: a new provider
//! plugin crate that builds and passes `aigate plugin check` as generated, and
//! `scaffold-test`, which proves that for both formats on a copy of the
//! repository.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{Selection, artifact, build_plugins_into, cargo, workspace_members};

/// What kind of provider a scaffold starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI's Chat Completions, translated by the SDK's `openai_compat`.
    Openai,
    /// Any other wire format, mapped by hand (`templates/custom/`).
    Custom,
}

impl Format {
    /// `new-plugin`'s arguments: `NAME [--format openai|custom]`.
    pub fn parse_args(args: &[String]) -> Result<(String, Format)> {
        const USAGE: &str = "usage: cargo xtask new-plugin NAME [--format openai|custom]";
        let mut name = None;
        let mut format = Format::Openai;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--format" => {
                    format = match args.next().map(String::as_str) {
                        Some("openai") => Format::Openai,
                        Some("custom") => Format::Custom,
                        other => bail!("--format takes `openai` or `custom`, got {other:?}\n{USAGE}"),
                    }
                }
                flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n{USAGE}"),
                _ if name.is_some() => bail!("one plugin name only\n{USAGE}"),
                _ => name = Some(arg.clone()),
            }
        }
        Ok((name.context(USAGE)?, format))
    }
}

/// The custom scaffold's fixtures: `(case, file, text)`, from `templates/custom/<case>.<file>`.
const CUSTOM_FIXTURES: &[(&str, &str, &str)] = &[
    ("basic", "request.json", include_str!("../templates/custom/basic.request.json")),
    ("basic", "expected_upstream.json", include_str!("../templates/custom/basic.expected_upstream.json")),
    ("basic", "response.json", include_str!("../templates/custom/basic.response.json")),
    ("basic", "expected.json", include_str!("../templates/custom/basic.expected.json")),
    ("max-tokens", "response.json", include_str!("../templates/custom/max-tokens.response.json")),
    ("max-tokens", "expected.json", include_str!("../templates/custom/max-tokens.expected.json")),
    ("stream", "request.json", include_str!("../templates/custom/stream.request.json")),
    ("stream", "response.sse", include_str!("../templates/custom/stream.response.sse")),
    ("stream", "expected.json", include_str!("../templates/custom/stream.expected.json")),
    ("stream-error", "request.json", include_str!("../templates/custom/stream-error.request.json")),
    ("stream-error", "response.sse", include_str!("../templates/custom/stream-error.response.sse")),
    ("stream-error", "expected.json", include_str!("../templates/custom/stream-error.expected.json")),
    ("error-rate-limit", "error.json", include_str!("../templates/custom/error-rate-limit.error.json")),
    ("error-bad-key", "error.json", include_str!("../templates/custom/error-bad-key.error.json")),
    ("error-html", "error.json", include_str!("../templates/custom/error-html.error.json")),
];

/// Creates `plugins/NAME/` (manifest, `src/lib.rs`, README), `fixtures/NAME/`
/// and adds the crate to the plugins workspace.
pub fn new_plugin(root: &Path, name: &str, format: Format) -> Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "plugin name `{name}`: use lowercase letters, digits and `-`, starting with a letter (it is the model prefix clients write: `{name}:model`)"
        );
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
    let fixtures = root.join("fixtures").join(name);
    let (what, lib) = match format {
        Format::Openai => ("OpenAI-compatible Chat Completions", LIB_RS),
        Format::Custom => ("its own wire format, mapped by hand", include_str!("../templates/custom/lib.rs.tmpl")),
    };
    write(dir.join("Cargo.toml"), fill(CARGO_TOML).replace("{{what}}", what))?;
    write(dir.join("src/lib.rs"), fill(lib))?;
    write(dir.join("README.md"), fill(README).replace("{{what}}", what))?;
    match format {
        Format::Openai => {
            let basic = fixtures.join("basic");
            write(basic.join("request.json"), fill(FIXTURE_REQUEST))?;
            write(basic.join("expected_upstream.json"), fill(FIXTURE_UPSTREAM))?;
            write(basic.join("response.json"), fill(FIXTURE_RESPONSE))?;
            write(basic.join("expected.json"), fill(FIXTURE_EXPECTED))?;
        }
        Format::Custom => {
            for (case, file, text) in CUSTOM_FIXTURES {
                write(fixtures.join(case).join(file), fill(text))?;
            }
        }
    }

    // Append to `members = [...]`, keeping the rest of the manifest as written.
    let start = manifest.find("members").context("no members")?;
    let close = start + manifest[start..].find(']').context("`members` is not closed")?;
    let before = manifest[..close].trim_end();
    let separator = if before.ends_with('[') || before.ends_with(',') { " " } else { ", " };
    let updated = format!("{before}{separator}\"{name}\"{}", &manifest[close..]);
    fs::write(&manifest_path, updated).context("cannot update plugins/Cargo.toml")?;

    println!("created plugins/{name}/ (Cargo.toml, src/lib.rs, README.md) and fixtures/{name}/");
    println!("added `{name}` to the plugins workspace members");
    println!(
        "next: cargo xtask build-plugins -p {name} && cargo run -p aigate -- plugin check plugins/dist/{}",
        artifact(name)
    );
    Ok(())
}

/// The acceptance test of the scaffold, on a copy so the real tree is
/// untouched: `new-plugin demo` and `new-plugin demo-custom --format custom`,
/// `build-plugins -p demo -p demo-custom`, then `aigate plugin check` on each
/// must pass with its own fixtures. Compiled dependencies come from the real
/// `plugins/target`, so this takes seconds once the plugins were built.
pub fn scaffold_test(root: &Path) -> Result<()> {
    const SCAFFOLDS: &[(&str, Format, &[&str])] = &[
        ("demo", Format::Openai, &["basic/build-request", "basic/parse-response"]),
        (
            "demo-custom",
            Format::Custom,
            &[
                "basic/build-request",
                "basic/parse-response",
                "stream/stream",
                "error-bad-key/error",
                "error-html/error",
            ],
        ),
    ];
    let temp = std::env::temp_dir().join(format!("aigate-scaffold-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&temp);
    let result = (|| -> Result<()> {
        for folder in ["plugins", "wit", "fixtures"] {
            copy_tree(&root.join(folder), &temp.join(folder))?;
        }
        for (name, format, _) in SCAFFOLDS {
            new_plugin(&temp, name, *format)?;
        }
        let names = SCAFFOLDS.iter().map(|(name, _, _)| name.to_string()).collect();
        build_plugins_into(&temp, &root.join("plugins").join("target"), &Selection::Only(names))?;
        for (name, _, cases) in SCAFFOLDS {
            let wasm = temp.join("plugins/dist").join(artifact(name));
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
                bail!(
                    "`aigate plugin check` failed on the fresh scaffold {name}:\n{report}{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            if let Some(case) = cases.iter().find(|case| !report.contains(&format!("PASS {name}/{case}\n"))) {
                bail!("the scaffold's own fixture {name}/{case} did not run:\n{report}");
            }
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&temp);
    result?;
    println!(
        "scaffold test: new-plugin demo (openai) and demo-custom (custom) build with -p and pass `aigate plugin check`"
    );
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
description = "AIGate provider plugin: {{name}} ({{what}})"
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

Generated by `cargo xtask new-plugin {{name}}`: a provider speaking {{what}},
on `aigate-plugin-sdk`. Clients reach it as `{{name}}:<model>`.

```sh
cargo xtask build-plugins -p {{name}}                       # -> plugins/dist/{{crate}}.wasm
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
