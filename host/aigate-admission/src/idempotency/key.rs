//! Parsing the `Idempotency-Key` header and fingerprinting a request.

use std::io;

use sha2::{Digest, Sha256};

use super::Fingerprint;

/// Longest accepted key, in characters (the issue's limit; Stripe uses 255 too).
const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header value was refused (the server answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("the Idempotency-Key header is empty")]
    Empty,
    #[error("the Idempotency-Key is {len} characters long; at most 255 are allowed")]
    TooLong { len: usize },
    #[error("the Idempotency-Key contains a control character")]
    ControlCharacter,
    #[error("the Idempotency-Key contains a non-ASCII character")]
    NonAscii,
    #[error("the Idempotency-Key is not a valid structured-field string: {0}")]
    Malformed(&'static str),
}

/// The idempotency key named by an `Idempotency-Key` header value.
///
/// Accepts the draft's form, an RFC 8941 sf-string (`"abc"`, with `\"` and `\\` escapes), and
/// the bare form Stripe-style clients send (`abc`); both name the key `abc`. Surrounding
/// spaces and tabs are ignored. Refused: an empty key, a key over 255 characters (after
/// unescaping), control characters, non-ASCII bytes, and a malformed sf-string (bad escape,
/// missing closing quote, anything after it: the draft defines no parameters).
///
/// Takes bytes so an `http::HeaderValue` can be passed as is (`value.as_bytes()`).
pub fn parse_idempotency_key(header_value: impl AsRef<[u8]>) -> Result<String, KeyError> {
    let raw = trim_ows(header_value.as_ref());
    let key = match raw.split_first() {
        Some((b'"', rest)) => parse_sf_string(rest)?,
        _ => {
            check_chars(raw)?;
            String::from_utf8_lossy(raw).into_owned()
        }
    };
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong { len: key.len() });
    }
    Ok(key)
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn check_chars(bytes: &[u8]) -> Result<(), KeyError> {
    for &b in bytes {
        check_char(b)?;
    }
    Ok(())
}

fn check_char(b: u8) -> Result<(), KeyError> {
    match b {
        0x20..=0x7e => Ok(()),
        0x80..=0xff => Err(KeyError::NonAscii),
        _ => Err(KeyError::ControlCharacter),
    }
}

/// RFC 8941 §4.2.5, after the opening quote.
fn parse_sf_string(mut rest: &[u8]) -> Result<String, KeyError> {
    let mut out = String::with_capacity(rest.len());
    loop {
        match rest {
            [] => return Err(KeyError::Malformed("missing closing quote")),
            [b'"', after @ ..] => {
                return if after.is_empty() {
                    Ok(out)
                } else {
                    Err(KeyError::Malformed("unexpected characters after the closing quote"))
                };
            }
            [b'\\', escaped, after @ ..] => {
                if !matches!(escaped, b'"' | b'\\') {
                    check_char(*escaped)?;
                    return Err(KeyError::Malformed("only \\\" and \\\\ may be escaped"));
                }
                out.push(char::from(*escaped));
                rest = after;
            }
            [b'\\'] => return Err(KeyError::Malformed("missing closing quote")),
            [c, after @ ..] => {
                check_char(*c)?;
                out.push(char::from(*c));
                rest = after;
            }
        }
    }
}

/// The fingerprint of a request for idempotency: SHA-256 over the method, the path and a
/// canonical form of the JSON body (object keys sorted by their UTF-8 bytes, no whitespace,
/// strings escaped as serde_json escapes them, numbers as serde_json prints them: `1` and
/// `1.0` differ). Key order and formatting of the body therefore do not matter.
pub fn fingerprint(method: &str, path: &str, body_json: &serde_json::Value) -> Fingerprint {
    let mut hasher = HashWriter(Sha256::new());
    hasher.0.update(method.as_bytes());
    hasher.0.update([0]);
    hasher.0.update(path.as_bytes());
    hasher.0.update([0]);
    write_canonical(body_json, &mut hasher);
    hasher.0.finalize().into()
}

struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_canonical(value: &serde_json::Value, out: &mut HashWriter) {
    use serde_json::Value;
    match value {
        Value::Null => out.0.update(b"null"),
        Value::Bool(b) => out.0.update(if *b { &b"true"[..] } else { b"false" }),
        Value::Number(n) => out.0.update(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_canonical(item, out);
            }
            out.0.update(b"]");
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.0.update(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_string(key, out);
                out.0.update(b":");
                write_canonical(item, out);
            }
            out.0.update(b"}");
        }
    }
}

fn write_string(s: &str, out: &mut HashWriter) {
    // Writing a str into an infallible writer cannot fail; a failure would only weaken the
    // fingerprint of this one string, so it is not worth a panic path.
    let _ = serde_json::to_writer(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sf_string_and_bare_token_name_the_same_key() {
        assert_eq!(parse_idempotency_key("\"abc\"").unwrap(), "abc");
        assert_eq!(parse_idempotency_key("abc").unwrap(), "abc");
        assert_eq!(parse_idempotency_key(" \"abc\"\t").unwrap(), "abc");
        assert_eq!(
            parse_idempotency_key(b"8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
    }

    #[test]
    fn sf_string_escapes() {
        assert_eq!(parse_idempotency_key(r#""a\"b\\c""#).unwrap(), r#"a"b\c"#);
        assert_eq!(parse_idempotency_key(r#""a\nb""#), Err(KeyError::Malformed("only \\\" and \\\\ may be escaped")));
        assert!(matches!(parse_idempotency_key(r#""abc"#), Err(KeyError::Malformed(_))));
        assert!(matches!(parse_idempotency_key(r#""abc\"#), Err(KeyError::Malformed(_))));
        assert!(matches!(parse_idempotency_key(r#""abc";p=1"#), Err(KeyError::Malformed(_))));
        assert_eq!(parse_idempotency_key(r#""""#), Err(KeyError::Empty));
    }

    #[test]
    fn refuses_long_empty_and_control_characters() {
        assert_eq!(parse_idempotency_key(""), Err(KeyError::Empty));
        assert_eq!(parse_idempotency_key("  "), Err(KeyError::Empty));
        assert!(parse_idempotency_key("a".repeat(255)).is_ok());
        assert_eq!(parse_idempotency_key("a".repeat(256)), Err(KeyError::TooLong { len: 256 }));
        // 255 characters once unescaped, 257 on the wire
        assert!(parse_idempotency_key(format!("\"{}\"", "a".repeat(255))).is_ok());
        assert_eq!(parse_idempotency_key("a\u{7f}b"), Err(KeyError::ControlCharacter));
        assert_eq!(parse_idempotency_key("a\tb"), Err(KeyError::ControlCharacter));
        assert_eq!(parse_idempotency_key("\"a\u{1}\""), Err(KeyError::ControlCharacter));
        assert_eq!(parse_idempotency_key("ключ"), Err(KeyError::NonAscii));
    }

    #[test]
    fn fingerprint_ignores_key_order_and_formatting() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(
            "{ \"n\": 1,\n \"messages\": [{\"content\": \"hi\", \"role\": \"user\"}], \"model\": \"m\" }",
        )
        .unwrap();
        assert_eq!(fingerprint("POST", "/v1/chat/completions", &a), fingerprint("POST", "/v1/chat/completions", &b));
    }

    #[test]
    fn fingerprint_sees_every_difference() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let fp = fingerprint("POST", "/v1/chat/completions", &base);
        assert_ne!(fp, fingerprint("POST", "/v1/completions", &base));
        assert_ne!(fp, fingerprint("PUT", "/v1/chat/completions", &base));
        for other in [
            json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 1}),
            json!({"model": "m", "messages": [{"content": "hi", "role": "system"}]}),
            json!({"model": "m", "messages": []}),
        ] {
            assert_ne!(fp, fingerprint("POST", "/v1/chat/completions", &other), "{other}");
        }
        // method and path cannot bleed into each other
        assert_ne!(fingerprint("POST", "/a", &json!(null)), fingerprint("POS", "T/a", &json!(null)));
    }
}

/// Property tests of the documented grammar: `OWS ( bare / sf-string ) OWS`, a key of 1 to 255
/// visible ASCII characters or spaces, where a bare key neither starts with `"` nor has spaces
/// at its ends, and an sf-string escapes exactly `"` and `\`.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The RFC 8941 spelling of a key: the only one, as only `"` and `\` may be escaped and
    /// both must be.
    fn sf_string(key: &str) -> String {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn ows() -> impl Strategy<Value = String> {
        "[ \t]{0,3}"
    }

    /// A byte biased towards what the grammar cares about.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => 0x20_u8..0x7f,
            1 => prop_oneof![Just(b'"'), Just(b'\\'), Just(b' '), Just(b'\t')],
            1 => any::<u8>(),
        ]
    }

    /// Header bytes: random ones, and near misses (a valid spelling, bare or quoted, with a
    /// few bytes inserted, removed or replaced), where a lenient parser would slip.
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        let spelling = ("[ -~]{1,8}|[ -~]{250,258}", any::<bool>())
            .prop_map(|(key, quoted)| if quoted { sf_string(&key) } else { key }.into_bytes());
        let edit = (any::<proptest::sample::Index>(), 0..3_u8, byte());
        let near_miss = (spelling, proptest::collection::vec(edit, 1..3)).prop_map(|(mut bytes, edits)| {
            for (at, kind, b) in edits {
                let at = at.index(bytes.len() + 1);
                match kind {
                    0 => bytes.insert(at, b),
                    1 if at < bytes.len() => drop(bytes.remove(at)),
                    _ if at < bytes.len() => bytes[at] = b,
                    _ => bytes.push(b),
                }
            }
            bytes
        });
        prop_oneof![
            1 => proptest::collection::vec(byte(), 0..40),
            1 => proptest::collection::vec(byte(), 250..262),
            2 => near_miss,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_key_round_trips_as_a_structured_string(key in "[ -~]{1,255}", pre in ows(), post in ows()) {
            let header = format!("{pre}{}{post}", sf_string(&key));
            prop_assert_eq!(parse_idempotency_key(&header), Ok(key));
        }

        #[test]
        fn a_bare_key_is_itself(key in "[!#-~]([ -~]{0,253}[!-~])?", pre in ows(), post in ows()) {
            prop_assert_eq!(parse_idempotency_key(format!("{pre}{key}{post}")), Ok(key));
        }

        #[test]
        fn keys_over_255_characters_are_refused(key in "[!#-~][ -~]{254,400}[!-~]") {
            let len = key.len();
            prop_assert_eq!(parse_idempotency_key(&key), Err(KeyError::TooLong { len }));
            prop_assert_eq!(parse_idempotency_key(sf_string(&key)), Err(KeyError::TooLong { len }));
        }

        #[test]
        fn control_and_non_ascii_characters_are_refused(
            key in "[a-zA-Z0-9][a-zA-Z0-9 ._~:-]{0,100}[a-zA-Z0-9]",
            at in any::<proptest::sample::Index>(),
            bad in prop_oneof![0_u8..0x20, Just(0x7f), 0x80_u8..=0xff],
        ) {
            let mut bytes = key.into_bytes();
            let at = 1 + at.index(bytes.len() - 1);
            bytes.insert(at, bad);
            let expected = if bad >= 0x80 { KeyError::NonAscii } else { KeyError::ControlCharacter };
            prop_assert_eq!(parse_idempotency_key(&bytes), Err(expected.clone()));
            let mut quoted = vec![b'"'];
            quoted.extend_from_slice(&bytes);
            quoted.push(b'"');
            prop_assert_eq!(parse_idempotency_key(&quoted), Err(expected));
        }

        /// Whatever the header holds, parsing never panics, and a key it returns is valid and
        /// is spelled by the header (after OWS) exactly as the grammar says: bare or sf-string.
        #[test]
        fn accepted_headers_spell_their_key(bytes in header_bytes()) {
            if let Ok(key) = parse_idempotency_key(&bytes) {
                prop_assert!((1..=MAX_KEY_LEN).contains(&key.len()), "{:?}", key);
                prop_assert!(key.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", key);
                let spelled = trim_ows(&bytes);
                let bare = !key.starts_with('"') && spelled == key.as_bytes();
                prop_assert!(bare || spelled == sf_string(&key).as_bytes(), "{:?} -> {:?}", bytes, key);
            }
        }
    }
}
