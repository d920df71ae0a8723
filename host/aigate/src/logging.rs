//! Log output: text (default) or JSON lines, on stderr.
//!
//! Log lines carry text a client chose (model names, ids, error messages that
//! quote the request). In text mode every control character in a field is
//! escaped (`\n`, `\u{1b}`, …), so a client can neither forge a log line nor
//! send escape sequences to an operator's terminal; JSON mode escapes them by
//! its nature.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{self, Writer};

/// How text-mode fields are written: like tracing's default (`message`
/// first and bare, then `name=value`), with control characters escaped.
pub fn text_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(|writer: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn fmt::Debug| {
        let mut out = Escaping(writer);
        if field.name() == "message" { write!(out, "{value:?}") } else { write!(out, "{}={value:?}", field.name()) }
    })
    .delimited(" ")
}

/// A writer that escapes control characters on their way through.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Installs the process's subscriber: `AIGATE_LOG` filter (default `info`),
/// stderr (stdout carries command output such as a new key).
///
/// Lines are formatted on the thread that logs and written to stderr by a thread of their own
/// ([`LogQueue`]), so a request never waits on a slow terminal, pipe or disk. Colours only when
/// stderr is a terminal. Keep the returned guard alive until exit: dropping it writes what is
/// queued.
///
/// With `tracer` (OpenTelemetry traces on, `telemetry.rs`), the gateway's spans also go to it,
/// whatever the log filter: traces do not depend on how much is logged.
#[must_use = "dropping the guard stops the log writer; hold it until the process exits"]
pub fn init(
    json: bool,
    filter: tracing_subscriber::EnvFilter,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> LogGuard {
    use std::io::IsTerminal as _;

    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = LogQueue::start(std::io::stderr(), LOG_FLUSH_EVERY);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    // Log lines are events; the trace spans stay out of them, so a line reads the same
    // whether traces are on or off.
    let filter =
        tracing_subscriber::filter::FilterExt::and(filter, tracing_subscriber::filter::filter_fn(|m| m.is_event()));
    let fmt = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.fmt_fields(text_fields()).with_filter(filter).boxed()
    };
    let traces = tracer.map(|tracer| {
        let spans = tracing_subscriber::filter::filter_fn(|m| m.is_span() && m.target().starts_with("aigate"));
        crate::telemetry::layer(tracer).with_filter(spans)
    });
    tracing_subscriber::registry().with(fmt).with(traces).init();
    guard
}

/// Longest a log line waits in [`LogQueue`] before it is written.
pub const LOG_FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Bytes queued that get written at once, without waiting for [`LOG_FLUSH_EVERY`].
const LOG_EAGER_BYTES: usize = 256 << 10;

/// Bytes queued at most: beyond, loggers wait for the writer thread (no line is dropped).
const LOG_MAX_BYTES: usize = 4 << 20;

/// The log's queue: the thread that logs appends its formatted line to a buffer in memory; a
/// thread of its own writes the buffer out in one `write` at most every [`LOG_FLUSH_EVERY`] (at
/// once past [`LOG_EAGER_BYTES`]).
///
/// Why not a channel with a writer thread woken per line (`tracing-appender`): at one request
/// per connection that wake-up and a `write` were paid for every request, and a wake-up of
/// another thread is one of the costliest things the gateway did per request (docs/benchmarks.md).
/// Here a busy gateway wakes the writer once per batch of lines, and an idle one never.
///
/// Lossless: when [`LOG_MAX_BYTES`] wait (stderr stalled), loggers wait rather than drop lines.
/// A line reaches stderr within [`LOG_FLUSH_EVERY`]; lines still queued when the process is
/// killed (SIGKILL) are lost, those queued at a graceful exit are written ([`LogGuard`]).
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<LogShared>,
}

struct LogShared {
    state: Mutex<LogState>,
    /// The writer thread waits on it for lines (and for the guard's call to stop).
    lines: Condvar,
    /// Loggers wait on it for room.
    room: Condvar,
}

#[derive(Default)]
struct LogState {
    queued: Vec<u8>,
    stopping: bool,
}

/// Stops the log's writer thread when dropped, after it has written every queued line.
#[must_use = "dropping the guard stops the log writer; hold it until the process exits"]
pub struct LogGuard {
    shared: Arc<LogShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogQueue {
    /// Starts the writer thread on `out`.
    pub fn start<W: std::io::Write + Send + 'static>(out: W, flush_every: Duration) -> (LogQueue, LogGuard) {
        let shared =
            Arc::new(LogShared { state: Mutex::new(LogState::default()), lines: Condvar::new(), room: Condvar::new() });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("aigate-log".to_owned())
            .spawn(move || write_out(&writer, out, flush_every))
            .map_err(|e| {
                eprintln!("aigate: no log writer thread ({e}): logging to stderr directly");
                lock(&shared).stopping = true;
            })
            .ok();
        let queue = LogQueue { shared: shared.clone() };
        (queue, LogGuard { shared, thread })
    }
}

fn lock(shared: &LogShared) -> MutexGuard<'_, LogState> {
    // A logger that panicked mid-append leaves whole lines behind: keep going.
    shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer thread: waits for a line, lets more gather for `flush_every` (unless many queue),
