//! The `aigate` binary: `aigate serve` runs the gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aigate::Gateway;
use aigate::cli::{AdminCommand, KeysCommand, OrgsCommand, PricesCommand};
use aigate::config::{Config, ProcessEnv};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc, not glibc's malloc: per request the gateway makes many small allocations across
/// its worker threads, and under load it spent ~14 % of its CPU in glibc's malloc and free;
/// with jemalloc the CPU per request at 32 connections is 15–30 % lower (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (before `main`); `_RJEM_MALLOC_CONF` in the
/// environment overrides them. Two arenas (the default is four per core) and freed pages
/// handed back within a second keep resident memory as low as with glibc (measured: at 32
/// streams 56–58 MiB, against 64–66 MiB with jemalloc's defaults). On a machine with many cores
/// and heavy load, more arenas may pay: `_RJEM_MALLOC_CONF=narenas:8`.
// SAFETY: the symbol jemalloc reads its options from is a `const char *`; this static is a thin
// pointer to a NUL-terminated byte string that lives for the whole process and is never written.
#[allow(unsafe_code, reason = "exporting jemalloc's option symbol is the documented way to set them")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 47] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(name = "aigate", version, about = "An OpenAI-compatible AI gateway with WebAssembly provider plugins")]
struct Cli {
    /// Config file (TOML). Also AIGATE_CONFIG; default ./aigate.toml when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "AIGATE_LOG_JSON")]
    log_json: bool,
    /// Log format: `text` (default) or `json` (one JSON object per line); `json` is the
    /// same as --log-json.
    #[arg(long, global = true, env = "AIGATE_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (the default).
    Serve,
    /// Check the configuration and print the effective settings.
    CheckConfig,
    /// Apply the database migrations (`serve` also does).
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage price rules.
    Prices {
        #[command(subcommand)]
        command: PricesCommand,
    },
    /// Show an org's usage and billed cost (from the daily rollups).
    Usage {
        #[arg(long)]
        org: String,
        /// First day, YYYY-MM-DD (default: 30 days ago).
        #[arg(long)]
        from: Option<String>,
        /// Day after the last, YYYY-MM-DD (default: tomorrow).
        #[arg(long)]
        to: Option<String>,
    },
    /// Manage organisations.
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a plugin as the gateway would and run the conformance fixtures against it; exits
    /// non-zero when any check fails.
    Check {
        /// The component (`.wasm`) to check.
        file: PathBuf,
        /// Fixture root holding `<provider>/<case>/` folders. Default: ./fixtures when present.
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
}

/// `aigate plugin check`: needs no configuration, only the file and the fixtures.
fn plugin_check(file: &std::path::Path, fixtures: Option<PathBuf>) -> ExitCode {
    use aigate_plugins::{PluginRuntime, RuntimeConfig, conformance};
    let fixtures = fixtures.or_else(|| Some(PathBuf::from("fixtures")).filter(|dir| dir.is_dir()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aigate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(async {
        // The gateway's own defaults: the same engine, limits and contract check.
        let plugins = PluginRuntime::new(RuntimeConfig::default())?;
        anyhow::Ok(conformance::check(&plugins, file, fixtures.as_deref()).await)
    });
    match report {
        Ok(report) => {
            println!("{report}");
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("aigate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> aigate::logging::LogGuard {
    let filter = EnvFilter::try_from_env("AIGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    aigate::logging::init(json, filter, tracer)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The hidden subcommand that compiles one plugin component (`aigate_plugins::compiler`).
const COMPILE_PLUGIN: &str = "__compile-plugin";

/// Longest a plugin compile may take before its child process is stopped.
const COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn main() -> ExitCode {
    // The plugin compiler child: no configuration, no logging, no `.env`; stdin to stdout.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == COMPILE_PLUGIN) {
        let status = aigate_plugins::compiler::child_main(&args[2..]);
        return ExitCode::from(u8::try_from(status).unwrap_or(1));
    }
    let cli = Cli::parse();
    // `.env` in the working directory, if any, fills unset variables.
    // Runs before any other thread exists, as setting variables requires.
    let _ = dotenvy::dotenv();
    // OpenTelemetry traces when the environment names an OTLP endpoint (`telemetry.rs`).
    let traces = match aigate::telemetry::Traces::from_env(&|name| std::env::var(name).ok()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("aigate: traces cannot be exported ({e}); check OTEL_EXPORTER_OTLP_ENDPOINT");
            return ExitCode::from(2);
        }
    };
    // Held to the end of `main`: dropping it flushes the log queue.
    let json = cli.log_json || cli.log_format.as_deref() == Some("json");
    let _log = init_logging(json, traces.as_ref().map(aigate::telemetry::Traces::tracer));
    if let Some(Command::Plugin { command: PluginCommand::Check { file, fixtures } }) = cli.command {
        return plugin_check(&file, fixtures);
    }
    let config = match Config::load(cli.config.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aigate: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("listen = {}", config.listen);
            println!("plugins_dir = {}", config.plugins_dir.display());
            println!("data_dir = {}", config.data_dir.display());
            for (name, p) in &config.providers {
                println!(
                    "provider {name}: plugin={} base_url={} key={} ({})",
                    p.plugin,
                    p.base_url.as_ref().map_or("<plugin default>".to_owned(), |u| u.to_string()),
                    if p.api_key.is_some() { "set" } else { "missing" },
                    p.api_key_env
                );
            }
            ExitCode::SUCCESS
        }
        Command::Plugin { .. } => ExitCode::SUCCESS,
        Command::Serve => block_on(serve(config, traces)),
        Command::Migrate => block_on(aigate::cli::run(&config, AdminCommand::Migrate)),
        Command::Keys { command } => block_on(aigate::cli::run(&config, AdminCommand::Keys(command))),
        Command::Prices { command } => block_on(aigate::cli::run(&config, AdminCommand::Prices(command))),
        Command::Usage { org, from, to } => block_on(aigate::cli::run(&config, AdminCommand::Usage { org, from, to })),
        Command::Orgs { command } => block_on(aigate::cli::run(&config, AdminCommand::Orgs(command))),
    }
}

/// Runs a command on a fresh runtime; an error is printed and exits 1.
fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aigate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut config: Config, traces: Option<aigate::telemetry::Traces>) -> anyhow::Result<()> {
    // Plugins are compiled by a child process of this executable: the compiler's code and memory
    // stay out of the server, and a compile that crashes or hangs ends only the child.
    match aigate_plugins::Compiler::this_executable(COMPILE_PLUGIN, COMPILE_TIMEOUT) {
        Ok(compiler) => config.plugins.compiler = compiler,
        Err(e) => tracing::warn!("cannot find this executable ({e}); plugins are compiled in the server process"),
    }
    if let Some(traces) = &traces {
        traces.attach(tokio::runtime::Handle::current());
    }
    // First start of the dev setup (embedded SQLite, empty): a dev org and
    // key, printed once. Never on Postgres. (Prices: `Gateway::start` seeds.)
    let dev_key = {
        let store = aigate::server::open_store(&config).await?;
        let key = aigate::admin::ensure_dev_key(&config, &store).await;
        store.close().await;
        let key = key?;
        if key.is_some() {
            tracing::info!("new dev database: created org `dev` and its key");
        }
        key
    };
    let gateway = Gateway::start(config, Arc::new(ProcessEnv)).await?;
    let addr = gateway.local_addr();
    println!("AIGate is listening on http://{addr}");
    match dev_key {
        Some(k) => {
            println!("Dev API key for org `dev` (shown once, store it now):");
            println!("  {}", k.key);
            println!("Try: curl http://{addr}/v1/models -H 'Authorization: Bearer {}'", k.key);
        }
        None => println!("Get an API key with: aigate keys create --org NAME (prints the key once)"),
    }
    let stop = gateway.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop.send(true);
    });
    let served = gateway.wait().await;
    if let Some(traces) = traces {
        // Exporting what is left blocks, and sends on this runtime: off its workers.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    served
}
