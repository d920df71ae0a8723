//! The two server processes of a load test, and what `/proc` says about them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::RunOptions;

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads `child`'s stdout on a thread of its own (so the pipe never fills), handing each line
/// over a channel.
fn stdout_lines(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Nobody listens any more: keep draining so the child never blocks on stdout.
                continue;
            }
        }
    });
    Ok(rx)
}

/// The line after `prefix`, waiting at most [`START_TIMEOUT`].
fn wait_for(lines: &mpsc::Receiver<String>, what: &str, prefix: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.trim_start().strip_prefix(prefix) {
                    return Ok(rest.trim().to_owned());
                }
            }
            Err(_) => bail!("{what} did not print `{prefix}…` within {START_TIMEOUT:?}"),
        }
    }
}

/// The lean mock DashScope: this same executable, `mock` subcommand.
pub struct Mock {
    child: Child,
    pub addr: SocketAddr,
}

impl Mock {
    pub fn start() -> Result<Mock> {
        let exe = std::env::current_exe().context("cannot find the loadgen executable")?;
        let mut child = Command::new(exe)
            .args(["mock", "--listen", "127.0.0.1:0", "--threads", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the mock upstream")?;
        let lines = stdout_lines(&mut child)?;
        let addr = wait_for(&lines, "the mock upstream", "listening on ")?;
        let addr = addr.parse().with_context(|| format!("the mock printed a bad address {addr}"))?;
        Ok(Mock { child, addr })
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `aigate serve` on a fresh SQLite database in a temporary folder.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub key: String,
    dir: PathBuf,
    keep: bool,
}

/// What the gateway wrote to its log during the run.
#[derive(Debug)]
pub struct LogSummary {
    pub lines: usize,
    pub bytes: u64,
    pub path: Option<PathBuf>,
}

/// Limits far above what two cores can send, so admission is checked but never refuses.
const CONFIG: &str = r#"listen = "127.0.0.1:0"

[providers.qwen]
base_url = "{BASE_URL}"
models = ["qwen-turbo"]

[limits]
key_rpm = 1000000000
key_tpm = 1000000000000
org_rpm = 1000000000
org_tpm = 1000000000000
"#;

impl Gateway {
    pub fn start(options: &RunOptions, upstream: SocketAddr) -> Result<Gateway> {
        let dir = std::env::temp_dir().join(format!("aigate-loadtest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let base_url = format!("http://{upstream}{}", aigate_testkit::COMPATIBLE_MODE_PREFIX);
        let config = dir.join("aigate.toml");
        std::fs::write(&config, CONFIG.replace("{BASE_URL}", &base_url))?;
        let log = std::fs::File::create(dir.join("gateway.log"))?;
        // A clean environment: SQLite in `dir`, nothing from the caller's DATABASE_URL, REDIS_URL
        // or AIGATE_*; default logging (info, text) to a file, as a service manager would.
        let mut command = Command::new(&options.aigate);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AIGATE_CONFIG", &config)
            .env("AIGATE_DATA_DIR", dir.join("data"))
            .env("AIGATE_PLUGINS_DIR", absolute(&options.plugins)?)
            .env("QWEN_API_KEY", aigate_testkit::MockDashScope::API_KEY)
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command.spawn().with_context(|| format!("cannot start {}", options.aigate.display()))?;
        let lines = stdout_lines(&mut child)?;
        let mut gateway = Gateway { child: Some(child), addr: upstream, key: String::new(), dir, keep: options.keep };
        let addr = wait_for(&lines, "the gateway", "AIGate is listening on http://")?;
        gateway.addr = addr.parse().with_context(|| format!("the gateway printed a bad address {addr}"))?;
        gateway.key = wait_for(&lines, "the gateway", "sk-aig-").map(|rest| format!("sk-aig-{rest}"))?;
        Ok(gateway)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM (the gateway drains its usage records), then the log's size.
    pub fn stop(mut self) -> Result<LogSummary> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        let path = self.dir.join("gateway.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Ok(LogSummary { lines: text.lines().count(), bytes: text.len() as u64, path: self.keep.then_some(path) })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("bad path {}", path.display()))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    // Fields after the command name, which is in parentheses: state is 0, utime 11, stime 12,
    // in clock ticks of USER_HZ (100 on Linux).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Resident memory now and at its peak (VmRSS, VmHWM), in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
