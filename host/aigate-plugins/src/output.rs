//! A bounded in-memory sink for a plugin's stderr.
//!
//! A Rust plugin that panics prints `panicked at src/lib.rs:12:5: boom` to stderr before trapping;
//! capturing it lets a [`crate::PluginFault::Trap`] say *why* the plugin crashed. The buffer keeps
//! only the last [`CAPTURE_LIMIT`] bytes (the panic message comes last) and never refuses a write:
//! wasmtime's own `MemoryOutputPipe` traps once full, which would turn a chatty plugin into a
//! crashing one.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much of a plugin's stderr is kept per instance.
pub(crate) const CAPTURE_LIMIT: usize = 4096;

/// How much the guest may write in one go (`check-write`); anything beyond the limit is dropped.
const WRITE_PERMIT: usize = 64 * 1024;

/// A cheap handle: clones share one buffer.
#[derive(Clone, Default)]
pub(crate) struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl CapturedOutput {
    fn append(&self, bytes: &[u8]) {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still
        // bytes, so keep going rather than lose the message.
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if bytes.len() >= CAPTURE_LIMIT {
            buffer.clear();
            buffer.extend_from_slice(&bytes[bytes.len() - CAPTURE_LIMIT..]);
            return;
        }
        let overflow = (buffer.len() + bytes.len()).saturating_sub(CAPTURE_LIMIT);
        if overflow > 0 {
            buffer.drain(..overflow);
        }
        buffer.extend_from_slice(bytes);
    }

    /// The captured text, lossily decoded.
    pub(crate) fn contents(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// The captured text trimmed for an error message: Rust's `note: run with RUST_BACKTRACE=1`
    /// hint is noise here (the plugin has no environment), blank lines are dropped.
    pub(crate) fn message(&self) -> Option<String> {
        let text = self.contents();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        if lines.is_empty() { None } else { Some(lines.join(" ")) }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_drops_the_backtrace_hint() {
        let out = CapturedOutput::default();
        out.append(&vec![b'x'; CAPTURE_LIMIT]);
        out.append(b"\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\n");
        out.append(b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
        let message = out.message().unwrap_or_default();
        assert!(message.ends_with("panicked at src/lib.rs:3:5: boom"), "{message}");
        assert!(out.contents().len() <= CAPTURE_LIMIT);
    }

    #[test]
    fn empty_output_has_no_message() {
        assert_eq!(CapturedOutput::default().message(), None);
    }
}
