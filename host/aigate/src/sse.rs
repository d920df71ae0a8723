//! A bounded `text/event-stream` decoder for provider streams.
//!
//! Provider bytes are untrusted input: `eventsource-stream` (the usual
//! crate) buffers a line without limit, so a provider, or anything between
//! it and us, that sends 50 MB without a newline would take 50 MB of the
//! gateway. This decoder holds at most one line (`max_line_bytes`) and one
//! event (`max_event_bytes`) per stream, and counts the whole stream
//! against `max_total_bytes`; past a bound it returns an error and the relay
//! ends the stream.
//!
//! Framing follows the WHATWG rules the plugins were written against (the
//! same as `eventsource-stream`): lines end with `\n`, `\r\n` or `\r`; `:`
//! starts a comment; `data` lines are joined with `\n`; a blank line
//! dispatches; an event without data is not dispatched; an event type of
//! `message` (or none) is the default (`event: None`); an unfinished event
//! at the end of the stream is dropped; a leading byte order mark is skipped.

use aigate_plugins::canonical::SseEvent;

/// The bounds of one provider stream (`[streams]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseLimits {
    pub max_line_bytes: usize,
    pub max_event_bytes: usize,
    pub max_total_bytes: u64,
}

/// Which bound a stream broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseTooLarge {
    #[error("a line of the provider's stream is longer than {0} bytes (streams.max_line_bytes)")]
    Line(usize),
    #[error("an event of the provider's stream is larger than {0} bytes (streams.max_event_bytes)")]
    Event(usize),
    #[error("the provider's stream is larger than {0} bytes (streams.max_total_bytes)")]
    Total(u64),
}

/// Incremental decoder: feed it the body's chunks as they come.
#[derive(Debug)]
pub struct SseDecoder {
    limits: SseLimits,
    /// The unfinished line carried over from the previous chunk.
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: String,
    total: u64,
    /// The last chunk ended with `\r`: a `\n` first in the next one belongs to it.
    skip_lf: bool,
    /// Whether the first line was seen (it may start with a byte order mark).
    started: bool,
}

impl SseDecoder {
    pub fn new(limits: SseLimits) -> Self {
        SseDecoder {
            limits,
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: String::new(),
            total: 0,
            skip_lf: false,
            started: false,
        }
    }

    /// Decodes `chunk`, appending the events it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        self.total = self.total.saturating_add(chunk.len() as u64);
        if self.total > self.limits.max_total_bytes {
            return Err(SseTooLarge::Total(self.limits.max_total_bytes));
        }
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = rest.split_at(end);
            if self.line.is_empty() {
                self.check_line(head.len())?;
                self.process_line(head, out)?;
            } else {
                self.check_line(self.line.len() + head.len())?;
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.process_line(&line, out)?;
                line.clear();
                self.line = line;
            }
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.skip_lf = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
        }
        self.check_line(self.line.len() + rest.len())?;
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn check_line(&self, len: usize) -> Result<(), SseTooLarge> {
        if len > self.limits.max_line_bytes {
            return Err(SseTooLarge::Line(self.limits.max_line_bytes));
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        let line = if self.started {
            line
        } else {
            self.started = true;
            line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
        };
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limits.max_event_bytes {
                    return Err(SseTooLarge::Event(self.limits.max_event_bytes));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {} // id, retry and unknown fields mean nothing to a relay
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push(SseEvent {
            event: (!event.is_empty() && event != "message").then_some(event),
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: SseLimits = SseLimits { max_line_bytes: 1 << 20, max_event_bytes: 1 << 20, max_total_bytes: 1 << 30 };

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new(ROOMY);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            decoder.feed(chunk, &mut out).unwrap();
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(str::to_owned), data: data.to_owned() }
    }

    #[test]
    fn frames_like_the_spec_whatever_the_chunking() {
        let input = "\u{feff}data: {\"a\":1}\n\n: comment\nevent: error\ndata: x\ndata:y\r\n\r\nevent: message\ndata: z\rid: 1\r\r\
                     event: ping\n\ndata: tail-without-blank-line";
        let expected = vec![ev(None, "{\"a\":1}"), ev(Some("error"), "x\ny"), ev(None, "z")];
        for piece in [1, 2, 3, 7, 1000] {
            assert_eq!(decode_in_pieces(input.as_bytes(), piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn a_line_past_the_bound_is_an_error_before_it_is_buffered() {
        let limits = SseLimits { max_line_bytes: 64, ..ROOMY };
        let mut decoder = SseDecoder::new(limits);
        let mut out = Vec::new();
        decoder.feed(b"data: ", &mut out).unwrap();
        let err = (0..100).find_map(|_| decoder.feed(&[b'x'; 16], &mut out).err());
        assert_eq!(err, Some(SseTooLarge::Line(64)));
        assert!(decoder.line.capacity() <= 128, "held at most about one line");
    }

    #[test]
    fn events_and_streams_have_their_own_bounds() {
        let mut decoder = SseDecoder::new(SseLimits { max_event_bytes: 10, ..ROOMY });
        let mut out = Vec::new();
        assert_eq!(decoder.feed(b"data: 123456\ndata: 7890\n", &mut out), Err(SseTooLarge::Event(10)));

        let mut decoder = SseDecoder::new(SseLimits { max_total_bytes: 20, ..ROOMY });
        decoder.feed(b"data: 1\n\ndata: 2\n\n", &mut out).unwrap();
        assert_eq!(decoder.feed(b"data: 3\n\n", &mut out), Err(SseTooLarge::Total(20)));
    }
}
