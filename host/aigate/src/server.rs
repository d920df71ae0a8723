//! The HTTP server: state, routes and the middleware stack.
//!
//! Layers, outermost first (each request passes them in this order):
//! 1. `request_id::assign`: gives the request the gateway's own
//!    `x-request-id` (the ledger key; a client's id is kept apart as
//!    `x-client-request-id`, see `request_id.rs`) and puts both on every
//!    response.
//! 2. `log_requests`: one log line per request with its ids, status and
//!    latency; error responses are logged here, once, with their source.
//! 3. `CatchPanic`: a panic in a handler becomes a 500 OpenAI-shaped error
//!    instead of a dropped connection.
//! 4. The routes. Unknown paths and methods get OpenAI-shaped 404/405 errors. The admin
//!    routes add `admin::require_admin`; the operator console (`/console`, `console.rs`)
//!    adds its own (console off without the admin token, its security headers).
//!
//! Health: `/health` (the process answers), `/health/live` (the same, for liveness probes),
//! `/health/ready` (the database answers, Redis when configured, at least one plugin is
//! loaded; 503 naming what is not). Metrics: `/metrics` on the main listener (behind the admin
//! token unless `metrics.require_admin_token = false`) and, with `AIGATE_METRICS_LISTEN`, alone
//! on a listener of its own, unauthenticated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aigate_plugins::{PluginRegistry, PluginRuntime, RuntimeConfig, WatchGuard};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::Authenticator;
use crate::billing::Billing;
use crate::config::{Config, Env};
use crate::error::{ApiError, ErrorSource, LoggedError};
use crate::limits::Limits;
use crate::metering::{LedgerSink, UsageSink};
use crate::metrics::Metrics;
use crate::router::Health;
use crate::routing::Providers;
use crate::serving::ServingThreads;
use crate::upstream::Upstream;
use crate::{admin, chat, models, request_id};
use aigate_admission::ConnectionManager;
use aigate_admission::{
    CircuitBreaker, IdempotencyStore, MemoryCircuitBreaker, MemoryIdempotencyStore, MemoryRateLimiter, RateLimiter,
    RedisCircuitBreaker, RedisIdempotencyStore, RedisOptions, RedisRateLimiter, RedisSessionStore, connection_manager,
};
use aigate_store::{PriceRepo, Store, UsageRepo, UsageWriter, WriterOptions};
use secrecy::ExposeSecret;

/// Everything a request may need; one per gateway, shared by all requests.
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<PluginRegistry>,
    pub providers: Providers,
    pub upstream: Upstream,
    pub store: Store,
    pub auth: Authenticator,
    pub billing: Arc<Billing>,
    pub usage: Arc<dyn UsageSink>,
    pub limits: Limits,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Circuits and latencies of deployments (`router.rs`).
    pub health: Health,
    /// Live model lists per provider (`models.rs`).
    pub models: crate::models::ModelsCache,
    /// Cancelled when a stopping gateway's `shutdown_timeout_ms` has passed:
    /// calls still running end (metered) so the gateway can exit.
    pub stop_calls: CancellationToken,
    /// Prometheus metrics (`metrics.rs`).
    pub metrics: Arc<Metrics>,
    /// The Redis connection of limits and idempotency, when `REDIS_URL` is set (readiness).
    pub redis: Option<(ConnectionManager, RedisOptions)>,
    /// Signed-in operator console sessions of this replica (`console.rs`).
    pub console: crate::console::ConsoleSessions,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics_main))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::get))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(crate::messages::messages))
        .route("/v1/responses", post(crate::responses::responses))
        .route("/v1/embeddings", post(crate::embeddings::embeddings))
        .route("/v1/messages/count_tokens", post(crate::messages::count_tokens))
        .merge(admin_routes(state.clone()))
        .merge(crate::console::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("The gateway hit an internal error; it has been logged. Try again.").into_response()
        }))
        .layer(middleware::from_fn(log_requests))
        .layer(middleware::from_fn(request_id::assign))
}

/// `/admin/*`, every route behind the admin token (`admin::require_admin`), and no answer of
/// theirs kept by a cache on the way (a new key is in one; every one is an operator's view).
fn admin_routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/plugins", get(admin::plugins))
        .route("/admin/routes", get(admin::routes))
        .route("/admin/keys", get(admin::get_keys).post(admin::post_key))
        .route("/admin/keys/{prefix}/revoke", post(admin::post_revoke))
        .route("/admin/prices", get(admin::get_prices).post(admin::post_price))
        .route("/admin/prices/seed", post(admin::post_seed))
        .route("/admin/usage", get(admin::get_usage))
        .route("/admin/requests", get(admin::get_requests))
        .route("/admin/requests/{id}", get(admin::get_request))
        .route("/admin/orgs", get(admin::get_orgs))
        .route("/admin/orgs/{org}", post(admin::post_org))
        .route_layer(middleware::from_fn_with_state(state, admin::require_admin))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        ))
}

