//! Request ids: the gateway's own, and the client's.
//!
//! Every request gets an id made here ([`generate`]), whatever the client
//! sends: it is the ledger key (one row per id), so a client must not be able
//! to choose it (a client repeating one id would otherwise be billed once).
//! A client's own id, from `x-client-request-id` (OpenAI's name for it) or
//! else `x-request-id`, is kept for correlation only: logged, stored in the
//! ledger beside the gateway's id (not unique) and echoed back in
//! `x-client-request-id`. An ill-formed one (over 128 characters, or anything
//! but visible ASCII) is ignored, never a reason to refuse the request or to
//! set its ledger row aside.
//!
//! The [`assign`] middleware, outermost in the stack, rewrites the request's
//! headers so everything after it sees one truth: `x-request-id` is the
//! gateway's id and `x-client-request-id`, if present, the well-formed client
//! id. Responses carry both the same way.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");

/// A new gateway request id: `req_` and a UUIDv7 (time-ordered, so ledger
/// inserts stay close together in the unique index), 36 ASCII characters.
/// The only place ids are made.
pub fn generate() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// The gateway's id of a request that went through [`assign`].
pub fn of(headers: &HeaderMap) -> String {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The client's well-formed id of a request that went through [`assign`].
pub fn client_of(headers: &HeaderMap) -> Option<String> {
    headers.get(CLIENT_REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The id the client sent, if it is worth keeping.
fn sent_by_client(headers: &HeaderMap) -> Option<HeaderValue> {
    [CLIENT_REQUEST_ID, REQUEST_ID].iter().filter_map(|name| headers.get(name)).find_map(|v| {
        v.to_str().ok().and_then(aigate_store::client_request_id).and_then(|t| HeaderValue::from_str(t).ok())
    })
}

/// Tower middleware: see the module documentation.
pub async fn assign(mut request: Request<Body>, next: Next) -> Response {
    let client = sent_by_client(request.headers());
    // A generated id is ASCII: the conversion cannot fail.
    let id = HeaderValue::from_str(&generate()).unwrap_or(HeaderValue::from_static("req_unknown"));
    let headers = request.headers_mut();
    headers.insert(REQUEST_ID, id.clone());
    headers.remove(CLIENT_REQUEST_ID);
    if let Some(c) = &client {
        headers.insert(CLIENT_REQUEST_ID, c.clone());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, id);
    match client {
        Some(c) => headers.insert(CLIENT_REQUEST_ID, c),
        None => headers.remove(CLIENT_REQUEST_ID),
    };
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_fit_the_ledger() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("req_") && a.len() == 36 && a.is_ascii(), "{a}");
    }

    #[test]
    fn only_well_formed_client_ids_are_kept() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(sent_by_client(&h).unwrap(), "abc-123");
        h.insert(CLIENT_REQUEST_ID, HeaderValue::from_static("mine"));
        assert_eq!(sent_by_client(&h).unwrap(), "mine", "x-client-request-id first");
        h.insert(CLIENT_REQUEST_ID, HeaderValue::from_str(&"x".repeat(129)).unwrap());
        assert_eq!(sent_by_client(&h).unwrap(), "abc-123", "an over-long one is ignored");
        h.insert(REQUEST_ID, HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap());
        assert!(sent_by_client(&h).is_none(), "non-ASCII is ignored");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert!(sent_by_client(&h).is_none());
    }
}
