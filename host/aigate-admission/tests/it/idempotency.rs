//! The idempotency suite, run against every backend. Leases and TTLs are a few hundred
//! milliseconds where expiry is the point; both backends expire by their own clock.

use std::sync::Arc;
use std::time::Duration;

use aigate_admission::{
    BodyKind, Claim, ClaimGuard, Fingerprint, IN_PROGRESS_RETRY_HINT, IdempotencyError, IdempotencyStore,
    StoredResponse, fingerprint,
};
use bytes::Bytes;
use serde_json::json;

use crate::{Replicas, backend_suite};

type Stores = Replicas<dyn IdempotencyStore>;

backend_suite!(crate::memory_stores, crate::redis_stores;
    acquire_complete_replay,
    streamed_original_replays_as_the_same_events,
    different_fingerprint_is_a_mismatch,
    same_fingerprint_in_flight_is_in_progress,
    lease_expiry_frees_a_crashed_claim,
    completed_record_expires_after_its_ttl,
    release_lets_the_client_retry,
    renew_extends_the_lease,
    keys_are_scoped_by_org,
    fifty_concurrent_claims_one_winner,
);

const LEASE: Duration = Duration::from_secs(10);
/// Long enough for any test, short enough to leave nothing behind in a shared Redis.
const TTL: Duration = Duration::from_secs(60);

fn fp(prompt: &str) -> Fingerprint {
    fingerprint(
        "POST",
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": prompt}]}),
    )
}

fn json_response() -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), "req-original".into()),
        ],
        kind: BodyKind::Whole,
        body: Bytes::from_static(br#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#),
    }
}

fn stream_response() -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        kind: BodyKind::EventStream,
        body: Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
              data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
              data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n\
              data: [DONE]\n\n",
        ),
    }
}

async fn claim(
    store: &Arc<dyn IdempotencyStore>,
    org: &str,
    key: &str,
    fingerprint: &Fingerprint,
    lease: Duration,
    ttl: Duration,
) -> Claim {
    store.claim(org, key, fingerprint, lease, ttl).await.unwrap()
}