/// `/health` and `/health/live`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Liveness {
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
    /// Provider plugins loaded.
    plugins: usize,
}

/// `/health/ready`: `ready`, or `not_ready` with each failing part and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(value_type = String)]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugins: Option<usize>,
    /// Part (`database`, `redis`, `plugins`) → why it fails.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    failing: BTreeMap<&'static str, String>,
}

/// The process is up (kept for the clients of the first versions; `/health/live` is the same).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up.", body = Liveness)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Liveness> {
    Json(Liveness { status: "ok", plugins: state.registry.plugins().len() })
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Up.", body = Liveness)))]
pub async fn live(state: State<Arc<AppState>>) -> Json<Liveness> {
    health(state).await
}

/// Readiness: 200 when every part a call needs answers (the database, Redis when configured,
/// at least one plugin), else 503 naming each part that does not.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready: `failing` names the parts.", body = Readiness)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let timeout = std::time::Duration::from_secs(2);
    let mut failing = BTreeMap::new();
    match tokio::time::timeout(timeout, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            failing.insert("database", e.to_string());
        }
        Err(_) => {
            failing.insert("database", "no answer within 2 s".to_owned());
        }
    }
    if let Some((conn, options)) = &state.redis
        && let Err(e) = aigate_admission::redis_ping(conn, options).await
    {
        failing.insert("redis", e.to_string());
    }
    let plugins = state.registry.plugins().len();
    if plugins == 0 {
        failing.insert("plugins", "no provider plugin is loaded".to_owned());
    }
    if failing.is_empty() {
        Json(Readiness { status: "ready", plugins: Some(plugins), failing }).into_response()
    } else {
        let body = Readiness { status: "not_ready", plugins: None, failing };
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Prometheus metrics (text exposition) on the main listener: behind the admin token unless
/// `[metrics] require_admin_token = false`; `AIGATE_METRICS_LISTEN` serves them apart, open.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("admin_token" = [])),
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String),
        crate::openapi::AdminErrors))]
pub async fn metrics_main(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    if state.config.metrics.require_admin_token
        && let Err(e) = admin::guard(&state, &headers)
    {
        return e.into_response();
    }
    metrics_text(&state)
}

async fn metrics_open(State(state): State<Arc<AppState>>) -> Response {
    metrics_text(&state)
}

