//! Server-sent events for tests: parse a whole body ([`parse`]) or bytes as they arrive
//! ([`Parser`]), then read the OpenAI/DashScope chunk payloads.
//!
//! Parsing follows the SSE rules that matter here: events end at a blank line, lines end in
//! `\n` or `\r\n`, `data:` lines of one event join with `\n`, one space after the colon is
//! dropped, `:` lines are comments. Unlike a browser, an unterminated event at the end of the
//! body is kept (by [`parse`] and [`Parser::finish`]), so a test can see a missing blank line
//! instead of losing the event.

use serde_json::Value;

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`None` for the default `message` type).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field.
    pub id: Option<String>,
}

impl Event {
    /// `data: [DONE]`, the OpenAI end-of-stream sentinel.
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }

    /// The data as JSON, `None` if it is not JSON (e.g. `[DONE]`).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Incremental parser: feed bytes as they come off the wire, get the events they complete.
#[derive(Clone, Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    current: Event,
    data_lines: usize,
    has_fields: bool,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes (any split, even inside a UTF-8 character) and returns the events they
    /// complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                events.push(event);
            }
        }
        events
    }

    /// Ends the input: the last event if it was not followed by a blank line.
    pub fn finish(mut self) -> Option<Event> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let rest = String::from_utf8_lossy(&rest).into_owned();
            self.line(rest.trim_end_matches('\r'));
        }
        self.has_fields.then_some(self.current)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if !self.has_fields {
                return None;
            }
            self.has_fields = false;
            self.data_lines = 0;
            return Some(std::mem::take(&mut self.current));
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data_lines > 0 {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.data_lines += 1;
            }
            "event" => self.current.event = Some(value.to_owned()),
            "id" => self.current.id = Some(value.to_owned()),
            _ => return None, // `retry` and unknown fields
        }
        self.has_fields = true;
        None
    }
}

/// All events of a complete body, an unterminated last one included.
pub fn parse(body: impl AsRef<[u8]>) -> Vec<Event> {
    let mut parser = Parser::new();
    let mut events = parser.push(body.as_ref());
    events.extend(parser.finish());
    events
}

/// The JSON payloads of a body's events, in order, without `[DONE]`.
///
/// # Errors
///
/// The first payload that is neither JSON nor `[DONE]`.
pub fn data_json(body: impl AsRef<[u8]>) -> Result<Vec<Value>, serde_json::Error> {
    parse(body).iter().filter(|e| !e.is_done()).map(|e| serde_json::from_str(&e.data)).collect()
}

/// Whether the last event is `data: [DONE]` (and it is the only one).
pub fn ends_with_done(events: &[Event]) -> bool {
    events.last().is_some_and(Event::is_done) && events.iter().filter(|e| e.is_done()).count() == 1
}

/// `choices[0].delta.content` of every chunk, concatenated.
pub fn content(chunks: &[Value]) -> String {
    delta_text(chunks, "content")
}

/// `choices[0].delta.reasoning_content` of every chunk, concatenated.
pub fn reasoning_content(chunks: &[Value]) -> String {
    delta_text(chunks, "reasoning_content")
}

fn delta_text(chunks: &[Value], field: &str) -> String {
    chunks.iter().filter_map(|c| c.pointer("/choices/0/delta")?.get(field)?.as_str()).collect()
}

/// The last non-null `usage` (what a gateway should bill, reference 6.2).
pub fn usage(chunks: &[Value]) -> Option<Value> {
    chunks.iter().rev().filter_map(|c| c.get("usage")).find(|u| !u.is_null()).cloned()
}

/// The `finish_reason` that is not null, if any.
pub fn finish_reason(chunks: &[Value]) -> Option<String> {
    chunks.iter().rev().find_map(|c| c.pointer("/choices/0/finish_reason")?.as_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_data_event_comment_and_crlf() {
        let body = ": keep-alive\r\nevent: error\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\nid: 7\n\ndata: [DONE]\n\n";
        let events = parse(body);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("error"));
        assert_eq!(events[0].json(), Some(json!({"a":1})));
        assert_eq!(events[1].data, "x\ny");
        assert_eq!(events[1].id.as_deref(), Some("7"));
        assert!(ends_with_done(&events));
    }

    #[test]
    fn incremental_push_survives_any_split() {
        let body = "data: {\"t\":\"你好\"}\n\ndata: [DONE]\n\n".as_bytes();
        for split in 0..body.len() {
            let mut p = Parser::new();
            let mut events = p.push(&body[..split]);
            events.extend(p.push(&body[split..]));
            assert_eq!(events, parse(body), "split at {split}");
            assert_eq!(events[0].json(), Some(json!({"t":"你好"})));
        }
    }

    #[test]
    fn keeps_an_unterminated_last_event() {
        let events = parse("data: 1\n\ndata: [DONE]");
        assert_eq!(events.len(), 2);
        assert!(events[1].is_done());
        assert!(parse("").is_empty());
    }

    #[test]
    fn chunk_helpers() {
        let chunks = data_json(concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null}],\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\",\"reasoning_content\":null}}],\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        ))
        .unwrap();
        assert_eq!(chunks.len(), 4);
        assert_eq!(content(&chunks), "Hi");
        assert_eq!(reasoning_content(&chunks), "");
        assert_eq!(usage(&chunks), Some(json!({"total_tokens":3})));
        assert_eq!(finish_reason(&chunks).as_deref(), Some("stop"));
    }
}
