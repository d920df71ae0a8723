//! Redis going away and coming back, on a Redis this test starts itself on a free port (never
//! the shared one).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aigate_admission::{
    Admission, Claim, IdempotencyError, IdempotencyStore, LimitError, LimitKey, RateLimiter, RedisIdempotencyStore,
    RedisOptions, RedisRateLimiter, connection_manager, fingerprint,
};
use serde_json::json;

use crate::skip_or_fail;

/// A `redis-server` child process without persistence. Dropping it kills the child.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                skip_or_fail(&format!("cannot start redis-server ({e})"))?;
                return None;
            }
        };
        let server = Self { port, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `SHUTDOWN NOSAVE`, as an operator would stop it, then reap the process.
    fn shutdown(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_distinguishable_and_recovers() {
    let port = free_port();
    let Some(mut server) = OwnRedis::start(port) else {
        return;
    };
    let options = RedisOptions {
        key_prefix: "outage:".into(),
        op_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
    };
    let conn = connection_manager(&server.url(), &options).unwrap();
    let limiter = RedisRateLimiter::new(conn.clone(), &options);
    let store = RedisIdempotencyStore::new(conn, &options);
    let keys = [LimitKey::key("k", Some(1000), Some(100_000))];
    let fp = fingerprint("POST", "/v1/chat/completions", &json!({"m": 1}));
    let lease = Duration::from_secs(30);
    let ttl = Duration::from_secs(60);

    let reservation = match limiter.acquire(&keys, 10, SystemTime::now()).await.unwrap() {
        Admission::Granted(reservation) => reservation,
        denied => panic!("{denied:?}"),
    };
    let guard = match store.claim("org", "k1", &fp, lease, ttl).await.unwrap() {
        Claim::Acquired(guard) => guard,
        other => panic!("{other:?}"),
    };

    server.shutdown();

    // Every call fails fast and says "unavailable", whatever it was doing.
    for _ in 0..3 {
        let started = Instant::now();
        let err = limiter.acquire(&keys, 10, SystemTime::now()).await.unwrap_err();
        assert!(matches!(err, LimitError::RedisUnavailable(_)), "{err:?}");
        let err = store.claim("org", "k2", &fp, lease, ttl).await.unwrap_err();
        assert!(matches!(err, IdempotencyError::RedisUnavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
    let err = reservation.settle(20, SystemTime::now()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = guard.renew(lease).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let mut server = OwnRedis::start(port).expect("redis-server started once already");

    // The connection manager reconnects by itself; no new client is needed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    let reservation = loop {
        match limiter.acquire(&keys, 10, SystemTime::now()).await {
            Ok(Admission::Granted(reservation)) => break reservation,
            Ok(denied) => panic!("{denied:?}"),
            Err(err) => {
                assert!(err.is_unavailable(), "{err:?}");
                failures += 1;
                assert!(Instant::now() < deadline, "no recovery after {failures} attempts");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!("recovered after {failures} failed attempts");
    reservation.settle(10, SystemTime::now()).await.unwrap();
    // The restarted Redis has no state: the old claim is gone with it, and scripts are
    // reloaded on demand (NOSCRIPT is handled by the client).
    match store.claim("org", "k1", &fp, lease, ttl).await.unwrap() {
        Claim::Acquired(guard) => guard.release().await.unwrap(),
        other => panic!("{other:?}"),
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_then_up() {
    let port = free_port();
    let options = RedisOptions {
        key_prefix: "late:".into(),
        op_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
    };
    // The gateway may start before Redis: building the clients does no I/O.
    let conn = connection_manager(&format!("redis://127.0.0.1:{port}"), &options).unwrap();
    let limiter = RedisRateLimiter::new(conn.clone(), &options);
    let store = RedisIdempotencyStore::new(conn, &options);
    let keys = [LimitKey::org("o", Some(10), None)];
    let fp = fingerprint("POST", "/v1/chat/completions", &json!({}));
    let err = limiter.acquire(&keys, 0, SystemTime::now()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = store.claim("org", "k", &fp, Duration::from_secs(5), Duration::from_secs(5)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    let Some(mut server) = OwnRedis::start(port) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.claim("org", "k", &fp, Duration::from_secs(5), Duration::from_secs(5)).await {
            Ok(Claim::Acquired(guard)) => {
                guard.release().await.unwrap();
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(err) => {
                assert!(err.is_unavailable(), "{err:?}");
                assert!(Instant::now() < deadline, "no recovery");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(matches!(limiter.acquire(&keys, 0, SystemTime::now()).await, Ok(Admission::Granted(_))));
    server.shutdown();
}
