//! Nothing lost: usage records survive a Postgres outage and a SIGTERM under
//! load. Runs the real `aigate` binary against the real Postgres, which it
//! stops and restarts with `pg_ctlcluster`; so it is its own test binary with
//! one sequential test (cargo runs test binaries one after another, so no
//! other test is using Postgres meanwhile).
//!
//! Needs DATABASE_URL (a Postgres server it may stop) and root for
//! pg_ctlcluster. Skipped without them, unless AIGATE_REQUIRE_SERVICES=1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aigate_testkit::MockDashScope;

fn required() -> bool {
    std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn pg_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql").ok()?.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).next()
}

fn pg_ctl(action: &str) {
    let version = pg_version().unwrap();
    let status = Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &version, "main", action]).status().unwrap();
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
        let out = self.command(&["usage", "--org", "dur"]).output().unwrap();
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
    std::fs::write(&config, "[auth]\nkey_cache_ttl_ms = 600000\n").unwrap();
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
    //    (key cached, prices in memory) and its record waits in the spool.
    assert_eq!(call(&http, &base, &key).await.unwrap(), 200);
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
    pg_ctl("start");
    assert_eq!(during, 20, "calls succeed while the database is down");
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