fn metrics_text(state: &AppState) -> Response {
    let text = state.metrics.render(&state.registry, state.usage.writer());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn not_found() -> Response {
    ApiError::not_found(
        "No such endpoint. This gateway serves /v1/chat/completions, /v1/messages, /v1/responses, /v1/embeddings, /v1/models and /health; its API is described at /openapi.json.",
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}

async fn log_requests(request: Request<Body>, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let id = request_id::of(request.headers());
    let client = request_id::client_of(request.headers()).unwrap_or_default();
    let span = crate::telemetry::request_span(&method, &path, request.headers());
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // Who called and who answered, when a model API handled it (`chat::count_request`).
    let caller = response.extensions().get::<chat::Caller>();
    let served = response.extensions().get::<chat::ServedBy>();
    let org = caller.map_or("", |c| c.tenant.org_name.as_str());
    let key = caller.map_or("", |c| c.tenant.key_prefix.as_str());
    let api = caller.map_or("", |c| c.api);
    let provider = served.map_or("", |s| &*s.provider);
    let model = served.map_or("", |s| s.model.as_str());
    let cost = response.headers().get("x-aigate-cost").and_then(|v| v.to_str().ok()).unwrap_or("");
    match response.extensions().get::<LoggedError>() {
        Some(e) if matches!(e.source, ErrorSource::Internal | ErrorSource::Plugin) => {
            tracing::error!(request_id = %id, client_request_id = %client, %method, %path, status, ms, org, key, api, provider, model, source = ?e.source, code = ?e.code, "{}", e.message);
        }
        Some(e) if e.source == ErrorSource::Upstream => {
            tracing::warn!(request_id = %id, client_request_id = %client, %method, %path, status, ms, org, key, api, provider, model, code = ?e.code, "{}", e.message);
        }
        Some(e) => {
            tracing::info!(request_id = %id, client_request_id = %client, %method, %path, status, ms, org, key, api, provider, model, code = ?e.code, "{}", e.message)
        }
        None => {
            tracing::info!(request_id = %id, client_request_id = %client, %method, %path, status, ms, org, key, api, provider, model, cost, "request")
        }
    }
    response
}

/// After the shutdown deadline has ended the calls in flight, how long the
/// server may take to close their connections before it is dropped.
const FINAL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running gateway. Dropping it does not stop it; call [`Gateway::shutdown`].
pub struct Gateway {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    /// The threads serving the listener (`serving.rs`).
    serving: ServingThreads,
    _watch: Option<WatchGuard>,
    /// Watches the config file for route changes (`reload.rs`).
    _config_watch: Option<crate::reload::ConfigWatch>,
    /// The metrics listener (`AIGATE_METRICS_LISTEN`): its address and task.
    metrics: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
    writer: Option<(UsageWriter, JoinHandle<()>)>,
}

/// The state replicas share: limits, idempotency and circuits, and the Redis connection
/// behind them when there is one.
type Admission = (
    Arc<dyn RateLimiter>,
    Arc<dyn IdempotencyStore>,
    Arc<dyn CircuitBreaker>,
    Option<(ConnectionManager, RedisOptions)>,
);

/// In-process limits, idempotency and circuits, or Redis-backed ones shared by
/// every replica when `REDIS_URL` is set (connected lazily: the gateway starts
/// even while Redis is down, and reconnects when it returns).
fn admission_backends(config: &Config) -> anyhow::Result<Admission> {
    match &config.redis_url {
        None => {
            let idem = &config.idempotency;
            let store = MemoryIdempotencyStore::with_limits(idem.memory_max_entries, idem.memory_max_bytes);
            Ok((Arc::new(MemoryRateLimiter::new()), Arc::new(store), Arc::new(MemoryCircuitBreaker::new()), None))
        }
        Some(url) => {
            let options = RedisOptions::with_prefix(config.redis_prefix.clone());
            let conn = connection_manager(url.expose_secret(), &options)
                .map_err(|e| anyhow::anyhow!("invalid REDIS_URL: {e}"))?;
            Ok((
                Arc::new(RedisRateLimiter::new(conn.clone(), &options)),
                Arc::new(RedisIdempotencyStore::new(conn.clone(), &options)),
                Arc::new(RedisCircuitBreaker::new(conn.clone(), &options)),
                Some((conn, options)),
            ))
        }
    }
}

/// Connects to `DATABASE_URL` (or the SQLite file in the data folder) and migrates.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url.as_ref().map(|u| u.expose_secret().to_owned());
    let store = Store::connect(url.as_deref(), &config.data_dir).await?;
    store.migrate().await?;
    Ok(store)
}

/// `GET /metrics` alone on a listener of its own, unauthenticated, until `stopped`.
async fn serve_metrics(
    at: SocketAddr,
    state: Arc<AppState>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {at} (AIGATE_METRICS_LISTEN): {e}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(metrics_open)).with_state(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok((addr, task))
}

/// Prunes ledger rows older than the retention, hourly, in bounded batches.
fn spawn_retention(store: Store, days: u32) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
            loop {
                match store.prune_ledger(cutoff, 1000).await {
                    Ok(0) => break,
                    Ok(n) => tracing::info!(rows = n, "pruned ledger rows past retention"),
                    Err(e) => {
                        tracing::warn!("ledger pruning failed: {e}");
                        break;
                    }
                }
                tokio::task::yield_now().await;
            }
        }
    });
}

impl Gateway {
    /// Opens the store (migrating it), loads the plugins, binds
    /// `config.listen` (port 0 picks a free port) and serves.
    pub async fn start(config: Config, env: Arc<dyn Env + Send + Sync>) -> anyhow::Result<Gateway> {
        let store = open_store(&config).await?;
        // The shipped list prices, for models nobody priced yet (never over an
        // operator's rule), so a fresh database does not serve calls for free.
        match store.seed_shipped().await {
            Ok(s) if s.added > 0 => tracing::info!(rules = s.added, "seeded the shipped price rules"),
            Ok(_) => {}
            Err(e) => tracing::warn!("shipped price rules not seeded ({e}); run `aigate prices seed`"),
        }
        let (writer, writer_task) =
            UsageWriter::start(store.clone(), &config.data_dir.join("spool"), WriterOptions::default())?;
        let sink = Arc::new(LedgerSink { writer: writer.clone() });
        let mut gateway = Self::start_with(config, env, store, sink).await?;
        gateway.writer = Some((writer, writer_task));
        Ok(gateway)
    }

