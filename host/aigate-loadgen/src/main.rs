//! `aigate-loadgen`: the load test of the real `aigate` binary (`cargo xtask loadtest`).
//!
//! - `aigate-loadgen mock [--listen ADDR] [--threads N]`: a lean mock DashScope
//!   ([`aigate_testkit::serve_lean`]) as a process of its own; prints `listening on ADDR`.
//! - `aigate-loadgen run --aigate BIN [options]`: starts the mock and `BIN serve` (SQLite in a
//!   temporary folder, the default price rules, the dev key, limits that do not bind, default
//!   logging to a file) as separate processes, then drives each with a closed-loop HTTP/1.1
//!   load ([`load`]): direct to the mock and through the gateway, back to back per scenario,
//!   at 1 and 32 connections, JSON and stream. Prints one table; never fails on a number.
//!
//! Options of `run`: `--duration SECS` (measured, default 5), `--warmup SECS` (default 1),
//! `--connections N` (the capacity row, default 32), `--plugins DIR` (default
//! `plugins/dist`), `--perf FILE` (record `perf record -e cpu-clock -g` of the gateway during
//! the JSON capacity run), `--perf-connections N` (record the JSON run at N connections instead,
//! e.g. 1 for the latency row), `--perf-call-graph MODE` (perf's `--call-graph` mode, e.g. `dwarf`:
//! callers through libc and other code without frame pointers), `--keep` (keep the temporary folder and the gateway's log).

mod load;
mod procs;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((cmd, rest)) if cmd == "mock" => mock(rest),
        Some((cmd, rest)) if cmd == "run" => RunOptions::parse(rest).and_then(run),
        _ => {
            eprintln!("usage: aigate-loadgen mock [--listen ADDR] [--threads N]");
            eprintln!("       aigate-loadgen run --aigate BIN [--plugins DIR] [--duration SECS] [--warmup SECS]");
            eprintln!("                          [--connections N] [--perf FILE] [--perf-connections N]");
            eprintln!("                          [--perf-call-graph MODE] [--keep]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigate-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Value of `--name VALUE` pairs; bare flags are listed in `flags`.
fn parse_flags<'a>(args: &'a [String], flags: &[&str]) -> Result<Vec<(&'a str, Option<&'a str>)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(name) = arg.strip_prefix("--") else {
            bail!("unexpected argument `{arg}`");
        };
        if flags.contains(&name) {
            out.push((name, None));
        } else {
            let value = it.next().with_context(|| format!("`--{name}` needs a value"))?;
            out.push((name, Some(value.as_str())));
        }
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(name: &str, value: Option<&str>) -> Result<T> {
    value.unwrap_or_default().parse().map_err(|_| anyhow::anyhow!("`--{name}` needs a number"))
}

/// The mock upstream process: serves until killed.
fn mock(args: &[String]) -> Result<()> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut threads = 2;
    for (name, value) in parse_flags(args, &[])? {
        match name {
            "listen" => listen = value.unwrap_or_default().parse().context("`--listen` needs ADDR:PORT")?,
            "threads" => threads = number("threads", value)?,
            _ => bail!("unknown option `--{name}`"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        println!("listening on {}", listener.local_addr()?);
        aigate_testkit::serve_lean(listener, aigate_testkit::MockOptions::default()).await;
        Ok(())
    })
}

/// Options of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub aigate: PathBuf,
    pub plugins: PathBuf,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub perf: Option<PathBuf>,
    /// `perf record --call-graph` mode; `fp` (frame pointers, what `-g` means) by default.
    pub perf_call_graph: String,
    /// The JSON run `--perf` records: at this many connections (default: the capacity row's).
    pub perf_connections: Option<usize>,
    pub keep: bool,
}

impl RunOptions {
    fn parse(args: &[String]) -> Result<RunOptions> {
        let mut options = RunOptions {
            aigate: PathBuf::new(),
            plugins: PathBuf::from("plugins/dist"),
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            connections: 32,
            perf: None,
            perf_call_graph: "fp".to_owned(),
            perf_connections: None,
            keep: false,
        };
        for (name, value) in parse_flags(args, &["keep"])? {
            let path = || PathBuf::from(value.unwrap_or_default());
            match name {
                "aigate" => options.aigate = path(),
                "plugins" => options.plugins = path(),
                "perf" => options.perf = Some(path()),
                "perf-call-graph" => options.perf_call_graph = value.unwrap_or_default().to_owned(),
                "duration" => options.duration = Duration::from_secs_f64(number("duration", value)?),
                "warmup" => options.warmup = Duration::from_secs_f64(number("warmup", value)?),
                "connections" => options.connections = number("connections", value)?,
                "perf-connections" => options.perf_connections = Some(number("perf-connections", value)?),
                "keep" => options.keep = true,
                _ => bail!("unknown option `--{name}`"),
            }
        }
        if options.aigate.as_os_str().is_empty() {
            bail!("`--aigate BIN` (the release binary) is required");
        }
        Ok(options)
    }
}

fn run(options: RunOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let load_before = procs::loadavg();
    let mock = procs::Mock::start()?;
    let gateway = procs::Gateway::start(&options, mock.addr)?;
    // Two workers like `wrk -t2`: the load generator shares the two cores with both servers.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let rows = runtime.block_on(report::measure(&options, &mock, &gateway))?;
    let load_after = procs::loadavg();
    let log = gateway.stop()?;
    drop(mock);
    report::print(&options, &rows, &load_before, &load_after, &log, started.elapsed());
    Ok(())
}
