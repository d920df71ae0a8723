//! The stored outcome of an idempotent request, and its compact binary encoding for Redis.

use bytes::Bytes;

use crate::IdempotencyError;

/// How the stored body is to be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One body, sent as is (a JSON completion or error).
    Whole,
    /// A `text/event-stream`: `body` is the events exactly as they were sent, each ending with
    /// a blank line (`\n\n`). Replay them one by one with [`StoredResponse::events`] to
    /// reproduce the same stream of chunks.
    EventStream,
}

/// A response to replay for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers that matter for a replay (content type, request id of the original, ...):
    /// the server selects them. Values must be visible ASCII to round-trip as `String`.
    pub headers: Vec<(String, String)>,
    pub kind: BodyKind,
    pub body: Bytes,
}

impl StoredResponse {
    pub fn is_stream(&self) -> bool {
        self.kind == BodyKind::EventStream
    }

    /// The SSE events of the body, each with its terminating blank line (a trailing partial
    /// event without one is yielded last). For a [`BodyKind::Whole`] body: the whole body.
    pub fn events(&self) -> SseEvents<'_> {
        SseEvents { rest: &self.body, whole: self.kind == BodyKind::Whole }
    }
}

/// Iterator over the events of a stored stream; see [`StoredResponse::events`].
#[derive(Debug)]
pub struct SseEvents<'a> {
    rest: &'a [u8],
    whole: bool,
}

impl<'a> Iterator for SseEvents<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let end = if self.whole {
            self.rest.len()
        } else {
            self.rest.windows(2).position(|w| w == b"\n\n").map_or(self.rest.len(), |i| i + 2)
        };
        let (event, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(event)
    }
}

const VERSION: u8 = 1;

/// `version u8 | status u16 | kind u8 | header count u16 | (name len u16, name, value len u32,
/// value)* | body` (big endian; the body runs to the end).
pub(crate) fn encode(response: &StoredResponse, out: &mut Vec<u8>) {
    out.reserve(8 + response.body.len());
    out.push(VERSION);
    out.extend_from_slice(&response.status.to_be_bytes());
    out.push(match response.kind {
        BodyKind::Whole => 0,
        BodyKind::EventStream => 1,
    });
    // Header lists are small; more than u16::MAX (or longer names or values than their length
    // fields) would be a server bug, and are cut rather than corrupting the record.
    let headers = &response.headers[..response.headers.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
        let value = &value.as_bytes()[..value.len().min(u32::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&response.body);
}

/// Decodes what [`encode`] wrote. `record` is shared so the body is a zero-copy slice.
pub(crate) fn decode(record: Bytes) -> Result<StoredResponse, IdempotencyError> {
    let mut r = Reader { buf: &record, pos: 0 };
    if r.take(1)? != [VERSION] {
        return Err(IdempotencyError::Corrupt("unknown record version"));
    }
    let status = u16::from_be_bytes(r.array()?);
    let kind = match r.take(1)? {
        [0] => BodyKind::Whole,
        [1] => BodyKind::EventStream,
        _ => return Err(IdempotencyError::Corrupt("unknown body kind")),
    };
    let count = u16::from_be_bytes(r.array()?);
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_len = u16::from_be_bytes(r.array()?);
        let name = r.text(usize::from(name_len))?;
        let value_len = u32::from_be_bytes(r.array()?);
        let value = r.text(value_len as usize)?;
        headers.push((name, value));
    }
    let body = record.slice(r.pos..);
    Ok(StoredResponse { status, headers, kind, body })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IdempotencyError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let end = end.ok_or(IdempotencyError::Corrupt("record is truncated"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], IdempotencyError> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| IdempotencyError::Corrupt("record is truncated"))
    }

    fn text(&mut self, n: usize) -> Result<String, IdempotencyError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| IdempotencyError::Corrupt("header is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: BodyKind, body: &'static [u8]) -> StoredResponse {
        StoredResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into()), ("x-request-id".into(), "req-1".into())],
            kind,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn round_trips() {
        for response in [
            sample(BodyKind::EventStream, b"data: {\"a\":1}\n\ndata: [DONE]\n\n"),
            sample(BodyKind::Whole, b""),
            StoredResponse {
                status: 422,
                headers: vec![],
                kind: BodyKind::Whole,
                body: Bytes::from_static(&[0, 255, 1]),
            },
        ] {
            let mut buf = Vec::new();
            encode(&response, &mut buf);
            assert_eq!(decode(Bytes::from(buf)).unwrap(), response);
        }
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let mut buf = Vec::new();
        encode(&sample(BodyKind::Whole, b"{}"), &mut buf);
        // every strict prefix that cuts into the header section
        for cut in 0..(buf.len() - 2) {
            assert!(decode(Bytes::copy_from_slice(&buf[..cut])).is_err(), "prefix {cut}");
        }
        buf[0] = 9;
        assert!(matches!(decode(Bytes::from(buf)), Err(IdempotencyError::Corrupt(_))));
    }

    #[test]
    fn events_split_after_blank_lines() {
        let response = sample(BodyKind::EventStream, b"data: 1\n\ndata: 2\n\ndata: [DONE]");
        let events: Vec<&[u8]> = response.events().collect();
        assert_eq!(events, vec![&b"data: 1\n\n"[..], b"data: 2\n\n", b"data: [DONE]"]);
        let whole = sample(BodyKind::Whole, b"a\n\nb");
        assert_eq!(whole.events().collect::<Vec<_>>(), vec![&b"a\n\nb"[..]]);
    }
}
