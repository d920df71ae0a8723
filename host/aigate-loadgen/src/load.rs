//! A closed-loop HTTP/1.1 load: `connections` keep-alive connections, each sending its next
//! request as soon as the previous response has been read to its end (like `wrk`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What every request of one run sends.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: String,
    pub body: Bytes,
    /// An SSE answer, which must end with `data: [DONE]`.
    pub stream: bool,
}

/// The measurements of one run, over the measured window only.
#[derive(Debug, Default)]
pub struct Sample {
    /// Whole-response latency of each successful request, in microseconds.
    pub latency_us: Vec<u32>,
    /// Time to the first body bytes (streams: the first SSE event), in microseconds.
    pub first_byte_us: Vec<u32>,
    /// Failed requests (connection errors, a status other than 200, a truncated stream).
    pub errors: u64,
    /// Successful requests, warm-up and stragglers included.
    pub completed: u64,
    pub window: Duration,
}

impl Sample {
    pub fn rps(&self) -> f64 {
        self.latency_us.len() as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }
}

/// The `q`-quantile (0..=1) of sorted values, in milliseconds.
pub fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

/// Runs `connections` closed loops for `warmup + duration`; requests that start in the warmup
/// or end after the window are not counted.
pub async fn run(target: &Target, connections: usize, warmup: Duration, duration: Duration) -> Sample {
    let target = Arc::new(target.clone());
    let measure_from = Instant::now() + warmup;
    let stop = measure_from + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        tasks.push(tokio::spawn(connection(Arc::clone(&target), measure_from, stop)));
    }
    let mut total = Sample { window: duration, ..Sample::default() };
    for task in tasks {
        match task.await {
            Ok(s) => {
                total.latency_us.extend(s.latency_us);
                total.first_byte_us.extend(s.first_byte_us);
                total.errors += s.errors;
                total.completed += s.completed;
            }
            Err(_) => total.errors += 1,
        }
    }
    total.latency_us.sort_unstable();
    total.first_byte_us.sort_unstable();
    total
}

/// One connection's loop; reconnects after an error.
async fn connection(target: Arc<Target>, measure_from: Instant, stop: Instant) -> Sample {
    let mut sample = Sample::default();
    while Instant::now() < stop {
        let mut sender = match connect(target.addr).await {
            Ok(s) => s,
            Err(_) => {
                sample.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while Instant::now() < stop {
            let started = Instant::now();
            match exchange(&mut sender, &target, started).await {
                Ok(first_byte) => {
                    let ended = Instant::now();
                    sample.completed += 1;
                    if started >= measure_from && ended <= stop {
                        sample.latency_us.push(micros(ended - started));
                        sample.first_byte_us.push(micros(first_byte));
                    }
                }
                Err(_) => {
                    if Instant::now() <= stop {
                        sample.errors += 1;
                    }
                    break;
                }
            }
        }
    }
    sample
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request and its whole response; returns the time to the first body bytes.
async fn exchange(sender: &mut Sender, target: &Target, started: Instant) -> Result<Duration> {
    let request = Request::post(target.path.as_str())
        .header(header::HOST, target.addr.to_string())
        .header(header::AUTHORIZATION, target.bearer.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(target.body.clone()))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut tail: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data()
            && !data.is_empty()
        {
            first_byte.get_or_insert_with(|| started.elapsed());
            if target.stream {
                tail.extend_from_slice(&data[data.len().saturating_sub(16)..]);
                let keep = tail.len().saturating_sub(16);
                tail.drain(..keep);
            }
        }
    }
    anyhow::ensure!(status == http::StatusCode::OK, "status {status}");
    if target.stream {
        anyhow::ensure!(tail.ends_with(b"data: [DONE]\n\n"), "the stream did not end with [DONE]");
    }
    first_byte.context("empty body")
}
