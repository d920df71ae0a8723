//! Log output: text (default) or JSON lines, on stderr.
//!
//! Log lines carry text a client chose (model names, ids, error messages that
//! quote the request). In text mode every control character in a field is
//! escaped (`\n`, `\u{1b}`, …), so a client can neither forge a log line nor
//! send escape sequences to an operator's terminal; JSON mode escapes them by
//! its nature.

use std::fmt::{self, Write as _};

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
/// Lines are formatted on the thread that logs and written to stderr by a
/// thread of their own, so a request never waits on a slow terminal, pipe or
/// disk; that thread writes what has queued up in one go (buffered, flushed
/// whenever the queue is empty). The queue is lossless: when it is full
/// (stderr stalled), loggers wait rather than drop lines. Colours only when stderr is a terminal.
/// Keep the returned guard alive until exit: dropping it flushes the queue.
///
/// With `tracer` (OpenTelemetry traces on, `telemetry.rs`), the gateway's spans also go to it,
/// whatever the log filter: traces do not depend on how much is logged.
#[must_use = "dropping the guard stops the log writer; hold it until the process exits"]
pub fn init(
    json: bool,
    filter: tracing_subscriber::EnvFilter,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal as _;

    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("aigate-log")
        .finish(std::io::BufWriter::with_capacity(64 << 10, std::io::stderr()));
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
}
