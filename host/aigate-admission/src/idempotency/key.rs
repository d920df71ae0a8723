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
                    Err(KeyError::Malformed(
                        "unexpected characters after the closing quote",
                    ))
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
        assert_eq!(
            parse_idempotency_key(r#""a\nb""#),
            Err(KeyError::Malformed("only \\\" and \\\\ may be escaped"))
        );
        assert!(matches!(
            parse_idempotency_key(r#""abc"#),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            parse_idempotency_key(r#""abc\"#),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            parse_idempotency_key(r#""abc";p=1"#),
            Err(KeyError::Malformed(_))
        ));
        assert_eq!(parse_idempotency_key(r#""""#), Err(KeyError::Empty));
    }

    #[test]
    fn refuses_long_empty_and_control_characters() {
        assert_eq!(parse_idempotency_key(""), Err(KeyError::Empty));
        assert_eq!(parse_idempotency_key("  "), Err(KeyError::Empty));
        assert!(parse_idempotency_key("a".repeat(255)).is_ok());
        assert_eq!(
            parse_idempotency_key("a".repeat(256)),
            Err(KeyError::TooLong { len: 256 })
        );
        // 255 characters once unescaped, 257 on the wire
        assert!(parse_idempotency_key(format!("\"{}\"", "a".repeat(255))).is_ok());
        assert_eq!(
            parse_idempotency_key("a\u{7f}b"),
            Err(KeyError::ControlCharacter)
        );
        assert_eq!(
            parse_idempotency_key("a\tb"),
            Err(KeyError::ControlCharacter)
        );
        assert_eq!(
            parse_idempotency_key("\"a\u{1}\""),
            Err(KeyError::ControlCharacter)
        );
        assert_eq!(parse_idempotency_key("ключ"), Err(KeyError::NonAscii));
    }

    #[test]
    fn fingerprint_ignores_key_order_and_formatting() {
        let a: serde_json::Value = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1}"#,
        )
        .unwrap();
        let b: serde_json::Value = serde_json::from_str("{ \"n\": 1,\n \"messages\": [{\"content\": \"hi\", \"role\": \"user\"}], \"model\": \"m\" }").unwrap();
        assert_eq!(
            fingerprint("POST", "/v1/chat/completions", &a),
            fingerprint("POST", "/v1/chat/completions", &b)
        );
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
            assert_ne!(
                fp,
                fingerprint("POST", "/v1/chat/completions", &other),
                "{other}"
            );
        }
        // method and path cannot bleed into each other
        assert_ne!(
            fingerprint("POST", "/a", &json!(null)),
            fingerprint("POS", "T/a", &json!(null))
        );
    }
}
