//! `Money::parse` and `parse_rounded` on any text, and `Display` on any amount: never a panic,
//! only plain non-negative decimals accepted, and what is accepted formats back to the same
//! amount.
#![no_main]

use aigate_core::Money;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(nanos) = <[u8; 8]>::try_from(data) {
        let m = Money::from_nanos(i64::from_le_bytes(nanos));
        let text = m.to_string();
        match Money::parse(&text) {
            Ok(parsed) => assert_eq!(parsed, m, "{text}"),
            Err(_) => assert!(m.is_negative(), "{text} was refused"),
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let exact = Money::parse(text);
    let rounded = Money::parse_rounded(text);
    if let Ok(m) = exact {
        assert!(text.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{text:?} accepted");
        assert!(!m.is_negative());
        assert_eq!(Money::parse(&m.to_string()), Ok(m));
        assert_eq!(rounded, Ok(m), "{text:?}: exact and rounded parses differ");
    }
    if let Ok(m) = rounded {
        assert!(!m.is_negative());
        assert_eq!(Money::parse(&m.to_string()), Ok(m));
    }
});