/// writes them in one go; until the guard stops it with nothing left.
fn write_out(shared: &LogShared, mut out: impl std::io::Write, flush_every: Duration) {
    let mut batch = Vec::new();
    loop {
        let mut state = lock(shared);
        while state.queued.is_empty() && !state.stopping {
            state = shared.lines.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let until = std::time::Instant::now() + flush_every;
        while state.queued.len() < LOG_EAGER_BYTES && !state.stopping {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared.lines.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        std::mem::swap(&mut state.queued, &mut batch);
        let stop = state.stopping && batch.is_empty();
        drop(state);
        shared.room.notify_all();
        if stop {
            let _ = out.flush();
            return;
        }
        // Nowhere to report a failing stderr; the next batch tries again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        // A burst's buffer is not kept for good.
        batch.shrink_to(LOG_EAGER_BYTES);
    }
}

impl std::io::Write for LogQueue {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &*self.shared;
        let mut state = lock(shared);
        if state.stopping {
            // After the guard: nobody writes the queue any more.
            drop(state);
            return std::io::stderr().write(line);
        }
        while !state.queued.is_empty() && state.queued.len() + line.len() > LOG_MAX_BYTES && !state.stopping {
            state = shared.room.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let first = state.queued.is_empty();
        state.queued.extend_from_slice(line);
        let eager = state.queued.len() >= LOG_EAGER_BYTES;
        drop(state);
        // The writer thread sleeps only while the queue is empty or while a batch gathers:
        // only the first line of a batch (or a large queue) needs to wake it.
        if first || eager {
            shared.lines.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = LogQueue;

    fn make_writer(&'a self) -> LogQueue {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        lock(&self.shared).stopping = true;
        self.shared.lines.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::text_fields;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .fmt_fields(text_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn client_text_cannot_forge_a_line_or_a_terminal_escape() {
        let model = "qwen-turbo\n2026-11-30T00:00:00Z  INFO forged: admin logged in\r\u{1b}[2J";
        let out = logged(|| {
            tracing::info!(request_id = %"id\nx", %model, "Unknown model `{model}`.");
        });
        assert_eq!(out.matches('\n').count(), 1, "one event, one line: {out:?}");
        assert!(out.ends_with('\n'));
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
        assert!(out.contains(r"qwen-turbo\n2026-11-30T00:00:00Z  INFO forged"), "escaped, still readable: {out}");
        assert!(out.contains(r"request_id=id\nx"), "{out}");
    }

    #[test]
    fn plain_fields_look_like_the_default_format() {
        let out = logged(|| tracing::info!(status = 200, path = %"/v1/models", "request"));
        assert!(out.trim_end().ends_with("request status=200 path=/v1/models"), "{out}");
    }

    /// Output that the test can hold up, as a stalled stderr would.
    #[derive(Clone, Default)]
    struct Held {
        out: Buffer,
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl std::io::Write for Held {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, changed) = &*self.open;
            let mut is_open = open.lock().unwrap();
            while !*is_open {
                is_open = changed.wait(is_open).unwrap();
            }
            self.out.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Held {
        fn set_open(&self, value: bool) {
            *self.open.0.lock().unwrap() = value;
            self.open.1.notify_all();
        }
        fn bytes(&self) -> Vec<u8> {
            self.out.0.lock().unwrap().clone()
        }
    }

    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn queued_lines_reach_the_output_whole_in_order_and_all_at_the_guard() {
        use std::io::Write as _;
        let held = Held::default();
        held.set_open(true);
        let (queue, guard) = super::LogQueue::start(held.clone(), std::time::Duration::from_millis(10));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        queue.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Without the guard: within the flush interval.
        let mut late = queue.clone();
        late.write_all(b"one more\n").unwrap();
        eventually("the last line", || held.bytes().ends_with(b"one more\n"));
        // And with it: whatever is queued when it drops.
        late.write_all(b"at exit\n").unwrap();
        drop(guard);
        let text = String::from_utf8(held.bytes()).unwrap();
        assert!(text.ends_with("one more\nat exit\n"), "{text}");
        for t in 0..4 {
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let expected: Vec<String> = (0..500).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(lines, expected);
        }
    }

    #[test]
    fn a_stalled_output_holds_loggers_up_and_loses_nothing() {
        use std::io::Write as _;
        let held = Held::default();
        // Opened on the way out too: a failed assertion must not leave the writer stuck.
        struct OpenOnDrop(Held);
        impl Drop for OpenOnDrop {
            fn drop(&mut self) {
                self.0.set_open(true);
            }
        }
        let (queue, guard) = super::LogQueue::start(held.clone(), std::time::Duration::from_millis(1));
        let opener = OpenOnDrop(held.clone());
        let line = vec![b'x'; 64 << 10];
        let lines = 4 * super::LOG_MAX_BYTES / line.len();
        let mut logger_queue = queue.clone();
        let logged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = logged.clone();
        let logger = std::thread::spawn(move || {
            for _ in 0..lines {
                logger_queue.write_all(&line).unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // Stalled: the writer thread holds one batch (at most the bound), the queue fills to its
        // bound, the logger waits.
        let at_most = 2 * super::LOG_MAX_BYTES / (64 << 10);
        eventually("the queue to fill", || super::lock(&queue.shared).queued.len() + (64 << 10) > super::LOG_MAX_BYTES);
        assert!(logged.load(std::sync::atomic::Ordering::SeqCst) < lines);
        assert!(logged.load(std::sync::atomic::Ordering::SeqCst) <= at_most);
        assert!(super::lock(&queue.shared).queued.len() <= super::LOG_MAX_BYTES);
        drop(opener);
        logger.join().unwrap();
        drop(guard);
        assert_eq!(held.bytes().len(), lines * (64 << 10));
    }
}
