//! The console-session suite, run against every backend: a session opened through one
//! replica is seen, and ended, through the other.

use std::sync::Arc;
use std::time::Duration;

use aigate_admission::{MemorySessionStore, SessionStore};

use crate::{Replicas, backend_suite};

type Sessions = Replicas<dyn SessionStore>;

backend_suite!(crate::memory_sessions, crate::redis_sessions;
    a_session_is_seen_by_every_replica_with_its_csrf_and_time_left,
    a_session_ends_when_removed_through_either_replica,
    a_session_ends_with_its_lifetime,
    unknown_sessions_are_none,
);

const HOUR: Duration = Duration::from_secs(3600);

async fn a_session_is_seen_by_every_replica_with_its_csrf_and_time_left(s: Sessions) {
    s.a.put("digest-1", "csrf-1", HOUR).await.unwrap();
    for replica in [&s.a, &s.b] {
        let found = replica.get("digest-1").await.unwrap().expect("the session");
        assert_eq!(found.csrf, "csrf-1");
        assert!(found.expires_in > HOUR - Duration::from_secs(60) && found.expires_in <= HOUR, "{found:?}");
    }
}

async fn a_session_ends_when_removed_through_either_replica(s: Sessions) {
    s.a.put("digest-2", "csrf-2", HOUR).await.unwrap();
    s.a.put("digest-3", "csrf-3", HOUR).await.unwrap();
    s.b.remove("digest-2").await.unwrap();
    assert_eq!(s.a.get("digest-2").await.unwrap(), None);
    assert_eq!(s.a.get("digest-3").await.unwrap().unwrap().csrf, "csrf-3", "only that one");
    s.b.remove("digest-2").await.unwrap(); // twice: nothing happens
}

async fn a_session_ends_with_its_lifetime(s: Sessions) {
    s.a.put("digest-4", "csrf-4", Duration::from_millis(50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.b.get("digest-4").await.unwrap(), None);
}

async fn unknown_sessions_are_none(s: Sessions) {
    assert_eq!(s.b.get("never-opened").await.unwrap(), None);
}

#[tokio::test]
async fn the_memory_store_keeps_at_most_its_bound_ending_the_closest_to_their_end() {
    let store = Arc::new(MemorySessionStore::new(3));
    for (i, ttl) in [10, 50, 40, 30, 20].into_iter().enumerate() {
        store.put(&format!("d{i}"), "c", Duration::from_secs(ttl)).await.unwrap();
    }
    assert_eq!(store.len(), 3);
    // A put into a full store first ends the kept session closest to its end: d3 ended d0
    // (10 s left), then d4 ended d3 (30 s left, less than d1's and d2's).
    let kept: Vec<bool> = kept(&store, 5).await;
    assert_eq!(kept, [false, true, true, false, true], "d0 then d3 ended");
}

async fn kept(store: &MemorySessionStore, n: usize) -> Vec<bool> {
    let mut kept = Vec::new();
    for i in 0..n {
        kept.push(store.get(&format!("d{i}")).await.unwrap().is_some());
    }
    kept
}
