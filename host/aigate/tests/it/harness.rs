//! Starts a gateway for one test: its own plugins folder (copied from
//! plugins/dist), its own mock upstream, port 0. Tests run in parallel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aigate::Gateway;
use aigate::config::Config;
use aigate_testkit::{MockAnthropic, MockDashScope, MockGemini, MockOptions};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The folder `cargo xtask build-plugins` fills.
pub fn dist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist")
}

/// A built plugin artifact, relative to plugins/dist.
pub fn artifact(relative: &str) -> PathBuf {
    let path = dist_dir().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-plugins` first (the README's test command does)",
        path.display()
    );
    path
}

/// The compiled-component cache shared by all tests (content-addressed, so sharing is safe).
fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aigate-it-data")
}

pub struct Setup {
    /// (artifact relative to plugins/dist, file name in the gateway's plugins folder)
    pub plugins: Vec<(&'static str, &'static str)>,
    pub toml: String,
    /// Extra lines of the `[plugins]` table.
    pub plugin_limits: String,
    pub env: BTreeMap<String, String>,
    /// Start from a config file (`<data dir>/aigate.toml`, watched for route changes) instead
    /// of the parsed text.
    pub config_file: bool,
    /// Like `config_file`, laid out as Kubernetes mounts a ConfigMap: `<data dir>/cm/aigate.toml`
    /// → `..data/aigate.toml`, `..data` → a timestamped folder ([`swap_configmap`]).
    pub configmap: bool,
    /// Compile plugins with this compiler, into a cache of the gateway's own (so every plugin is
    /// compiled by it); `None`: in-process, with the compile cache shared by the tests.
    pub compiler: Option<aigate_plugins::Compiler>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            plugins: vec![
                ("qwen.wasm", "qwen.wasm"),
                ("openai.wasm", "openai.wasm"),
                ("test/faulty.wasm", "faulty.wasm"),
            ],
            toml: String::new(),
            plugin_limits: String::new(),
            env: BTreeMap::new(),
            config_file: false,
            configmap: false,
            compiler: None,
        }
    }
}

/// What the kubelet does to update a ConfigMap volume in `cm`: the new content in a folder of
/// its own, a `..data_tmp` link to it, renamed over `..data`.
pub fn swap_configmap(cm: &Path, version: &str, text: &str) {
    std::fs::create_dir_all(cm.join(version)).unwrap();
    std::fs::write(cm.join(version).join("aigate.toml"), text).unwrap();
    std::os::unix::fs::symlink(version, cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
}

pub struct TestGateway {
    /// An API key of org `test`, created through the admin operations.
    pub key: String,
    pub data_dir: TempDir,
    #[allow(dead_code, reason = "kept alive for the test; shut down on drop of the runtime")]
    pub gateway: Option<Gateway>,
    pub base: String,
    pub http: reqwest::Client,
    pub mock: MockDashScope,
    pub plugins_dir: TempDir,
}

pub async fn start() -> TestGateway {
    start_with(Setup::default()).await
}

pub async fn start_with(setup: Setup) -> TestGateway {
    // The faulty plugin's models that reach the provider must exist there.
    let extra_models = ["healthy", "stream-trap", "parse-trap"].map(str::to_owned).to_vec();
    let mock = MockDashScope::start_with(MockOptions { extra_models, ..MockOptions::default() }).await;
    start_with_mock(setup, mock).await
}

/// A gateway that also serves the anthropic plugin, pointed at its own
/// `MockAnthropic` (returned beside the gateway) with `ANTHROPIC_API_KEY`.
pub async fn start_with_anthropic(mut setup: Setup) -> (TestGateway, MockAnthropic) {
    let anthropic = MockAnthropic::start().await;
    setup.plugins.push(("anthropic.wasm", "anthropic.wasm"));
    setup.toml.push_str(&format!("\n[providers.anthropic]\nbase_url = \"{}\"\n", anthropic.base_url()));
    setup.env.insert("ANTHROPIC_API_KEY".to_owned(), MockAnthropic::API_KEY.to_owned());
    (start_with(setup).await, anthropic)
}

/// A gateway with the gemini plugin in front of a [`MockGemini`] (`[providers.gemini]`).
pub async fn start_with_gemini(mut setup: Setup) -> (TestGateway, MockGemini) {
    let gemini = MockGemini::start().await;
    setup.plugins.push(("gemini.wasm", "gemini.wasm"));
    setup.toml.push_str(&format!("\n[providers.gemini]\nbase_url = \"{}\"\n", gemini.base_url()));
    setup.env.insert("GEMINI_API_KEY".to_owned(), MockGemini::API_KEY.to_owned());
    (start_with(setup).await, gemini)
}

pub async fn start_with_mock(setup: Setup, mock: MockDashScope) -> TestGateway {
    // Gateway logs show with a failing test's output (AIGATE_LOG=debug for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("AIGATE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let plugins_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    for (from, to) in &setup.plugins {
        std::fs::copy(artifact(from), plugins_dir.path().join(to)).unwrap();
    }
    let toml_text = format!(
        r#"
listen = "127.0.0.1:0"
plugins_dir = "{plugins}"
data_dir = "{data}"
max_body_bytes = 65536

[plugins]
cache_dir = "{cache}"
{plugin_limits}

[providers.qwen]
base_url = "{base}"

[providers.openai]
base_url = "{base}"
models = ["*"]

[providers.faulty]
base_url = "{base}"
models = ["*"]

[aliases]
turbo = "qwen:qwen-turbo"
{extra}
"#,
        plugins = plugins_dir.path().display(),
        data = data_dir.path().display(),
        cache = match setup.compiler {
            Some(_) => data_dir.path().join("plugin-cache"),
            None => shared_cache_dir(),
        }
        .display(),
        plugin_limits = setup.plugin_limits,
        base = mock.base_url(),
        extra = setup.toml,
    );
    let mut env: BTreeMap<String, String> = [
        ("QWEN_API_KEY", MockDashScope::API_KEY),
        ("OPENAI_API_KEY", MockDashScope::API_KEY),
        ("FAULTY_API_KEY", MockDashScope::API_KEY),
        ("AIGATE_ADMIN_TOKEN", ADMIN_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.extend(setup.env);
    let config = if setup.configmap {
        let cm = data_dir.path().join("cm");
        std::fs::create_dir_all(&cm).unwrap();
        swap_configmap(&cm, "..2026_12_01_00_00_00.000000001", &toml_text);
        std::os::unix::fs::symlink("..data/aigate.toml", cm.join("aigate.toml")).unwrap();
        Config::load(Some(&cm.join("aigate.toml")), &env).unwrap()
    } else if setup.config_file {
        let path = data_dir.path().join("aigate.toml");
        std::fs::write(&path, &toml_text).unwrap();
        Config::load(Some(&path), &env).unwrap()
    } else {
        Config::from_raw(Config::parse_toml(Path::new("test.toml"), &toml_text).unwrap(), &env).unwrap()
    };
    let mut config = config;
    if let Some(compiler) = setup.compiler {
        config.plugins.compiler = compiler;
    }
    let gateway = Gateway::start(config, Arc::new(env)).await.unwrap();
    let key = aigate::admin::create_key(
        &gateway.state().store,
        &aigate::admin::CreateKey { org: "test".into(), ..Default::default() },
    )
    .await
    .unwrap()
    .key;
    let base = format!("http://{}", gateway.local_addr());
    TestGateway { gateway: Some(gateway), key, data_dir, base, http: reqwest::Client::new(), mock, plugins_dir }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON to `path` with the test key.
    pub async fn chat_at(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap()
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post_raw(serde_json::to_vec(body).unwrap(), "application/json").await
    }

    pub async fn post_raw(&self, body: Vec<u8>, content_type: &str) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {}", self.key))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A chat with API key `key` and, if given, an `Idempotency-Key`.
    pub async fn post_as(&self, key: &str, body: &Value, idem: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap());
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        req.send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(&self.key).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json_value().await)
    }
}

impl TestGateway {
    pub async fn admin_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json_value().await)
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json_value().await)
    }
}

pub trait JsonBody {
    async fn json_value(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}

/// A fresh Postgres database for one test (dropped never: names are unique),
/// or None when DATABASE_URL is unset (a failure under AIGATE_REQUIRE_SERVICES=1).
pub fn fresh_postgres() -> Option<String> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"), "DATABASE_URL is required here");
        eprintln!("skipped: DATABASE_URL is not set");
        return None;
    };
    let db = format!("aigate_it_{}", uuid::Uuid::new_v4().simple());
    let out =
        std::process::Command::new("psql").arg(&url).args(["-qc", &format!("CREATE DATABASE {db}")]).output().unwrap();
    assert!(out.status.success(), "CREATE DATABASE: {}", String::from_utf8_lossy(&out.stderr));
    let (base, _) = url.rsplit_once('/').unwrap();
    Some(format!("{base}/{db}"))
}

/// REDIS_URL, or None when unset (a failure under AIGATE_REQUIRE_SERVICES=1).
pub fn redis_url() -> Option<String> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        assert!(std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"), "REDIS_URL is required here");
        eprintln!("skipped: REDIS_URL is not set");
        return None;
    };
    Some(url)
}

/// A name no other test (nor an earlier run, on a shared Redis) uses.
pub fn unique(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// A minimal valid chat request.
pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Who are you?"}]})
}

pub fn stream_body(model: &str, include_usage: bool) -> Value {
    let mut b = chat_body(model);
    b["stream"] = json!(true);
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// Asserts an OpenAI-shaped error with this status and code.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(response.headers().contains_key("x-request-id"), "x-request-id on errors too");
    let body = response.json_value().await;
    let err = &body["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(err.get(key).is_some(), "error body lacks `{key}`: {body}");
    }
    assert_eq!(err["code"], code, "{body}");
    assert!(err["message"].as_str().is_some_and(|m| m.len() > 10), "a message that says what to do: {body}");
    body
}

/// Reads an SSE body into its `data:` payloads (`[DONE]` included as a string).
pub async fn sse_payloads(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())))
        .collect()
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
