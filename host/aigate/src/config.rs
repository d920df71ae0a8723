//! Configuration: a TOML file plus environment overrides, in two stages.
//!
//! [`RawConfig`] is exactly what the file says (`deny_unknown_fields`, so a typo
//! is an error, not a silently ignored key). [`Config::load`] applies the
//! environment (`AIGATE_*`, `<PROVIDER>_API_KEY`, `<PROVIDER>_BASE_URL`) and
//! validates into typed values; every error names the field it is about.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::credentials::{self, KeyPlacement};

/// Default folder of provider plugins, relative to the working directory:
/// where `cargo xtask build-plugins` puts them.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins/dist";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_DATA_DIR: &str = "data";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{field}`: {message}")]
    Invalid { field: String, message: String },
}

/// `AIGATE_TRUSTED_PLUGINS` (comma-separated) over `[plugins] trusted_hashes`: each a sha256 in
/// hex (64 characters), stored in lower case.
fn trusted_hashes(env: Option<String>, file: Option<Vec<String>>) -> Result<Option<Vec<String>>, ConfigError> {
    let (field, hashes) = match env {
        Some(list) => (
            "AIGATE_TRUSTED_PLUGINS",
            list.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_owned).collect(),
        ),
        None => match file {
            Some(hashes) => ("plugins.trusted_hashes", hashes),
            None => return Ok(None),
        },
    };
    for hash in &hashes {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(field, format!("{hash:?} is not a sha256 in hex (64 hex characters)")));
        }
    }
    Ok(Some(hashes.iter().map(|h| h.to_ascii_lowercase()).collect()))
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub plugins_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// How long a stopping gateway lets calls in flight finish before it ends
    /// them (metered) and exits.
    pub shutdown_timeout_ms: Option<u64>,
    /// Threads serving the listener, each with a runtime and upstream pools of its own
    /// (`AIGATE_SERVING_THREADS`; default: one per core).
    pub serving_threads: Option<usize>,
    #[serde(default)]
    pub plugins: RawPluginLimits,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub streams: RawStreams,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Bare model name → `provider:model`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Public model name → deployments, fallbacks and balancing (`[routes.<name>]`).
    #[serde(default)]
    pub routes: BTreeMap<String, RawRoute>,
    /// Retries, backoff and circuit breaking for every route.
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub idempotency: RawIdempotency,
    #[serde(default)]
    pub billing: RawBilling,
    #[serde(default)]
    pub metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// A listener of its own for `GET /metrics`, unauthenticated (`AIGATE_METRICS_LISTEN`).
    pub listen: Option<String>,
    /// Whether `/metrics` on the main listener needs the admin token (default true).
    pub require_admin_token: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Default requests per minute of a key (a key's own limit wins).
    pub key_rpm: Option<u32>,
    /// Default tokens per minute of a key.
    pub key_tpm: Option<u64>,
    /// Requests per minute of each org.
    pub org_rpm: Option<u32>,
    /// Tokens per minute of each org.
    pub org_tpm: Option<u64>,
    /// Completion tokens reserved for a call without max_tokens.
    pub default_completion_tokens: Option<u32>,
    /// When the limiter (Redis) is unreachable: admit (true, default) or refuse with 503.
    pub fail_open: Option<bool>,
    /// How long an org's monthly spend is cached for budget checks.
    pub budget_cache_ms: Option<u64>,
    /// Streams one API key may have open at once, per replica.
    pub key_concurrent_streams: Option<u32>,
    /// Streams one org may have open at once, per replica.
    pub org_concurrent_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStreams {
    /// Longest silence allowed between two provider events.
    pub idle_timeout_ms: Option<u64>,
    /// How long a client may leave its stream unread before it loses it.
    pub client_stall_timeout_ms: Option<u64>,
    /// Longest line of a provider's SSE stream.
    pub max_line_bytes: Option<usize>,
    /// Largest event (all its lines) of a provider's SSE stream.
    pub max_event_bytes: Option<usize>,
    /// Largest provider SSE stream, in total.
    pub max_total_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotency {
    /// How long a completed response is kept for replays (default 24).
    pub ttl_hours: Option<u64>,
    /// How long a claim holds without renewal: a crashed replica's claim expires after it.
    pub lease_ms: Option<u64>,
    /// Largest response or stream stored for replays; a larger one is not stored.
    pub max_stored_bytes: Option<usize>,
    /// In-process store only (no REDIS_URL): most records held.
    pub memory_max_entries: Option<usize>,
    /// In-process store only: most bytes of stored responses held.
    pub memory_max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// How long a key lookup is cached; a revoked key stops working within it.
    pub key_cache_ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBilling {
    /// Currency of calls with no price rule (ISO 4217), default USD.
    pub currency: Option<String>,
    /// Ledger rows older than this many days are pruned (rollups stay); 0 keeps them forever.
    pub ledger_retention_days: Option<u32>,
    /// How often the in-memory price rules are reloaded from the database.
    pub price_refresh_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginLimits {
    pub memory_limit_mib: Option<u64>,
    pub cpu_timeout_ms: Option<u64>,
    pub wall_timeout_ms: Option<u64>,
    pub max_instances: Option<u32>,
    /// Whether to watch the plugins folder and hot-reload (default true).
    pub watch: Option<bool>,
    /// Hex sha256 of every plugin file allowed to load (env `AIGATE_TRUSTED_PLUGINS`,
    /// comma-separated). Unset: every file in the plugins folder loads.
    pub trusted_hashes: Option<Vec<String>>,
    /// Compiled-plugin cache (default `<data_dir>/plugin-cache`); content-addressed, shareable.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed until the provider's response headers arrive.
    pub first_byte_timeout_ms: Option<u64>,
    /// Time allowed for the whole call, body or stream included.
    pub total_timeout_ms: Option<u64>,
    /// Time allowed for a provider's models list.
    pub models_timeout_ms: Option<u64>,
    /// How long a provider's live model list is reused by `/v1/models`.
    pub models_cache_ms: Option<u64>,
    /// Largest provider response body read into memory (non-stream), in bytes.
    pub max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// The plugin that speaks this provider's wire format; defaults to the provider's name.
    pub plugin: Option<String>,
    /// The only origin the key is sent to. Required unless the provider is a shipped one
    /// (qwen, openai, anthropic) under its own name, whose built-in default it then accepts.
    pub base_url: Option<String>,
    /// Where the key goes: `{ header = "x-api-key" }`, `{ header = "authorization", scheme =
    /// "Bearer" }` or `{ query = "key" }`. Default: the shipped provider's, else Bearer.
    pub auth: Option<RawKeyPlacement>,
    /// Name of the environment variable holding the secret (default `<PROVIDER>_API_KEY`).
    /// Secrets are never read from the config file itself.
    pub api_key_env: Option<String>,
    /// Models clients may ask for; `"*"` allows any. Default: the plugin's own list.
    pub models: Option<Vec<String>>,
    /// Set false to disable a provider whose plugin is loaded.
    pub enabled: Option<bool>,
    /// Calls no price rule covers: `"refuse"` them (400 `model_not_priced`,
    /// before anything is sent) or `"allow"` them at zero, flagged unpriced.
    /// Default: see [`UnpricedPolicy::default_for`].
    pub unpriced: Option<UnpricedPolicy>,
}

/// What a provider does with a call to a model no price rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnpricedPolicy {
    /// 400 `model_not_priced` before any provider call, claim or reservation.
    Refuse,
    /// Served and billed 0 (or the provider's reported cost), with a warning
    /// in the log and in usage reports (`unpriced_requests`).
    Allow,
}

impl UnpricedPolicy {
    /// `allow` on a dev setup ([`Config::is_dev_setup`]), `refuse` otherwise.
    pub fn default_for(dev_setup: bool) -> UnpricedPolicy {
        if dev_setup { UnpricedPolicy::Allow } else { UnpricedPolicy::Refuse }
    }
}

/// `[routes.<name>]`: a public model name served by several deployments.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `"weighted"` (random by weight, the default) or `"least-latency"` (the faster of two
    /// random picks, by a decaying average of each deployment's latency).
    pub strategy: Option<Strategy>,
    pub deployments: Vec<RawDeployment>,
    /// Model names tried in order once every deployment of the route failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Rounds of retries (after a backoff) over the deployments of one priority; default
    /// `routing.retries`.
    pub retries: Option<u32>,
}

/// One place a route's model can be served: a configured provider (its plugin, key placement
/// and pricing), an upstream model, and optionally another base URL or key of that provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: String,
    pub model: String,
    /// Share of the traffic among the deployments of the same priority (default 1).
    pub weight: Option<u32>,
    /// Lower is tried first (default 0); a higher priority serves when every lower one failed.
    pub priority: Option<u32>,
    /// Another origin for this deployment (a region); the key goes there.
    pub base_url: Option<String>,
    /// Environment variable holding this deployment's key (another key of the provider).
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Weighted,
    LeastLatency,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Rounds of retries over a priority's deployments after transient failures (default 0: the
    /// official SDKs already retry twice, and retries at both ends multiply).
    pub retries: Option<u32>,
    /// Provider calls one request may make, all retries and fallbacks included (default 6).
    pub max_attempts: Option<u32>,
    /// Exponential backoff with full jitter: base and cap (defaults 200 ms, 5 s).
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    /// A provider's `Retry-After` is honoured up to this (default 10 s); longer means fall back.
    pub retry_after_max_ms: Option<u64>,
    /// Consecutive failures that open a deployment's circuit (default 5).
    pub circuit_failures: Option<u32>,
    /// How long an open circuit is skipped before one probe may close it (default 30 s).
    pub circuit_cooldown_ms: Option<u64>,
    /// How often a replica reads circuits other replicas opened (Redis only; default 250 ms).
    pub circuit_sync_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyPlacement {
    pub header: Option<String>,
    pub scheme: Option<String>,
    pub query: Option<String>,
}

impl RawConfig {
    /// The configuration without a file: the shipped providers (qwen, openai,
    /// anthropic, gemini) named with their built-in base URLs, so `cargo xtask run`
    /// serves qwen with just `QWEN_API_KEY`. A config file names its own.
    pub fn without_file() -> Self {
        let providers =
            credentials::BUILTIN_PROVIDERS.iter().map(|b| (b.name.to_owned(), RawProvider::default())).collect();
        RawConfig { providers, ..RawConfig::default() }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    /// Threads serving the listener (`serving.rs`): `serving_threads` / `AIGATE_SERVING_THREADS`,
    /// default the number of cores.
    pub serving_threads: usize,
    pub plugins: PluginLimits,
    pub upstream: UpstreamConfig,
    pub streams: StreamsConfig,
    /// Providers configured explicitly. A loaded plugin with no entry here is a
    /// provider of its own name with defaults (see [`ProviderSettings::resolve`]).
    pub providers: BTreeMap<String, ProviderConfig>,
    pub aliases: BTreeMap<String, String>,
    /// Routes with deployments (`[routes.*]`); aliases are one-deployment routes (see
    /// `routing.rs`).
    pub routes: BTreeMap<String, RouteConfig>,
    pub routing: RoutingConfig,
    /// The file this was read from (`None`: no file); watched for route changes (`reload.rs`).
    pub source: Option<PathBuf>,
    /// `DATABASE_URL`: Postgres (`postgres://…`) or SQLite (`sqlite:…`); unset
    /// means the SQLite file `<data_dir>/aigate.db`.
    pub database_url: Option<SecretString>,
    /// `REDIS_URL`: shared limits and idempotency; unset means in-process.
    pub redis_url: Option<SecretString>,
    /// `AIGATE_REDIS_PREFIX`: prefix of every Redis key (default `aigate:`),
    /// so several deployments can share one Redis.
    pub redis_prefix: String,
    /// `AIGATE_ADMIN_TOKEN`: enables `/admin/*` for bearers of this token.
    pub admin_token: Option<SecretString>,
    pub key_cache_ttl: Duration,
    pub billing: BillingConfig,
    pub limits: LimitsConfig,
    pub idempotency: IdempotencyConfig,
    pub metrics: MetricsConfig,
}

/// Where `GET /metrics` is served.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `AIGATE_METRICS_LISTEN`: a listener of its own, unauthenticated (keep it off the
    /// public network). `None`: only on the main listener.
    pub listen: Option<SocketAddr>,
    /// On the main listener, `/metrics` needs `Authorization: Bearer <AIGATE_ADMIN_TOKEN>`
    /// (default); `false` serves it to anyone who can reach the listener.
    pub require_admin_token: bool,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub strategy: Strategy,
    pub deployments: Vec<DeploymentConfig>,
    pub fallbacks: Vec<String>,
    /// `None`: `routing.retries`.
    pub retries: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub provider: String,
    pub model: String,
    pub weight: u32,
    pub priority: u32,
    /// The provider's settings with this deployment's base URL and key.
    pub settings: std::sync::Arc<ProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub retries: u32,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub retry_after_max: Duration,
    pub circuit_failures: u32,
    pub circuit_cooldown: Duration,
    pub circuit_sync: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            retries: 0,
            max_attempts: 6,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            retry_after_max: Duration::from_secs(10),
            circuit_failures: 5,
            circuit_cooldown: Duration::from_secs(30),
            circuit_sync: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub key_rpm: Option<u32>,
    pub key_tpm: Option<u64>,
    pub org_rpm: Option<u32>,
    pub org_tpm: Option<u64>,
    pub default_completion_tokens: u32,
    pub fail_open: bool,
    pub budget_cache: Duration,
    pub key_concurrent_streams: u32,
    pub org_concurrent_streams: u32,
}

#[derive(Debug, Clone)]
pub struct StreamsConfig {
    pub idle_timeout: Duration,
    pub client_stall_timeout: Duration,
    pub sse: crate::sse::SseLimits,
}

#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    pub ttl: Duration,
    pub lease: Duration,
    pub max_stored_bytes: usize,
    pub memory_max_entries: usize,
    pub memory_max_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub currency: String,
    pub ledger_retention_days: u32,
    pub price_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct PluginLimits {
    pub memory_limit_bytes: usize,
    pub cpu_timeout: Duration,
    pub wall_timeout: Duration,
    pub max_instances: u32,
    pub watch: bool,
    /// Lowercase hex sha256 of the plugin files allowed to load; `None` trusts the folder.
    pub trusted_hashes: Option<Vec<String>>,
    pub cache_dir: PathBuf,
    /// Where plugins are compiled. Not a file setting: the `aigate` binary sets a child process
    /// of itself (`aigate __compile-plugin`, see `aigate_plugins::compiler`); embedders and
    /// tests that start a `Gateway` in their own process compile in-process by default.
    pub compiler: aigate_plugins::Compiler,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub models_timeout: Duration,
    pub models_cache: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub plugin: String,
    /// The origin the operator accepted for the key: set for every enabled entry of the
    /// config. A provider implied by a loaded plugin (which never gets a key) has only what
    /// `<NAME>_BASE_URL` says.
    pub base_url: Option<url::Url>,
    /// Where the key may go; a plugin declaring another scheme gets no key.
    pub placement: KeyPlacement,
    pub api_key_env: String,
    pub api_key: Option<SecretString>,
    pub models: Option<Vec<String>>,
    pub enabled: bool,
    pub unpriced: UnpricedPolicy,
}

/// Where environment values come from: the process environment in production,
/// a map in tests (so tests never mutate the process-wide environment).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment (after `.env` was loaded into it).
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// `<PROVIDER>_<SUFFIX>` with the provider name upper-cased and `-` as `_`.
pub fn provider_env_name(provider: &str, suffix: &str) -> String {
    let mut name: String =
        provider.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    name.push('_');
    name.push_str(suffix);
    name
}

/// Valid provider names: what may stand before the `:` of a model name.
fn valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn parse_base_url(field: &str, raw: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(raw).map_err(|e| invalid(field, format!("`{raw}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(field, format!("`{raw}` must be an http:// or https:// URL with a host")));
    }
    Ok(url)
}

/// A count or size that must be positive.
fn positive<T: Default + PartialEq>(field: &str, value: Option<T>, default: T) -> Result<T, ConfigError> {
    match value {
        Some(v) if v == T::default() => Err(invalid(field, "must be greater than 0")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn millis(field: &str, value: Option<u64>, default_ms: u64) -> Result<Duration, ConfigError> {
    match value {
        Some(0) => Err(invalid(field, "must be greater than 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(Duration::from_millis(default_ms)),
    }
}

/// A model name a route may fall back to: `provider:model` or a bare route or alias name.
fn valid_model_name(name: &str) -> bool {
    match name.split_once(':') {
        Some((provider, model)) => valid_provider_name(provider) && !model.is_empty(),
        None => !name.is_empty() && !name.chars().any(char::is_whitespace),
    }
}

/// Validates `[routes.*]` against the configured providers: every deployment names an enabled
/// `[providers.*]` entry (only an entry says where a key may go).
fn routes(
    raw: BTreeMap<String, RawRoute>,
    aliases: &BTreeMap<String, String>,
    providers: &BTreeMap<String, ProviderConfig>,
    env: &dyn Env,
) -> Result<BTreeMap<String, RouteConfig>, ConfigError> {
    let mut routes = BTreeMap::new();
    for (name, r) in raw {
        let field = format!("routes.{name}");
        if name.contains(':') || name.is_empty() {
            return Err(invalid(field, "a route is a bare model name, without ':'"));
        }
        if aliases.contains_key(&name) {
            return Err(invalid(field, format!("`{name}` is also an alias; a name is one or the other")));
        }
        if r.deployments.is_empty() {
            return Err(invalid(format!("{field}.deployments"), "a route needs at least one deployment"));
        }
        let mut deployments = Vec::with_capacity(r.deployments.len());
        for (i, d) in r.deployments.into_iter().enumerate() {
            let field = format!("{field}.deployments[{i}]");
            let Some(provider) = providers.get(&d.provider) else {
                return Err(invalid(
                    format!("{field}.provider"),
                    format!("`{}` is not a provider of this config: add [providers.{}]", d.provider, d.provider),
                ));
            };
            if !provider.enabled {
                return Err(invalid(format!("{field}.provider"), format!("provider `{}` is disabled", d.provider)));
            }
            if d.model.trim().is_empty() {
                return Err(invalid(format!("{field}.model"), "must not be empty"));
            }
            let mut settings = provider.clone();
            if let Some(url) = &d.base_url {
                settings.base_url = Some(parse_base_url(&format!("{field}.base_url"), url)?);
            }
            if let Some(var) = d.api_key_env {
                if var.is_empty() {
                    return Err(invalid(format!("{field}.api_key_env"), "must not be empty"));
                }
                settings.api_key = env.var(&var).map(SecretString::from);
                settings.api_key_env = var;
            }
            deployments.push(DeploymentConfig {
                provider: d.provider,
                model: d.model,
                weight: positive(&format!("{field}.weight"), d.weight, 1)?,
                priority: d.priority.unwrap_or(0),
                settings: std::sync::Arc::new(settings),
            });
        }
        for fallback in &r.fallbacks {
            if !valid_model_name(fallback) || *fallback == name {
                return Err(invalid(
                    format!("{field}.fallbacks"),
                    format!("`{fallback}` must be `provider:model` or another route or alias"),
                ));
            }
        }
        routes.insert(
            name,
            RouteConfig {
                strategy: r.strategy.unwrap_or(Strategy::Weighted),
                deployments,
                fallbacks: r.fallbacks,
                retries: r.retries,
            },
        );
    }
    Ok(routes)
}

fn routing(raw: RawRouting) -> Result<RoutingConfig, ConfigError> {
    let d = RoutingConfig::default();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let backoff_base = millis("routing.backoff_base_ms", raw.backoff_base_ms, ms(d.backoff_base))?;
    let backoff_max = millis("routing.backoff_max_ms", raw.backoff_max_ms, ms(d.backoff_max))?;
    if backoff_max < backoff_base {
        return Err(invalid("routing.backoff_max_ms", "must be at least routing.backoff_base_ms"));
    }
    Ok(RoutingConfig {
        retries: raw.retries.unwrap_or(d.retries),
        max_attempts: positive("routing.max_attempts", raw.max_attempts, d.max_attempts)?,
        backoff_base,
        backoff_max,
        retry_after_max: millis("routing.retry_after_max_ms", raw.retry_after_max_ms, ms(d.retry_after_max))?,
        circuit_failures: positive("routing.circuit_failures", raw.circuit_failures, d.circuit_failures)?,
        circuit_cooldown: millis("routing.circuit_cooldown_ms", raw.circuit_cooldown_ms, ms(d.circuit_cooldown))?,
        circuit_sync: millis("routing.circuit_sync_ms", raw.circuit_sync_ms, ms(d.circuit_sync))?,
    })
}

impl Config {
    /// Reads the file named by `AIGATE_CONFIG` or `path` (a missing default file
    /// is fine; a missing named file is an error), then applies the environment.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let named = env.var("AIGATE_CONFIG").map(PathBuf::from).or_else(|| path.map(Path::to_path_buf));
        let (raw, source) = match named {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                (Self::parse_toml(&path, &text)?, Some(path))
            }
            None => match std::fs::read_to_string("aigate.toml") {
                Ok(text) => (Self::parse_toml(Path::new("aigate.toml"), &text)?, Some(PathBuf::from("aigate.toml"))),
                Err(_) => (RawConfig::without_file(), None),
            },
        };
        let mut config = Self::from_raw(raw, env)?;
        config.source = source;
        Ok(config)
    }

    pub fn parse_toml(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    pub fn from_raw(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
        let listen_raw = env.var("AIGATE_LISTEN").or(raw.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_raw
            .parse()
            .map_err(|_| invalid("listen", format!("`{listen_raw}` is not an address like 127.0.0.1:8000")))?;
        let plugins_dir = env
            .var("AIGATE_PLUGINS_DIR")
            .map(PathBuf::from)
            .or(raw.plugins_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS_DIR));
        let data_dir = env
            .var("AIGATE_DATA_DIR")
            .map(PathBuf::from)
            .or(raw.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let metrics_listen = env.var("AIGATE_METRICS_LISTEN").or(raw.metrics.listen.clone());
        let metrics = MetricsConfig {
            listen: match metrics_listen.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => None,
                Some(text) => Some(text.parse().map_err(|_| {
                    invalid(
                        "metrics.listen",
                        format!("`{text}` is not an address like 0.0.0.0:9464 (AIGATE_METRICS_LISTEN)"),
                    )
                })?),
            },
            require_admin_token: raw.metrics.require_admin_token.unwrap_or(true),
        };
        let max_body_bytes = positive("max_body_bytes", raw.max_body_bytes, 4 * 1024 * 1024)?;
        let shutdown_timeout = millis("shutdown_timeout_ms", raw.shutdown_timeout_ms, 30_000)?;
        let serving_threads = match env.var("AIGATE_SERVING_THREADS") {
            Some(text) => Some(text.trim().parse::<usize>().map_err(|_| {
                invalid("serving_threads", format!("`{text}` is not a number of threads (AIGATE_SERVING_THREADS)"))
            })?),
            None => raw.serving_threads,
        };
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let serving_threads = positive("serving_threads", serving_threads, cores)?;
        if serving_threads > 1024 {
            return Err(invalid("serving_threads", format!("{serving_threads} is more than 1024 threads")));
        }
        let streams = StreamsConfig {
            idle_timeout: millis("streams.idle_timeout_ms", raw.streams.idle_timeout_ms, 120_000)?,
            client_stall_timeout: millis(
                "streams.client_stall_timeout_ms",
                raw.streams.client_stall_timeout_ms,
                30_000,
            )?,
            sse: crate::sse::SseLimits {
                max_line_bytes: positive("streams.max_line_bytes", raw.streams.max_line_bytes, 1024 * 1024)?,
                max_event_bytes: positive("streams.max_event_bytes", raw.streams.max_event_bytes, 4 * 1024 * 1024)?,
                max_total_bytes: positive("streams.max_total_bytes", raw.streams.max_total_bytes, 64 * 1024 * 1024)?,
            },
        };

        let memory_mib = match raw.plugins.memory_limit_mib {
            Some(0) => return Err(invalid("plugins.memory_limit_mib", "must be greater than 0")),
            Some(m) if m > 4096 => return Err(invalid("plugins.memory_limit_mib", "must be at most 4096")),
            Some(m) => m,
            None => 64,
        };
        let plugins = PluginLimits {
            memory_limit_bytes: usize::try_from(memory_mib * 1024 * 1024)
                .map_err(|_| invalid("plugins.memory_limit_mib", "too large for this machine"))?,
            cpu_timeout: millis("plugins.cpu_timeout_ms", raw.plugins.cpu_timeout_ms, 200)?,
            wall_timeout: millis("plugins.wall_timeout_ms", raw.plugins.wall_timeout_ms, 2_000)?,
            max_instances: match raw.plugins.max_instances {
                Some(0) => return Err(invalid("plugins.max_instances", "must be greater than 0")),
                Some(n) => n,
                None => 1000,
            },
            watch: raw.plugins.watch.unwrap_or(true),
            trusted_hashes: trusted_hashes(env.var("AIGATE_TRUSTED_PLUGINS"), raw.plugins.trusted_hashes)?,
            cache_dir: raw.plugins.cache_dir.unwrap_or_else(|| data_dir.join("plugin-cache")),
            compiler: aigate_plugins::Compiler::InProcess,
        };
        let upstream = UpstreamConfig {
            connect_timeout: millis("upstream.connect_timeout_ms", raw.upstream.connect_timeout_ms, 5_000)?,
            first_byte_timeout: millis("upstream.first_byte_timeout_ms", raw.upstream.first_byte_timeout_ms, 120_000)?,
            total_timeout: millis("upstream.total_timeout_ms", raw.upstream.total_timeout_ms, 600_000)?,
            models_timeout: millis("upstream.models_timeout_ms", raw.upstream.models_timeout_ms, 5_000)?,
            models_cache: millis("upstream.models_cache_ms", raw.upstream.models_cache_ms, 60_000)?,
            max_response_bytes: match raw.upstream.max_response_bytes {
                Some(0) => return Err(invalid("upstream.max_response_bytes", "must be greater than 0")),
                Some(n) => n,
                None => 32 * 1024 * 1024,
            },
        };

        let database_url = env.var("DATABASE_URL").map(SecretString::from);
        let dev_setup = database_url.is_none();
        let mut providers = BTreeMap::new();
        for (name, p) in raw.providers {
            if !valid_provider_name(&name) {
                return Err(invalid(
                    format!("providers.{name}"),
                    "provider names use lowercase letters, digits, '-' and '_' (at most 64)",
                ));
            }
            let plugin = p.plugin.unwrap_or_else(|| name.clone());
            let builtin = credentials::builtin(&name, &plugin);
            let enabled = p.enabled.unwrap_or(true);
            let base_field = format!("providers.{name}.base_url");
            let base_env = provider_env_name(&name, "BASE_URL");
            let base_url = match (env.var(&base_env), &p.base_url, builtin) {
                (Some(v), _, _) => Some(parse_base_url(&base_env, &v)?),
                (None, Some(v), _) => Some(parse_base_url(&base_field, v)?),
                (None, None, Some(b)) => Some(parse_base_url(&base_field, b.base_url)?),
                (None, None, None) if !enabled => None,
                (None, None, None) => {
                    return Err(invalid(
                        base_field,
                        format!(
                            "provider `{name}` (plugin `{plugin}`) has no built-in base URL: set the URL its key is \
                             sent to (or {base_env}); a plugin never chooses it"
                        ),
                    ));
                }
            };
            let placement = match p.auth {
                Some(a) => KeyPlacement::from_config(a.header.as_deref(), a.scheme.as_deref(), a.query.as_deref())
                    .map_err(|message| invalid(format!("providers.{name}.auth"), message))?,
                None => builtin.map_or_else(KeyPlacement::bearer, |b| (b.placement)()),
            };
            let api_key_env = p.api_key_env.unwrap_or_else(|| provider_env_name(&name, "API_KEY"));
            if let Some(models) = &p.models
                && models.iter().any(|m| m.trim().is_empty())
            {
                return Err(invalid(format!("providers.{name}.models"), "model names must not be empty"));
            }
            providers.insert(
                name.clone(),
                ProviderConfig {
                    plugin,
                    base_url,
                    placement,
                    api_key: env.var(&api_key_env).map(SecretString::from),
                    api_key_env,
                    models: p.models,
                    enabled,
                    unpriced: p.unpriced.unwrap_or(UnpricedPolicy::default_for(dev_setup)),
                },
            );
        }

        for (alias, target) in &raw.aliases {
            let field = format!("aliases.{alias}");
            let Some((provider, model)) = target.split_once(':') else {
                return Err(invalid(field, format!("`{target}` must be `provider:model`")));
            };
            if !valid_provider_name(provider) || model.is_empty() {
                return Err(invalid(field, format!("`{target}` must be `provider:model`")));
            }
            if alias.contains(':') {
                return Err(invalid(field, "an alias is a bare model name, without ':'"));
            }
        }

        let routes = routes(raw.routes, &raw.aliases, &providers, env)?;
        let routing = routing(raw.routing)?;

        let currency = raw.billing.currency.unwrap_or_else(|| "USD".to_owned());
        if !aigate_core::pricing::is_currency_code(&currency) {
            return Err(invalid("billing.currency", format!("`{currency}` is not an ISO 4217 code like USD")));
        }
        let billing = BillingConfig {
            currency,
            ledger_retention_days: raw.billing.ledger_retention_days.unwrap_or(90),
            price_refresh: millis("billing.price_refresh_ms", raw.billing.price_refresh_ms, 30_000)?,
        };
        let key_cache_ttl = millis("auth.key_cache_ttl_ms", raw.auth.key_cache_ttl_ms, 10_000)?;
        let limits = LimitsConfig {
            key_rpm: raw.limits.key_rpm,
            key_tpm: raw.limits.key_tpm,
            org_rpm: raw.limits.org_rpm,
            org_tpm: raw.limits.org_tpm,
            default_completion_tokens: raw.limits.default_completion_tokens.unwrap_or(1024),
            fail_open: raw.limits.fail_open.unwrap_or(true),
            budget_cache: millis("limits.budget_cache_ms", raw.limits.budget_cache_ms, 5_000)?,
            key_concurrent_streams: positive("limits.key_concurrent_streams", raw.limits.key_concurrent_streams, 50)?,
            org_concurrent_streams: positive("limits.org_concurrent_streams", raw.limits.org_concurrent_streams, 200)?,
        };
        let idempotency = IdempotencyConfig {
            ttl: match raw.idempotency.ttl_hours {
                Some(0) => return Err(invalid("idempotency.ttl_hours", "must be greater than 0")),
                Some(h) => Duration::from_secs(h.saturating_mul(3600)),
                None => Duration::from_secs(24 * 3600),
            },
            lease: millis("idempotency.lease_ms", raw.idempotency.lease_ms, 30_000)?,
            max_stored_bytes: positive(
                "idempotency.max_stored_bytes",
                raw.idempotency.max_stored_bytes,
                4 * 1024 * 1024,
            )?,
            memory_max_entries: positive(
                "idempotency.memory_max_entries",
                raw.idempotency.memory_max_entries,
                100_000,
            )?,
            memory_max_bytes: positive(
                "idempotency.memory_max_bytes",
                raw.idempotency.memory_max_bytes,
                256 * 1024 * 1024,
            )?,
        };
        let redis_url = env.var("REDIS_URL").map(SecretString::from);
        let redis_prefix = env.var("AIGATE_REDIS_PREFIX").unwrap_or_else(|| "aigate:".to_owned());
        let admin_token = env.var("AIGATE_ADMIN_TOKEN").map(SecretString::from);
        if let Some(token) = &admin_token
            && secrecy::ExposeSecret::expose_secret(token).len() < 16
        {
            return Err(invalid("AIGATE_ADMIN_TOKEN", "must be at least 16 characters"));
        }

        Ok(Config {
            listen,
            plugins_dir,
            data_dir,
            max_body_bytes,
            shutdown_timeout,
            serving_threads,
            plugins,
            upstream,
            streams,
            providers,
            aliases: raw.aliases,
            routes,
            routing,
            source: None,
            database_url,
            redis_url,
            redis_prefix,
            admin_token,
            key_cache_ttl,
            billing,
            limits,
            idempotency,
            metrics,
        })
    }

    /// The dev setup: no `DATABASE_URL`, so the embedded SQLite database in
    /// the data folder. Only there does `serve` create a dev key by itself,
    /// and do providers allow unpriced calls by default.
    pub fn is_dev_setup(&self) -> bool {
        self.database_url.is_none()
    }

    /// The settings of provider `name`, whether configured or implied by a loaded plugin.
    ///
    /// A provider implied by a plugin (no entry in config) gets no key, even when
    /// `<NAME>_API_KEY` is set: the operator has not said where that key may go. It serves only
    /// if its plugin asks for no credential, at `<NAME>_BASE_URL` or the plugin's default.
    pub fn provider(&self, name: &str, env: &dyn Env) -> ProviderConfig {
        match self.providers.get(name) {
            Some(p) => p.clone(),
            None => ProviderConfig {
                plugin: name.to_owned(),
                base_url: env.var(&provider_env_name(name, "BASE_URL")).and_then(|v| parse_base_url("", &v).ok()),
                placement: KeyPlacement::bearer(),
                api_key_env: provider_env_name(name, "API_KEY"),
                api_key: None,
                models: None,
                enabled: true,
                unpriced: UnpricedPolicy::default_for(self.is_dev_setup()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn load(toml_text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let raw = Config::parse_toml(Path::new("test.toml"), toml_text)?;
        Config::from_raw(raw, &env(pairs))
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let cfg = load("", &[]).unwrap();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.plugins_dir, PathBuf::from(DEFAULT_PLUGINS_DIR));
        assert_eq!(cfg.plugins.memory_limit_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn trusted_hashes_are_validated_and_the_environment_wins() {
        let a = "AB".repeat(32);
        let cfg = load(&format!("[plugins]\ntrusted_hashes = [\"{a}\"]\n"), &[]).unwrap();
        assert_eq!(cfg.plugins.trusted_hashes, Some(vec!["ab".repeat(32)]));
        assert_eq!(load("", &[]).unwrap().plugins.trusted_hashes, None, "unset trusts the folder");
        let b = "cd".repeat(32);
        let cfg = load(
            &format!("[plugins]\ntrusted_hashes = [\"{a}\"]\n"),
            &[("AIGATE_TRUSTED_PLUGINS", &format!("{b}, {a}"))],
        )
        .unwrap();
        assert_eq!(cfg.plugins.trusted_hashes, Some(vec![b, "ab".repeat(32)]));
        let err = load("[plugins]\ntrusted_hashes = [\"abc\"]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("plugins.trusted_hashes") && err.contains("64 hex"), "{err}");
        let err = load("", &[("AIGATE_TRUSTED_PLUGINS", &"g".repeat(64))]).unwrap_err().to_string();
        assert!(err.contains("AIGATE_TRUSTED_PLUGINS"), "{err}");
    }

    #[test]
    fn serving_threads_default_to_the_cores_and_the_environment_wins() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(load("", &[]).unwrap().serving_threads, cores);
        assert_eq!(load("serving_threads = 3", &[]).unwrap().serving_threads, 3);
        assert_eq!(load("serving_threads = 3", &[("AIGATE_SERVING_THREADS", " 1 ")]).unwrap().serving_threads, 1);
        for (text, pairs, needle) in [
            ("serving_threads = 0", vec![], "greater than 0"),
            ("", vec![("AIGATE_SERVING_THREADS", "0")], "greater than 0"),
            ("", vec![("AIGATE_SERVING_THREADS", "two")], "AIGATE_SERVING_THREADS"),
            ("serving_threads = 5000", vec![], "1024"),
        ] {
            let err = load(text, &pairs).unwrap_err().to_string();
            assert!(err.contains("serving_threads") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let cfg = load(
            "listen = \"127.0.0.1:1\"\n[providers.qwen]\nbase_url = \"https://example.com/v1\"\n",
            &[("AIGATE_LISTEN", "0.0.0.0:9000"), ("QWEN_BASE_URL", "http://127.0.0.1:7/v1"), ("QWEN_API_KEY", "sk-x")],
        )
        .unwrap();
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:9000");
        let qwen = &cfg.providers["qwen"];
        assert_eq!(qwen.base_url.as_ref().unwrap().as_str(), "http://127.0.0.1:7/v1");
        assert!(qwen.api_key.is_some());
        assert_eq!(qwen.api_key_env, "QWEN_API_KEY");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("[plugins]\nmemory_limit_mib = 0", "plugins.memory_limit_mib"),
            ("[upstream]\nconnect_timeout_ms = 0", "upstream.connect_timeout_ms"),
            ("[streams]\nmax_line_bytes = 0", "streams.max_line_bytes"),
            ("[limits]\norg_concurrent_streams = 0", "limits.org_concurrent_streams"),
            ("[idempotency]\nmax_stored_bytes = 0", "idempotency.max_stored_bytes"),
            ("[providers.qwen]\nbase_url = \"ftp://x\"", "providers.qwen.base_url"),
            ("[providers.\"Bad Name\"]", "providers.Bad Name"),
            ("[aliases]\nturbo = \"qwen-turbo\"", "aliases.turbo"),
        ];
        for (text, field) in cases {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{text:?} gave {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load("listn = \"127.0.0.1:1\"", &[]).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn an_implied_provider_gets_no_key() {
        let cfg = load("", &[]).unwrap();
        let p = cfg.provider(
            "deep-seek",
            &env(&[("DEEP_SEEK_API_KEY", "k"), ("DEEP_SEEK_BASE_URL", "http://127.0.0.1:1/v1")]),
        );
        assert_eq!(p.plugin, "deep-seek");
        assert_eq!(p.api_key_env, "DEEP_SEEK_API_KEY");
        assert!(p.api_key.is_none(), "no entry in config: the operator has not said where the key may go");
        assert_eq!(p.base_url.unwrap().as_str(), "http://127.0.0.1:1/v1");
    }

    #[test]
    fn only_a_shipped_provider_under_its_own_name_has_a_default_base_url() {
        let cfg = load("[providers.qwen]\n[providers.anthropic]\n", &[]).unwrap();
        assert_eq!(
            cfg.providers["qwen"].base_url.as_ref().unwrap().as_str(),
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
        );
        assert_eq!(cfg.providers["qwen"].placement, KeyPlacement::bearer());
        assert_eq!(cfg.providers["anthropic"].placement.to_string(), "header `x-api-key: <key>`");

        for text in ["[providers.deepseek]\nplugin = \"openai\"\n", "[providers.faulty]\n"] {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains("base_url`") && err.contains("no built-in base URL"), "{err}");
        }
        let err = load("[providers.deepseek]\nplugin = \"openai\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`providers.deepseek.base_url`"), "{err}");
        let cfg = load(
            "[providers.deepseek]\nplugin = \"openai\"\n",
            &[("DEEPSEEK_BASE_URL", "https://api.deepseek.com/v1")],
        );
        assert!(cfg.is_ok(), "the environment may set it");
        assert!(load("[providers.faulty]\nenabled = false\n", &[]).is_ok(), "a disabled entry needs none");
    }

    #[test]
    fn the_key_placement_is_the_operators() {
        let cfg = load(
            "[providers.gemini]\nbase_url = \"https://g.example/v1\"\nauth = { query = \"key\" }\n\
             [providers.other]\nbase_url = \"https://o.example\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.providers["gemini"].placement, KeyPlacement::Query { name: "key".into() });
        assert_eq!(cfg.providers["other"].placement, KeyPlacement::bearer(), "the default without `auth`");
        let err = load("[providers.qwen]\nauth = { header = \"host\" }\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`providers.qwen.auth`") && err.contains("host"), "{err}");
    }

    #[test]
    fn without_a_file_the_shipped_providers_are_named() {
        let cfg = Config::from_raw(RawConfig::without_file(), &env(&[("QWEN_API_KEY", "sk")])).unwrap();
        let qwen = &cfg.providers["qwen"];
        assert!(qwen.api_key.is_some());
        assert_eq!(qwen.base_url.as_ref().unwrap().host_str(), Some("dashscope-intl.aliyuncs.com"));
        assert!(cfg.providers.contains_key("openai") && cfg.providers.contains_key("anthropic"));
    }
}