async fn acquire(store: &Arc<dyn IdempotencyStore>, key: &str, fingerprint: &Fingerprint) -> ClaimGuard {
    match claim(store, "org-1", key, fingerprint, LEASE, TTL).await {
        Claim::Acquired(guard) => guard,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

async fn completed(store: &Arc<dyn IdempotencyStore>, key: &str, fingerprint: &Fingerprint) -> StoredResponse {
    match claim(store, "org-1", key, fingerprint, LEASE, TTL).await {
        Claim::Completed(response) => response,
        other => panic!("expected Completed, got {other:?}"),
    }
}

async fn acquire_complete_replay(s: Stores) {
    let guard = acquire(&s.a, "k1", &fp("hi")).await;
    guard.complete(json_response()).await.unwrap();
    for store in [&s.b, &s.a, &s.b] {
        assert_eq!(completed(store, "k1", &fp("hi")).await, json_response());
    }
}

async fn streamed_original_replays_as_the_same_events(s: Stores) {
    acquire(&s.a, "k1", &fp("hi")).await.complete(stream_response()).await.unwrap();
    let replay = completed(&s.b, "k1", &fp("hi")).await;
    assert!(replay.is_stream());
    let original = stream_response();
    assert_eq!(replay.events().collect::<Vec<_>>(), original.events().collect::<Vec<_>>());
    assert_eq!(replay.events().count(), 4);
    assert_eq!(replay.events().last(), Some(&b"data: [DONE]\n\n"[..]));
}

async fn different_fingerprint_is_a_mismatch(s: Stores) {
    let guard = acquire(&s.a, "k1", &fp("hi")).await;
    // In flight: a different body is still a mismatch, not "in progress".
    assert!(matches!(claim(&s.b, "org-1", "k1", &fp("other"), LEASE, TTL).await, Claim::Mismatch));
    guard.complete(json_response()).await.unwrap();
    assert!(matches!(claim(&s.b, "org-1", "k1", &fp("other"), LEASE, TTL).await, Claim::Mismatch));
    assert_eq!(completed(&s.a, "k1", &fp("hi")).await, json_response());
}

async fn same_fingerprint_in_flight_is_in_progress(s: Stores) {
    let guard = acquire(&s.a, "k1", &fp("hi")).await;
    match claim(&s.b, "org-1", "k1", &fp("hi"), LEASE, TTL).await {
        Claim::InProgress { retry_after, lease_remaining } => {
            assert_eq!(retry_after, IN_PROGRESS_RETRY_HINT);
            assert!(
                lease_remaining > LEASE - Duration::from_secs(2) && lease_remaining <= LEASE,
                "{lease_remaining:?}"
            );
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
    // A lease shorter than the hint caps the hint.
    let short = Duration::from_millis(500);
    let other = match claim(&s.a, "org-1", "k2", &fp("hi"), short, TTL).await {
        Claim::Acquired(guard) => guard,
        other => panic!("{other:?}"),
    };
    match claim(&s.b, "org-1", "k2", &fp("hi"), short, TTL).await {
        Claim::InProgress { retry_after, lease_remaining } => {
            assert!(retry_after <= short && retry_after == lease_remaining);
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
    guard.release().await.unwrap();
    other.release().await.unwrap();
}

async fn lease_expiry_frees_a_crashed_claim(s: Stores) {
    let lease = Duration::from_millis(300);
    // Replica A claims and "crashes": its guard is never settled in time.
    let stale = match claim(&s.a, "org-1", "k1", &fp("hi"), lease, TTL).await {
        Claim::Acquired(guard) => guard,
        other => panic!("{other:?}"),
    };
    let stale_release = match claim(&s.a, "org-1", "k2", &fp("hi"), lease, TTL).await {
        Claim::Acquired(guard) => guard,
        other => panic!("{other:?}"),
    };
    tokio::time::sleep(lease + Duration::from_millis(150)).await;
    let fresh = acquire(&s.b, "k1", &fp("hi")).await;
    let fresh2 = acquire(&s.b, "k2", &fp("hi")).await;
    // The stale owners can neither overwrite nor free the new claims.
    assert!(matches!(stale.complete(stream_response()).await, Err(IdempotencyError::ClaimLost)));
    assert!(matches!(stale_release.release().await, Err(IdempotencyError::ClaimLost)));
    assert!(matches!(claim(&s.a, "org-1", "k2", &fp("hi"), LEASE, TTL).await, Claim::InProgress { .. }));
    fresh.complete(json_response()).await.unwrap();
    assert_eq!(completed(&s.a, "k1", &fp("hi")).await, json_response());
    fresh2.release().await.unwrap();
}

async fn completed_record_expires_after_its_ttl(s: Stores) {
    let ttl = Duration::from_millis(300);
    match claim(&s.a, "org-1", "k1", &fp("hi"), LEASE, ttl).await {
        Claim::Acquired(guard) => guard.complete(json_response()).await.unwrap(),
        other => panic!("{other:?}"),
    }
    assert!(matches!(claim(&s.b, "org-1", "k1", &fp("hi"), LEASE, TTL).await, Claim::Completed(_)));
    tokio::time::sleep(ttl + Duration::from_millis(150)).await;
    // Expired: the key is new again, even with another body.
    acquire(&s.b, "k1", &fp("other")).await.release().await.unwrap();
}

async fn release_lets_the_client_retry(s: Stores) {
    let guard = acquire(&s.a, "k1", &fp("hi")).await;
    guard.release().await.unwrap();
    let retry = acquire(&s.b, "k1", &fp("hi")).await;
    retry.complete(json_response()).await.unwrap();
    assert_eq!(completed(&s.a, "k1", &fp("hi")).await, json_response());
}

async fn renew_extends_the_lease(s: Stores) {
    let lease = Duration::from_millis(400);
    let guard = match claim(&s.a, "org-1", "k1", &fp("hi"), lease, TTL).await {
        Claim::Acquired(guard) => guard,
        other => panic!("{other:?}"),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    guard.renew(Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // past the original lease
    match claim(&s.b, "org-1", "k1", &fp("hi"), lease, TTL).await {
        Claim::InProgress { lease_remaining, .. } => {
            assert!(lease_remaining > Duration::from_secs(3), "{lease_remaining:?}");
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
    guard.complete(json_response()).await.unwrap();
}

async fn keys_are_scoped_by_org(s: Stores) {
    let mut guards = Vec::new();
    // Same key in two orgs, and org/key pairs that would collide if simply joined with ':'.
    for (org, key) in [("org-1", "k"), ("org-2", "k"), ("a:b", "c"), ("a", "b:c")] {
        match claim(&s.a, org, key, &fp("hi"), LEASE, TTL).await {
            Claim::Acquired(guard) => guards.push(guard),
            other => panic!("{org}/{key}: {other:?}"),
        }
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
}

async fn fifty_concurrent_claims_one_winner(s: Stores) {
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = if i % 2 == 0 { s.a.clone() } else { s.b.clone() };
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.claim("org-1", "k1", &fp("hi"), LEASE, TTL).await.unwrap()
        }));
    }
    let (mut acquired, mut in_progress) = (Vec::new(), 0);
    for task in futures_util::future::join_all(tasks).await {
        match task.unwrap() {
            Claim::Acquired(guard) => acquired.push(guard),
            Claim::InProgress { .. } => in_progress += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((acquired.len(), in_progress), (1, 49));
    for guard in acquired {
        guard.complete(json_response()).await.unwrap();
    }
    assert_eq!(completed(&s.b, "k1", &fp("hi")).await, json_response());
}
