//! The serving threads: the main listener is served by `serving_threads` OS threads, each
//! running a single-threaded tokio runtime of its own (thread per core, as Envoy and Pingora's
//! no-steal runtime do).
//!
//! Why: on a work-stealing runtime a request that arrives on an idle gateway wakes a second
//! worker to look for work it never finds, and its tasks (the connection, the upstream
//! client's connection task, the stream relay) may hop between workers; each hop is a
//! futex wake and a context switch. Measured on the release binary (docs/benchmarks.md), those
//! wake-ups were the largest part of the latency the gateway adds at one connection. Here a
//! connection, every task it spawns and the upstream connections it uses stay on the thread that
//! accepted it:
//! - each thread accepts on a socket of its own, bound to the same address with `SO_REUSEPORT`:
//!   the kernel spreads new connections among them ([`bind`]);
//! - each thread has its own upstream connection pool (`Upstream` picks it through
//!   [`worker`]): a pooled connection is driven by a task of the runtime that opened it, so a
//!   shared pool would send every request through another thread.
//!
//! What stays on the gateway's main runtime: background work (the ledger writer, price refresh,
//! config and plugin reloads, retention).
//!
//! Lifecycle: [`ServingThreads::stopped`] resolves when every thread's server has ended
//! (graceful shutdown: no new connections, those open finish). The threads' runtimes keep
//! running after that until [`ServingThreads::release`], so that connections to the database or
//! Redis opened from a request on one of them stay usable while the gateway drains its usage
//! records. If the runtime that started the gateway ends first (a test that drops a `Gateway`
//! without shutting it down), the threads end with it.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

