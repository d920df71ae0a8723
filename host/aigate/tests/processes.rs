//! Tests that run the real `aigate` binary as separate processes:
//!
//! - Nothing lost: usage records survive a Postgres outage and a SIGTERM under
//!   load. It stops and restarts the real Postgres with `pg_ctlcluster`, so
//!   this is its own test binary (cargo runs test binaries one after another,
//!   so no other binary uses Postgres meanwhile) and its tests take turns
//!   (`SERIAL`).
//! - Two gateway processes on one Postgres and one Redis behave as one:
//!   idempotency and rate limits across replicas.
//!
//! Needs DATABASE_URL (a Postgres server it may stop), REDIS_URL and root for
//! pg_ctlcluster. Skipped without them, unless AIGATE_REQUIRE_SERVICES=1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aigate_testkit::MockDashScope;

/// The tests of this binary take turns: one of them stops Postgres.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn required() -> bool {
    std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn pg_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
}

fn pg_ctl(action: &str) {
    let version = pg_version().unwrap();
    let status =
        Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &version, "main", action]).status().unwrap();
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql").arg(url).args(["-v", "ON_ERROR_STOP=1", "-qc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

/// Kills the gateway if the test fails before its SIGTERM.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aigate"));
        cmd.args(args).envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(out.status.success(), "aigate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Requests in the ledger for org `dur`, read back through the CLI.
    fn ledger_requests(&self) -> u64 {
        self.org_requests("dur")
    }

    fn org_requests(&self, org: &str) -> u64 {
        let out = self.command(&["usage", "--org", org]).output().unwrap();
        if !out.status.success() {
            return u64::MAX; // database not back yet
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["totals"][0]["requests"].as_u64().unwrap_or(0)
    }

    fn serve(&self) -> (Child, String) {
        let mut child = self.command(&["serve"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("AIGate is listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("the gateway printed its address");
        (child, base)
    }
}

/// `GET /health/ready`: its status and body.
async fn ready(http: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let r = http.get(format!("{base}/health/ready")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default())
}

async fn call(http: &reqwest::Client, base: &str, key: &str) -> Result<u16, reqwest::Error> {
    let body = serde_json::json!({"model": "qwen:qwen-turbo", "messages": [{"role": "user", "content": "hello"}]});
    let r = http.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json_body(&body).send().await?;
    let status = r.status().as_u16();
    r.bytes().await?;
    Ok(status)
}

trait JsonBody {
    fn json_body(self, v: &serde_json::Value) -> Self;
}
impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &serde_json::Value) -> Self {
        self.header("content-type", "application/json").body(serde_json::to_vec(v).unwrap())
    }
}

fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_survives_a_database_outage_and_sigterm_under_load() {
    let _turn = SERIAL.lock().await;
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        assert!(!required(), "DATABASE_URL is required here (AIGATE_REQUIRE_SERVICES=1)");
        eprintln!("skipped: DATABASE_URL is not set");
        return;
    };
    if pg_version().is_none() || !admin_url.starts_with("postgres") {
        assert!(!required(), "a local Postgres cluster (pg_ctlcluster) is required here");
        eprintln!("skipped: no local Postgres cluster to stop and restart");
        return;
    }
    let db = format!("aigate_durability_{}", std::process::id());
    psql(&admin_url, &format!("DROP DATABASE IF EXISTS {db}"));
    psql(&admin_url, &format!("CREATE DATABASE {db}"));

    let mock = MockDashScope::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist/qwen.wasm");
    std::fs::copy(&dist, plugins.join("qwen.wasm")).expect("run `cargo xtask build-plugins` first");
    let config: PathBuf = dir.path().join("aigate.toml");
    // qwen named in config: only then does it get QWEN_API_KEY (sent to QWEN_BASE_URL).
    std::fs::write(&config, "[auth]\nkey_cache_ttl_ms = 600000\n[providers.qwen]\n").unwrap();
    let env = Env {
        vars: vec![
            ("DATABASE_URL".into(), with_database(&admin_url, &db)),
            ("AIGATE_LISTEN".into(), "127.0.0.1:0".into()),
            ("AIGATE_DATA_DIR".into(), dir.path().join("data").display().to_string()),
            ("AIGATE_PLUGINS_DIR".into(), plugins.display().to_string()),
            ("AIGATE_CONFIG".into(), config.display().to_string()),
            ("QWEN_BASE_URL".into(), mock.base_url()),
            ("QWEN_API_KEY".into(), MockDashScope::API_KEY.into()),
            ("AIGATE_LOG".into(), "warn".into()),
        ],
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = env.cli(&["keys", "create", "--org", "dur"]).trim().lines().last().unwrap().to_owned();
    let (gateway, base) = env.serve();
    let mut gateway = KillOnDrop(Some(gateway));
    let http = reqwest::Client::new();
    let mut completed = 0u64;

    // 1. Postgres goes away while calls keep coming: every call still succeeds
    //    (key cached, prices in memory) and its record waits in the spool. Readiness says
    //    the database is down meanwhile, and comes back with it.
    assert_eq!(call(&http, &base, &key).await.unwrap(), 200);
    assert_eq!(ready(&http, &base).await.0, 200);
    completed += 1;
    pg_ctl("stop");
    let outage = async {
        let mut ok = 0;
        for _ in 0..20 {
            if call(&http, &base, &key).await.unwrap() == 200 {
                ok += 1;
            }
        }
        ok
    };
    let during = outage.await;
    let (status, body) = ready(&http, &base).await;
    assert_eq!(status, 503, "not ready while the database is down: {body}");
    assert!(body["failing"]["database"].is_string(), "{body}");
    assert_eq!(http.get(format!("{base}/health/live")).send().await.unwrap().status(), 200, "still alive");
    pg_ctl("start");
    assert_eq!(during, 20, "calls succeed while the database is down");
    let mut back = false;
    for _ in 0..100 {
        if ready(&http, &base).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "ready again once the database is back");
    completed += during;
    assert!(
        wait_for(Duration::from_secs(60), || env.ledger_requests() == completed),
        "after the outage the ledger holds every call: {} != {completed}",
        env.ledger_requests()
    );

    // 2. SIGTERM under load: in-flight calls finish, every completed call is in the ledger.
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, base, key, ok, stop) = (http.clone(), base.clone(), key.clone(), ok.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match call(&http, &base, &key).await {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(other) => panic!("unexpected status {other}"),
                    Err(_) => break, // the gateway stopped accepting
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut child = gateway.0.take().unwrap();
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(exit.success(), "graceful exit: {exit:?}");
    let under_load = ok.load(Ordering::Relaxed);
    assert!(under_load > 10, "the load really ran ({under_load})");
    completed += under_load;
    assert_eq!(env.ledger_requests(), completed, "every completed call is in the ledger after SIGTERM");

    psql(&admin_url, &format!("DROP DATABASE IF EXISTS {db}"));
}

/// A fresh database on the DATABASE_URL server, and the settings two
/// replicas share; None (skip) when the services are not there.
async fn replica_env(mock: &MockDashScope, dir: &Path, limits: &str) -> Option<(Env, String)> {
    let (Ok(admin_url), Ok(redis)) = (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL")) else {
        assert!(!required(), "DATABASE_URL and REDIS_URL are required here (AIGATE_REQUIRE_SERVICES=1)");
        eprintln!("skipped: DATABASE_URL or REDIS_URL is not set");
        return None;
    };
    let db = format!(
        "aigate_replicas_{}_{}",
        std::process::id(),
        dir.file_name().unwrap().to_string_lossy().to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    psql(&admin_url, &format!("CREATE DATABASE {db}"));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist/qwen.wasm");
    std::fs::copy(&dist, plugins.join("qwen.wasm")).expect("run `cargo xtask build-plugins` first");
    let config = dir.join("aigate.toml");
    std::fs::write(&config, format!("{limits}\n[providers.qwen]\n")).unwrap();
    let env = Env {
        vars: vec![
            ("DATABASE_URL".into(), with_database(&admin_url, &db)),
            ("REDIS_URL".into(), redis),
            ("AIGATE_REDIS_PREFIX".into(), format!("{db}:")),
            ("AIGATE_LISTEN".into(), "127.0.0.1:0".into()),
            ("AIGATE_PLUGINS_DIR".into(), plugins.display().to_string()),
            ("AIGATE_CONFIG".into(), config.display().to_string()),
            ("QWEN_BASE_URL".into(), mock.base_url()),
            ("QWEN_API_KEY".into(), MockDashScope::API_KEY.into()),
            ("AIGATE_LOG".into(), "warn".into()),
        ],
    };
    Some((env, db))
}

/// Two `aigate serve` processes, each with its own data folder (spool).
fn two_processes(env: &Env, dir: &Path) -> [(KillOnDrop, String); 2] {
    [0, 1].map(|i| {
        let mut e = Env { vars: env.vars.clone() };
        e.vars.push(("AIGATE_DATA_DIR".into(), dir.join(format!("data-{i}")).display().to_string()));
        let (child, base) = e.serve();
        (KillOnDrop(Some(child)), base)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_requests_one_idempotency_key_two_processes_one_provider_call() {
    let _turn = SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = MockDashScope::start().await;
    let dir = tempfile::tempdir().unwrap();
    let Some((env, _db)) = replica_env(&mock, dir.path(), "").await else { return };
    let mut cli_env = Env { vars: env.vars.clone() };
    cli_env.vars.push(("AIGATE_DATA_DIR".into(), dir.path().join("cli").display().to_string()));
    let key = cli_env.cli(&["keys", "create", "--org", "dur"]).trim().lines().last().unwrap().to_owned();
    let replicas = two_processes(&env, dir.path());

    let http = reqwest::Client::new();
    let idem = format!("shared-{}", std::process::id());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (http, base, key, idem) = (http.clone(), replicas[i % 2].1.clone(), key.clone(), idem.clone());
        tasks.push(tokio::spawn(async move {
            let body =
                serde_json::json!({"model": "qwen:qwen-turbo", "messages": [{"role": "user", "content": "once"}]});
            let r = http
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(key)
                .header("idempotency-key", idem)
                .json_body(&body)
                .send()
                .await
                .unwrap();
            let replayed = r.headers().get("idempotent-replayed").is_some();
            (r.status().as_u16(), replayed)
        }));
    }
    let mut originals = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, false) => originals += 1,
            (200, true) | (409, false) => {}
            other => panic!("unexpected response {other:?}"),
        }
    }
    assert_eq!(originals, 1, "exactly one request ran");
    assert_eq!(mock.chat_requests(), 1, "exactly one provider call");
    assert!(wait_for(Duration::from_secs(10), || cli_env.org_requests("dur") == 1), "exactly one usage record");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cli_env.org_requests("dur"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_sixty_across_two_processes_admits_at_most_sixty_of_two_hundred() {
    let _turn = SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = MockDashScope::start().await;
    let dir = tempfile::tempdir().unwrap();
    let Some((env, _db)) = replica_env(&mock, dir.path(), "[limits]\nkey_rpm = 60\n").await else { return };
    let mut cli_env = Env { vars: env.vars.clone() };
    cli_env.vars.push(("AIGATE_DATA_DIR".into(), dir.path().join("cli").display().to_string()));
    let key = cli_env.cli(&["keys", "create", "--org", "dur"]).trim().lines().last().unwrap().to_owned();
    let replicas = two_processes(&env, dir.path());

    let http = reqwest::Client::new();
    let burst = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, base, key) = (http.clone(), replicas[i % 2].1.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body =
                serde_json::json!({"model": "qwen:qwen-turbo", "messages": [{"role": "user", "content": "burst"}]});
            let r = http
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(key)
                .json_body(&body)
                .send()
                .await
                .unwrap();
            let has_headers = r.headers().contains_key("x-ratelimit-limit-requests")
                && r.headers().contains_key("x-ratelimit-remaining-requests");
            let retry = r.headers().contains_key("retry-after");
            (r.status().as_u16(), has_headers, retry)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (status, has_headers, retry) = t.await.unwrap();
        assert!(has_headers, "x-ratelimit-* on every response");
        match status {
            200 => ok += 1,
            429 => {
                assert!(retry, "Retry-After on a 429");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // GCRA bound: at most limit + elapsed × rate (60 per minute = 1 per second).
    let bound = 60 + burst.elapsed().as_secs_f64().ceil() as usize;
    assert!(ok <= bound, "admitted {ok} of 200 with rpm = 60 across two processes (bound {bound})");
    assert!(ok >= 60, "the whole allowance was usable: {ok}");
    assert_eq!(ok + limited, 200);
}

/// One gateway on its own SQLite file (never the shared Postgres or Redis,
/// whatever the test's environment says).
fn sqlite_env(mock: &MockDashScope, dir: &Path, toml: &str) -> Env {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist/qwen.wasm");
    std::fs::copy(&dist, plugins.join("qwen.wasm")).expect("run `cargo xtask build-plugins` first");
    let config = dir.join("aigate.toml");
    // Only a provider named in config gets a key.
    std::fs::write(&config, format!("{toml}\n[providers.qwen]\n")).unwrap();
    Env {
        vars: vec![
            ("DATABASE_URL".into(), String::new()),
            ("REDIS_URL".into(), String::new()),
            ("AIGATE_LISTEN".into(), "127.0.0.1:0".into()),
            ("AIGATE_DATA_DIR".into(), dir.join("data").display().to_string()),
            ("AIGATE_PLUGINS_DIR".into(), plugins.display().to_string()),
            ("AIGATE_CONFIG".into(), config.display().to_string()),
            ("QWEN_BASE_URL".into(), mock.base_url()),
            ("QWEN_API_KEY".into(), MockDashScope::API_KEY.into()),
            ("AIGATE_LOG".into(), "warn".into()),
        ],
    }
}

/// The peak resident memory of a process so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn stream_call(http: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    let body = serde_json::json!({"model": "qwen:qwen-turbo", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    http.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json_body(&body).send().await.unwrap()
}

/// The `data:` payloads of an SSE body, as JSON where they are.
fn sse_data(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| serde_json::Value::String(d.to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_line_and_an_endless_stream_leave_the_gateways_memory_flat() {
    use aigate_testkit::Scenario;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = MockDashScope::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = sqlite_env(&mock, dir.path(), "[streams]\nmax_total_bytes = 33554432\n");
    let key = env.cli(&["keys", "create", "--org", "mem"]).trim().lines().last().unwrap().to_owned();
    let (child, base) = env.serve();
    let pid = child.id();
    let _child = KillOnDrop(Some(child));
    let http = reqwest::Client::new();
    // Warm up: a plugin instance, the connection pools, the allocator's arenas.
    for _ in 0..3 {
        let text = stream_call(&http, &base, &key).await.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
    let before = peak_rss_kib(pid);

    mock.enqueue(Scenario::HugeLine { bytes: 50 * 1024 * 1024 });
    let r = stream_call(&http, &base, &key).await;
    assert_eq!(r.status(), 502, "the line broke the bound before any content");
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_response_too_large", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("streams.max_line_bytes"), "{body}");

    mock.enqueue(Scenario::Endless { chunk_bytes: 16 * 1024 });
    let r = stream_call(&http, &base, &key).await;
    assert_eq!(r.status(), 200);
    let text =
        tokio::time::timeout(Duration::from_secs(120), r.text()).await.expect("the endless stream was ended").unwrap();
    assert!(text.len() > 16 * 1024 * 1024, "content was relayed until the bound: {} bytes", text.len());
    let last = sse_data(&text).pop().unwrap();
    assert_eq!(last["error"]["code"], "upstream_response_too_large", "{last}");
    assert!(last["error"]["message"].as_str().unwrap().contains("streams.max_total_bytes"), "{last}");

    let after = peak_rss_kib(pid);
    eprintln!("gateway peak RSS: {before} KiB before, {after} KiB after the 50 MB line and the 32 MiB stream");
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(grown_mib < 24, "the gateway's peak memory grew by {grown_mib} MiB for a 50 MB line and a 32 MiB stream");
    assert!(
        mock.wait_streams_cancelled(2, Duration::from_secs(10)).await,
        "both upstream connections were dropped at the bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_running_streams_at_the_shutdown_deadline_and_meters_them() {
    use aigate_testkit::Scenario;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mock = MockDashScope::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = sqlite_env(&mock, dir.path(), "shutdown_timeout_ms = 1000\n");
    let key = env.cli(&["keys", "create", "--org", "shut"]).trim().lines().last().unwrap().to_owned();
    let (child, base) = env.serve();
    let mut gateway = KillOnDrop(Some(child));
    let http = reqwest::Client::new();

    // Three streams that would run for a minute, read by their clients ...
    let mut readers = Vec::new();
    for _ in 0..3 {
        mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(200), chunks: 300 });
        let r = stream_call(&http, &base, &key).await;
        assert_eq!(r.status(), 200);
        readers.push(tokio::spawn(r.text()));
    }
    // ... and one whose client stopped reading.
    mock.enqueue(Scenario::Endless { chunk_bytes: 16 * 1024 });
    let mut stalled = stream_call(&http, &base, &key).await;
    let _ = stalled.chunk().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut child = gateway.0.take().unwrap();
    let pid = child.id().to_string();
    let stopping = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let waited = tokio::task::spawn_blocking(move || child.wait());
    let Ok(exit) = tokio::time::timeout(Duration::from_secs(30), waited).await else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the gateway did not exit within 30 s of SIGTERM");
    };
    let exit = exit.unwrap();
    let took = stopping.elapsed();
    assert!(exit.unwrap().success(), "a graceful exit");
    assert!(took < Duration::from_secs(12), "exited {took:?} after SIGTERM, with a 1 s deadline");
    for reader in readers {
        let text = reader.await.unwrap().unwrap();
        let last = sse_data(&text).pop().unwrap();
        assert_eq!(last["error"]["code"], "gateway_shutting_down", "the client is told why: {text}");
    }
    assert_eq!(env.org_requests("shut"), 4, "every ended call is in the ledger");
    drop(stalled);
}
