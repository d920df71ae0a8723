//! `parse_idempotency_key` on any header value: never a panic, and an accepted key has 1 to 255
//! visible ASCII characters or spaces and is spelled by the header (after optional spaces and
//! tabs) exactly as the grammar says: bare, or as its one RFC 8941 string spelling.
#![no_main]

use aigate_admission::parse_idempotency_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = parse_idempotency_key(data) else { return };
    assert!((1..=255).contains(&key.len()), "{key:?}");
    assert!(key.bytes().all(|b| (0x20..0x7f).contains(&b)), "{key:?}");
    let start = data.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(data.len());
    let end = data.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |i| i + 1);
    let spelled = &data[start..end];
    let quoted = format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
    let bare = !key.starts_with('"') && spelled == key.as_bytes();
    assert!(bare || spelled == quoted.as_bytes(), "{data:?} read as {key:?}");
});