thread_local! {
    /// The index of the serving thread this is, on a serving thread.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index (`0..serving_threads`) of the serving thread this code runs on, `None` elsewhere.
pub fn worker() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Marks this thread as serving thread `index`.
pub(crate) fn enter(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

/// How long a serving thread's runtime waits for its blocking tasks (a spooled usage record)
/// when it is dropped.
const BLOCKING_GRACE: Duration = Duration::from_secs(5);

/// The running serving threads of one gateway.
pub struct ServingThreads {
    /// One per thread whose server has not ended yet: its result, sent when it ends.
    ended: Vec<oneshot::Receiver<std::io::Result<()>>>,
    /// The first error a server ended with.
    error: Option<std::io::Error>,
    /// Ends the servers at once (connections still open are dropped with their runtime).
    abort: CancellationToken,
    /// Lets the threads drop their runtimes and exit.
    release: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Cancels the tokens when dropped: held by a task of the runtime that started the gateway,
/// so the threads do not outlive it.
struct EndWith(CancellationToken, CancellationToken);

impl Drop for EndWith {
    fn drop(&mut self) {
        self.0.cancel();
        self.1.cancel();
    }
}

impl ServingThreads {
    /// Serves `app` from one thread per listener ([`bind`]) until `stopped` turns true. Must be
    /// called on a tokio runtime: the threads end with it.
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        app: Router,
        stopped: watch::Receiver<bool>,
    ) -> std::io::Result<ServingThreads> {
        let threads = listeners.len();
        let abort = CancellationToken::new();
        let release = CancellationToken::new();
        // Ends the threads already started if a later one cannot start (dropped on `?`); then
        // held by a task of the calling runtime, so the threads do not outlive it either.
        let guard = EndWith(abort.clone(), release.clone());
        let mut ended = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (index, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("aigate-serve-{index}-blocking"))
                .build()?;
            let (done, end) = oneshot::channel();
            let (app, mut stopped) = (app.clone(), stopped.clone());
            let (aborted, released) = (abort.clone(), release.clone());
            let handle = std::thread::Builder::new().name(format!("aigate-serve-{index}")).spawn(move || {
                enter(index);
                runtime.block_on(async move {
                    let served = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                                // Without it every SSE chunk can wait ~40 ms for a delayed ACK.
                                let _ = tcp.set_nodelay(true);
                            });
                            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            });
                            tokio::select! {
                                served = server => served,
                                () = aborted.cancelled() => Ok(()),
                            }
                        }
                        Err(e) => Err(e),
                    };
                    let _ = done.send(served);
                    // Keep this runtime's connections (database, Redis, upstream) driven until
                    // the gateway has drained.
                    released.cancelled().await;
                });
                runtime.shutdown_timeout(BLOCKING_GRACE);
            });
            handles.push(handle?);
            ended.push(end);
        }
        // The threads end with the runtime that started them, whatever happens to the gateway.
        let released = release.clone();
        tokio::spawn(async move {
            let _guard = guard;
            released.cancelled().await;
        });
        Ok(ServingThreads { ended, error: None, abort, release, threads: handles })
    }

    /// Waits until every thread's server has ended; the first error, if any. Cancel-safe: a
    /// call dropped halfway can be made again.
    pub async fn stopped(&mut self) -> std::io::Result<()> {
        while let Some(end) = self.ended.last_mut() {
            let served = end.await.unwrap_or_else(|_| Err(std::io::Error::other("a serving thread ended abruptly")));
            self.ended.pop();
            if let Err(e) = served {
                self.error.get_or_insert(e);
            }
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ends the servers now, without waiting for their connections.
    pub fn abort(&self) {
        self.abort.cancel();
    }

    /// Lets the threads drop their runtimes, and waits until they have exited.
    pub async fn release(self) {
        self.release.cancel();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Binds `at` (port 0: a free port) once per serving thread: a group of `SO_REUSEPORT`
/// sockets, among which the kernel spreads new connections evenly (measured against one socket
/// shared by all threads: 8 % more capacity at 32 connections, and a lower p99, because the
/// first idle thread took most connections). A plain bind first keeps the usual error when
/// another process already listens there (sockets join a group only if all of them ask to,
/// and only within one user).
pub async fn bind(at: SocketAddr, threads: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let at = tokio::net::TcpListener::bind(at).await?.local_addr()?;
    let mut group = Vec::with_capacity(threads.max(1));
    for _ in 0..threads.max(1) {
        let socket = if at.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(at)?;
        group.push(socket.listen(1024)?.into_std()?);
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    /// Which serving thread answered, and which one ran a task spawned by the handler.
    async fn whoami() -> String {
        let spawned = tokio::spawn(async { worker() }).await.ok().flatten();
        format!("{:?} {:?} {:?}", worker(), spawned, std::thread::current().name())
    }

    #[tokio::test]
    async fn every_thread_serves_and_a_request_stays_on_its_thread_until_all_stop() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 2).await.unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr));
        // The address is taken: a second gateway is refused as before, not let into the group.
        let err = bind(addr, 2).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

        let (stop, stopped) = watch::channel(false);
        let app = Router::new().route("/", get(whoami));
        let mut serving = ServingThreads::start(listeners, app, stopped).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let _ = rustls::crypto::ring::default_provider().install_default();
        for _ in 0..64 {
            // A new connection each time: the kernel spreads them over the two sockets.
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let answer = http.get(format!("http://{addr}/")).send().await.unwrap().text().await.unwrap();
            let index = match answer.as_str() {
                r#"Some(0) Some(0) Some("aigate-serve-0")"# => 0,
                r#"Some(1) Some(1) Some("aigate-serve-1")"# => 1,
                other => panic!("answered off its serving thread: {other}"),
            };
            seen.insert(index);
        }
        assert_eq!(seen.len(), 2, "64 connections all went to one thread");
        assert_eq!(worker(), None, "the test's own thread is no serving thread");

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), serving.stopped()).await.unwrap().unwrap();
        // Stopped: the address is free again once the threads are gone.
        serving.release().await;
        bind(addr, 1).await.unwrap();
    }
}
