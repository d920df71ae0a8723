//! `openai::parse_request` + `to_canonical` on any body: never a panic, and every refusal is a
//! client error (4xx, type `invalid_request_error`) in OpenAI's error shape.
#![no_main]

use aigate::error::{ApiError, ErrorSource};
use aigate::openai::{parse_request, to_canonical};
use libfuzzer_sys::fuzz_target;

fn check(err: &ApiError) {
    assert!(err.status.is_client_error(), "{err:?}");
    assert_eq!(err.origin, ErrorSource::Client, "{err:?}");
    let body: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap_or_default();
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(error["type"], "invalid_request_error", "{body}");
}

fuzz_target!(|data: &[u8]| {
    // The server refuses a body that is not UTF-8 before it gets here.
    let Ok(body) = std::str::from_utf8(data) else { return };
    match parse_request(body) {
        Ok(request) => {
            if let Err(err) = to_canonical(&request, "upstream-model") {
                check(&err);
            }
        }
        Err(err) => check(&err),
    }
});
