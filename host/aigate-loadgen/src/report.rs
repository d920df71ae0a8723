//! The scenarios of a run and the table they print.

use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;

use crate::RunOptions;
use crate::load::{self, Sample, Target, quantile_ms};
use crate::procs::{self, Gateway, LogSummary, Mock};

const PROMPT: &str = "Say hello in one short sentence.";

/// One scenario, measured direct and through the gateway back to back.
pub struct Row {
    stream: bool,
    connections: usize,
    direct: Sample,
    gateway: Sample,
    /// CPU the gateway process used during its run (warm-up included), and its requests.
    gateway_cpu: Duration,
    /// VmRSS and VmHWM of the gateway right after its run.
    gateway_rss: (u64, u64),
}

fn body(model: &str, stream: bool) -> Bytes {
    let stream = if stream { r#","stream":true,"stream_options":{"include_usage":true}"# } else { "" };
    Bytes::from(format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{PROMPT}"}}]{stream}}}"#))
}

pub async fn measure(options: &RunOptions, mock: &Mock, gateway: &Gateway) -> Result<Vec<Row>> {
    let direct = |stream| Target {
        addr: mock.addr,
        path: format!("{}/chat/completions", aigate_testkit::COMPATIBLE_MODE_PREFIX),
        bearer: format!("Bearer {}", aigate_testkit::MockDashScope::API_KEY),
        body: body("qwen-turbo", stream),
        stream,
    };
    let through = |stream| Target {
        addr: gateway.addr,
        path: "/v1/chat/completions".to_owned(),
        bearer: format!("Bearer {}", gateway.key),
        body: body("qwen:qwen-turbo", stream),
        stream,
    };
    // Both paths must answer before anything is measured.
    for stream in [false, true] {
        for target in [direct(stream), through(stream)] {
            let probe = load::run(&target, 1, Duration::ZERO, Duration::from_millis(200)).await;
            anyhow::ensure!(
                probe.errors == 0 && !probe.latency_us.is_empty(),
                "{} (stream: {stream}) does not answer 200: see the gateway's log",
                target.path
            );
        }
    }
    let mut rows = Vec::new();
    for stream in [false, true] {
        for connections in [1, options.connections] {
            let direct_sample = load::run(&direct(stream), connections, options.warmup, options.duration).await;
            let profile = (!stream && connections == options.perf_connections.unwrap_or(options.connections))
                .then_some(options.perf.as_ref())
                .flatten()
                .map(|file| {
                    start_perf(file, &options.perf_call_graph, gateway.pid(), options.warmup + options.duration)
                })
                .transpose()?;
            let cpu_before = procs::cpu_time(gateway.pid());
            let gateway_sample = load::run(&through(stream), connections, options.warmup, options.duration).await;
            let gateway_cpu = procs::cpu_time(gateway.pid()).saturating_sub(cpu_before);
            let gateway_rss = procs::rss(gateway.pid());
            if let Some(mut perf) = profile {
                let _ = perf.wait();
            }
            rows.push(Row {
                stream,
                connections,
                direct: direct_sample,
                gateway: gateway_sample,
                gateway_cpu,
                gateway_rss,
            });
        }
    }
    Ok(rows)
}

fn start_perf(file: &std::path::Path, call_graph: &str, pid: u32, length: Duration) -> Result<Child> {
    Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "--call-graph", call_graph, "-p", &pid.to_string(), "-o"])
        .arg(file)
        .args(["--", "sleep", &format!("{:.1}", length.as_secs_f64())])
        .spawn()
        .context("cannot start `perf record` (install linux-perf)")
}

fn ms_pair(s: &[u32]) -> String {
    format!("{:.3} / {:.3}", quantile_ms(s, 0.5), quantile_ms(s, 0.99))
}

fn added_pair(gateway: &[u32], direct: &[u32]) -> String {
    let p50 = quantile_ms(gateway, 0.5) - quantile_ms(direct, 0.5);
    let p99 = quantile_ms(gateway, 0.99) - quantile_ms(direct, 0.99);
    format!("{p50:+.3} / {p99:+.3}")
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / f64::from(1 << 20))
}

pub fn print(
    options: &RunOptions,
    rows: &[Row],
    load_before: &str,
    load_after: &str,
    log: &LogSummary,
    took: Duration,
) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "aigate load test: {cores} cores, load average {load_before} before, {load_after} after; \
         {:.1} s measured per run after {:.1} s of warm-up; whole run {:.0} s",
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64(),
        took.as_secs_f64()
    );
    println!();
    println!(
        "| answer | conns | direct RPS | gateway RPS | share | direct p50 / p99 ms | gateway p50 / p99 ms \
         | added p50 / p99 ms | added first event p50 / p99 ms | gateway CPU / req | gateway RSS (peak) MiB | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut gateway_requests = 0;
    for row in rows {
        gateway_requests += row.gateway.completed;
        let share = 100.0 * row.gateway.rps() / row.direct.rps().max(f64::EPSILON);
        let cpu_per_request = row.gateway_cpu.as_secs_f64() * 1e6 / (row.gateway.completed.max(1) as f64);
        let first_event = if row.stream {
            added_pair(&row.gateway.first_byte_us, &row.direct.first_byte_us)
        } else {
            "—".to_owned()
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {share:.1} % | {} | {} | {} | {first_event} | {cpu_per_request:.0} µs | {} ({}) | {} / {} |",
            if row.stream { "stream" } else { "JSON" },
            row.connections,
            row.direct.rps(),
            row.gateway.rps(),
            ms_pair(&row.direct.latency_us),
            ms_pair(&row.gateway.latency_us),
            added_pair(&row.gateway.latency_us, &row.direct.latency_us),
            mib(row.gateway_rss.0),
            mib(row.gateway_rss.1),
            row.direct.errors,
            row.gateway.errors,
        );
    }
    println!();
    println!(
        "share: gateway RPS / direct RPS in the same run. added: gateway minus direct. first event: time to \
         the first SSE bytes. CPU / req: the gateway's user + system time over its requests \
         (warm-up included). errors: direct / gateway."
    );
    println!(
        "gateway log: {} lines, {} bytes for {gateway_requests} requests ({:.2} lines per request){}",
        log.lines,
        log.bytes,
        log.lines as f64 / (gateway_requests.max(1) as f64),
        log.path.as_ref().map(|p| format!(", kept at {}", p.display())).unwrap_or_default()
    );
}