    /// Like [`Gateway::start`] with a given store and usage sink (benchmarks, tests).
    pub async fn start_with(
        config: Config,
        env: Arc<dyn Env + Send + Sync>,
        store: Store,
        usage: Arc<dyn UsageSink>,
    ) -> anyhow::Result<Gateway> {
        let config = Arc::new(config);
        let runtime = PluginRuntime::new(RuntimeConfig {
            memory_limit_bytes: config.plugins.memory_limit_bytes,
            cpu_timeout: config.plugins.cpu_timeout,
            wall_timeout: config.plugins.wall_timeout,
            max_instances: config.plugins.max_instances,
            cache_dir: Some(config.plugins.cache_dir.clone()),
            compiler: config.plugins.compiler.clone(),
        })?;
        // Without an allowlist, write access to the plugins folder is the trust boundary.
        let registry = PluginRegistry::with_trusted_hashes(runtime, config.plugins.trusted_hashes.clone());
        let (loaded, watch_guard) = registry.start(&config.plugins_dir, config.plugins.watch).await?;
        if loaded == 0 {
            tracing::warn!(dir = %config.plugins_dir.display(), "no provider plugin loaded: run `cargo xtask build-plugins` or set AIGATE_PLUGINS_DIR");
        }
        let billing = Arc::new(Billing::new(config.billing.currency.clone()));
        billing.prices.reload(&store).await?;
        billing.spawn_refresh(store.clone(), config.billing.price_refresh);
        spawn_retention(store.clone(), config.billing.ledger_retention_days);
        let (limiter, idempotency, circuits, redis) = admission_backends(&config)?;
        let limits = Limits::new(limiter, config.limits.clone(), store.clone(), config.billing.currency.clone());
        // Console sessions on Redis when replicas share one: a session opened on one serves on all.
        let console = match &redis {
            Some((conn, options)) => crate::console::ConsoleSessions::new(
                crate::console::SESSION_TTL,
                Arc::new(RedisSessionStore::new(conn.clone(), options)),
            ),
            None => crate::console::ConsoleSessions::default(),
        };
        let state = Arc::new(AppState {
            limits,
            idempotency,
            health: Health::new(circuits, &config.routing),
            models: crate::models::ModelsCache::default(),
            providers: Providers::new(config.clone(), env.clone()),
            upstream: Upstream::with_pools(config.upstream.clone(), config.serving_threads)?,
            auth: Authenticator::new(store.clone(), config.key_cache_ttl),
            billing,
            store,
            config: config.clone(),
            registry,
            usage,
            stop_calls: CancellationToken::new(),
            metrics: Arc::new(Metrics::new()),
            redis,
            console,
        });
        let listener = crate::serving::bind(config.listen, config.serving_threads)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {} (AIGATE_LISTEN): {e}", config.listen))?;
        let addr = listener[0].local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let serving = ServingThreads::start(listener, router(state.clone()), stopped)
            .map_err(|e| anyhow::anyhow!("cannot start the serving threads: {e}"))?;
        let metrics_listener = match config.metrics.listen {
            Some(at) => Some(serve_metrics(at, state.clone(), stop.subscribe()).await?),
            None => None,
        };
        let config_watch = match (&config.source, config.plugins.watch) {
            (Some(file), true) => match crate::reload::watch(&state, file, env) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(file = %file.display(), "cannot watch the config file, routes reload at restart only: {e}");
                    None
                }
            },
            _ => None,
        };
        tracing::info!(%addr, plugins = loaded, store = state.store.backend(), "AIGate listening");
        Ok(Gateway {
            addr,
            state,
            stop,
            serving,
            metrics: metrics_listener,
            _watch: watch_guard,
            _config_watch: config_watch,
            writer: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the metrics listener, when `AIGATE_METRICS_LISTEN` set one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, lets requests in flight finish within
    /// `shutdown_timeout_ms`, ends (and meters) those still running after
    /// it, drains the usage records to the ledger (or the spool), then returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Serves until shutdown is asked (see [`Gateway::stopper`]), then drains
    /// as [`Gateway::shutdown`] does.
    pub async fn wait(self) -> anyhow::Result<()> {
        let Gateway { mut serving, _watch, writer, state, stop, .. } = self;
        let mut stopping = stop.subscribe();
        let deadline = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(state.config.shutdown_timeout).await;
        };
        let in_time = tokio::select! {
            served = serving.stopped() => Some(served),
            () = deadline => None,
        };
        let served = match in_time {
            Some(served) => served,
            None => {
                tracing::warn!(
                    timeout_ms = u64::try_from(state.config.shutdown_timeout.as_millis()).unwrap_or(u64::MAX),
                    "shutdown_timeout_ms passed: ending the calls still running"
                );
                state.stop_calls.cancel();
                // Ended calls are metered at once; what may remain are
                // connections to clients that stopped reading.
                match tokio::time::timeout(FINAL_GRACE, serving.stopped()).await {
                    Ok(served) => served,
                    Err(_) => {
                        serving.abort();
                        serving.stopped().await
                    }
                }
            }
        };
        if let Some((writer, writer_task)) = writer {
            writer.shutdown().await;
            let _ = writer_task.await;
        }
        state.store.close().await;
        // Only now: connections opened on the serving threads' runtimes served the drain.
        serving.release().await;
        served?;
        Ok(())
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}
