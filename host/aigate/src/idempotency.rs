//! `Idempotency-Key` on `POST /v1/chat/completions` (IETF httpapi draft,
//! Stripe's practice).
//!
//! - Keys are scoped to the org; the request's fingerprint (method, path,
//!   canonical JSON body) is stored with the key; records live for
//!   `idempotency.ttl_hours` (24 h).
//! - First request: the key is claimed atomically with a lease; the call
//!   runs; its final response is stored. A crashed replica's claim expires
//!   with the lease (renewed while a long call runs).
//! - Same key and body after completion: the stored response is replayed
//!   (`Idempotent-Replayed: true`), a stream as the same SSE events; no
//!   provider call, no new usage record, nothing billed.
//! - Same key, different body: 422 `idempotency_key_reused`.
//! - Same key while the first is in flight: 409 `idempotency_key_in_progress`
//!   with `Retry-After`. We answer at once rather than wait for the first: a
//!   chat can run for minutes, and holding a connection that long per retry
//!   would let retries pile up; clients already retry on 409 with backoff.
//! - Stored: final answers, the provider's successes and the errors it says
//!   are the request's fault ([`ApiError::is_final`]: a 4xx about the request,
//!   a content filter), streams included. Released (the client may retry):
//!   retryable provider failures (429, 5xx, overloads), failures before the
//!   provider was called (auth, validation, limits), gateway-side failures
//!   (plugin faults, timeouts, an unreachable provider, a client that left a
//!   stream, a stream ended by a deadline or a shutdown) and answers larger
//!   than `idempotency.max_stored_bytes`, which say so with
//!   `Idempotent-Stored: false` (a header on a JSON answer; an SSE comment in
//!   a stream, whose headers are gone by then).
//! - The lease is renewed by a task of the call's [`crate::pipeline::CallGuard`]
//!   for as long as the call runs, streams included, however slowly the
//!   client reads.
//! - The store unreachable: 503 (fail closed: replaying wrongly or calling
//!   twice would both break the promise).

use std::time::Duration;

use aigate_admission::{
    BodyKind, Claim, ClaimGuard, IdempotencyStore, StoredResponse, fingerprint, parse_idempotency_key,
};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorSource, kind};

pub const HEADER: &str = "idempotency-key";

/// Says that an answer was not stored for replays (it was too large).
pub const NOT_STORED_HEADER: &str = "idempotent-stored";

/// Response headers kept with a stored response and replayed.
const KEPT_HEADERS: [&str; 5] =
    ["content-type", "x-aigate-cost", "x-aigate-provider", "x-aigate-plugin", "x-request-id"];

/// What to do with a request that may carry an `Idempotency-Key`.
pub enum Begin {
    /// Run it; complete or release the guard (if any) afterwards.
    Proceed(Option<(ClaimGuard, String)>),
    /// Answer with the stored response.
    Replay(Response),
}

fn conflict(status: StatusCode, code: &str, message: String) -> ApiError {
    ApiError::new(status, kind::INVALID_REQUEST, Some(code), message, ErrorSource::Client)
}

pub async fn begin(
    store: &dyn IdempotencyStore,
    tenant: &Tenant,
    headers: &HeaderMap,
    (method, path): (&str, &str),
    body: &str,
    lease: Duration,
    ttl: Duration,
) -> Result<Begin, ApiError> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(Begin::Proceed(None));
    };
    let key = parse_idempotency_key(raw.as_bytes()).map_err(|e| {
        ApiError::invalid_param(
            "Idempotency-Key",
            format!("Invalid Idempotency-Key header: {e}. Use at most 255 visible ASCII characters."),
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let fp = fingerprint(method, path, &value);
    let org = tenant.org_id.0.to_string();
    let claim = store.claim(&org, &key, &fp, lease, ttl).await.map_err(|e| {
        ApiError::store_unavailable(format!(
            "Idempotency keys cannot be checked right now ({e}); retry the same request shortly."
        ))
    })?;
    match claim {
        Claim::Acquired(guard) => Ok(Begin::Proceed(Some((guard, key)))),
        Claim::Completed(stored) => Ok(Begin::Replay(replay(stored))),
        Claim::Mismatch => Err(conflict(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!(
                "Idempotency-Key `{key}` was already used with a different request. Use a new key for a new request."
            ),
        )),
        Claim::InProgress { retry_after, .. } => Err(conflict(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            format!("A request with Idempotency-Key `{key}` is still in progress. Retry after it finishes."),
        )
        .retryable()
        .with_retry_after(retry_after.max(Duration::from_millis(100)))),
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let h = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            // The replay carries its own request id; the original's is kept apart.
            let n = if n == "x-request-id" { HeaderName::from_static("x-original-request-id") } else { n };
            h.insert(n, v);
        }
    }
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// The parts of a finished response worth storing.
pub fn stored(status: StatusCode, headers: &HeaderMap, body: Bytes, stream: bool) -> StoredResponse {
    StoredResponse {
        status: status.as_u16(),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()).map(|v| ((*n).to_owned(), v.to_owned())))
            .collect(),
        kind: if stream { BodyKind::EventStream } else { BodyKind::Whole },
        body,
    }
}

/// Completes (stored) or releases (retry allowed) a claim; true when a
/// response was stored.
pub async fn finish(guard: ClaimGuard, outcome: Option<StoredResponse>) -> bool {
    let stored = outcome.is_some();
    let result = match outcome {
        Some(response) => guard.complete(response).await,
        None => guard.release().await,
    };
    match result {
        Ok(()) => stored,
        Err(e) => {
            tracing::warn!("idempotency record not updated: {e}");
            false
        }
    }
}
