//! The rate-limiter suite, run against every backend. Time is injected (`at(ms)`), except in
//! the burst test, which uses the wall clock as two replicas would.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aigate_admission::{
    Admission, LimitHit, LimitKey, LimitKind, RateLimiter, RateSnapshot, Reservation, Scope, WindowState,
};

use crate::{Replicas, backend_suite};

type Limiters = Replicas<dyn RateLimiter>;

backend_suite!(crate::memory_limiters, crate::redis_limiters;
    rpm_admits_exactly_the_limit_then_denies,
    rpm_refills_at_the_limit_rate,
    retry_after_is_exact,
    tpm_reserve_then_settle_down,
    tpm_settle_up_charges_the_extra,
    dropped_reservation_keeps_the_estimate,
    estimate_above_the_limit_waits_for_an_empty_bucket,
    multiple_keys_are_all_or_nothing,
    snapshot_reports_the_tightest_limits,
    no_limits_means_no_state,
    zero_limit_denies,
    concurrent_settles_add_up,
    burst_of_200_over_two_replicas_admits_at_most_the_bound,
);

/// A fixed instant plus `ms` milliseconds.
fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

async fn grant(limiter: &Arc<dyn RateLimiter>, keys: &[LimitKey], tokens: u32, now: SystemTime) -> Reservation {
    match limiter.acquire(keys, tokens, now).await.unwrap() {
        Admission::Granted(reservation) => reservation,
        Admission::Denied { which, retry_after, .. } => {
            panic!("denied by {which:?}, retry after {retry_after:?}")
        }
    }
}

async fn deny(
    limiter: &Arc<dyn RateLimiter>,
    keys: &[LimitKey],
    tokens: u32,
    now: SystemTime,
) -> (Duration, LimitHit, RateSnapshot) {
    match limiter.acquire(keys, tokens, now).await.unwrap() {
        Admission::Denied { retry_after, which, snapshot } => (retry_after, which, snapshot),
        Admission::Granted(reservation) => panic!("granted: {reservation:?}"),
    }
}

fn requests(reservation: &Reservation) -> WindowState {
    reservation.snapshot().requests.unwrap()
}

fn tokens(reservation: &Reservation) -> WindowState {
    reservation.snapshot().tokens.unwrap()
}

fn assert_close(actual: Duration, expected: Duration) {
    let diff = actual.abs_diff(expected);
    assert!(diff <= Duration::from_micros(2), "{actual:?} != {expected:?}");
}

async fn rpm_admits_exactly_the_limit_then_denies(r: Limiters) {
    let keys = [LimitKey::key("k1", Some(10), None)];
    for i in 0..10 {
        let limiter = if i % 2 == 0 { &r.a } else { &r.b };
        let reservation = grant(limiter, &keys, 0, at(0)).await;
        let window = requests(&reservation);
        assert_eq!((window.limit, window.remaining), (10, 9 - i), "request {i}");
        assert_close(window.reset, Duration::from_secs(6 * (u64::from(i) + 1)));
        assert!(reservation.snapshot().tokens.is_none());
    }
    for limiter in [&r.a, &r.b] {
        let (retry_after, which, snapshot) = deny(limiter, &keys, 0, at(0)).await;
        // One request's worth of drain at 10/min.
        assert_close(retry_after, Duration::from_secs(6));
        assert_eq!(which, LimitHit { scope: Scope::Key, id: "k1".into(), kind: LimitKind::Requests, limit: 10 });
        let window = snapshot.requests.unwrap();
        assert_eq!((window.limit, window.remaining), (10, 0));
        assert_close(window.reset, Duration::from_secs(60));
    }
}

async fn rpm_refills_at_the_limit_rate(r: Limiters) {
    let keys = [LimitKey::key("k1", Some(10), None)];
    for _ in 0..10 {
        drop(grant(&r.a, &keys, 0, at(0)).await);
    }
    deny(&r.b, &keys, 0, at(5_999)).await;
    drop(grant(&r.b, &keys, 0, at(6_000)).await);
    deny(&r.a, &keys, 0, at(6_000)).await;
    // A full minute after the last charge the whole burst is available again, and no more.
    for _ in 0..10 {
        drop(grant(&r.a, &keys, 0, at(66_000)).await);
    }
    deny(&r.b, &keys, 0, at(66_000)).await;
}

async fn retry_after_is_exact(r: Limiters) {
    let keys = [LimitKey::org("o1", Some(7), None)];
    for _ in 0..7 {
        drop(grant(&r.a, &keys, 0, at(0)).await);
    }
    let (retry_after, which, _) = deny(&r.a, &keys, 0, at(0)).await;
    assert_eq!(which.scope, Scope::Org);
    assert_close(retry_after, Duration::from_micros(8_571_429)); // 60 s / 7
    let base = at(0);
    deny(&r.b, &keys, 0, base + retry_after - Duration::from_millis(1)).await;
    drop(grant(&r.b, &keys, 0, base + retry_after).await);
}

async fn tpm_reserve_then_settle_down(r: Limiters) {
    let keys = [LimitKey::key("k1", None, Some(1000))];
    let first = grant(&r.a, &keys, 800, at(0)).await;
    assert_eq!(tokens(&first).remaining, 200);
    assert!(first.snapshot().requests.is_none());
    let (retry_after, which, snapshot) = deny(&r.b, &keys, 300, at(0)).await;
    assert_eq!(which.kind, LimitKind::Tokens);
    assert_close(retry_after, Duration::from_secs(6)); // 100 tokens at 1000/min
    assert_eq!(snapshot.tokens.unwrap().remaining, 200);
    // The call used 100 tokens, not 800: 700 come back.
    first.settle(100, at(0)).await.unwrap();
    let second = grant(&r.b, &keys, 300, at(0)).await;
    assert_eq!(tokens(&second).remaining, 600);
    second.settle(300, at(0)).await.unwrap();
}

async fn tpm_settle_up_charges_the_extra(r: Limiters) {
    let keys = [LimitKey::key("k1", None, Some(1000))];
    let first = grant(&r.a, &keys, 100, at(0)).await;
    first.settle(900, at(0)).await.unwrap();
    deny(&r.b, &keys, 200, at(0)).await;
    let second = grant(&r.b, &keys, 100, at(0)).await;
    assert_eq!(tokens(&second).remaining, 0);
    // Using more than the whole limit over-fills the bucket: later calls wait for the drain.
    second.settle(1100, at(0)).await.unwrap();
    let (retry_after, _, snapshot) = deny(&r.a, &keys, 0, at(0)).await;
    assert_close(retry_after, Duration::from_secs(60));
    assert_eq!(snapshot.tokens.unwrap().remaining, 0);
    drop(grant(&r.a, &keys, 0, at(60_000)).await);
}

async fn dropped_reservation_keeps_the_estimate(r: Limiters) {
    let keys = [LimitKey::key("k1", None, Some(1000))];
    drop(grant(&r.a, &keys, 800, at(0)).await);
    deny(&r.b, &keys, 300, at(0)).await;
    drop(grant(&r.b, &keys, 200, at(0)).await);
}

async fn estimate_above_the_limit_waits_for_an_empty_bucket(r: Limiters) {
    let keys = [LimitKey::key("k1", None, Some(1000))];
    drop(grant(&r.a, &keys, 100, at(0)).await);
    let (retry_after, ..) = deny(&r.a, &keys, 5000, at(0)).await;
    assert_close(retry_after, Duration::from_secs(6)); // until the 100 have drained
    let big = grant(&r.b, &keys, 5000, at(6_000)).await;
    assert_eq!(tokens(&big).remaining, 0);
    // 4000 tokens over the limit: four minutes of drain before anything fits.
    let (retry_after, ..) = deny(&r.a, &keys, 0, at(6_000)).await;
    assert_close(retry_after, Duration::from_secs(240));
    big.settle(500, at(6_000)).await.unwrap();
    let after = grant(&r.a, &keys, 500, at(6_000)).await;
    assert_eq!(tokens(&after).remaining, 0);
    drop(after);
}

async fn multiple_keys_are_all_or_nothing(r: Limiters) {
    let key_a = LimitKey::key("a", Some(10), None);
    let org = LimitKey::org("o", Some(3), None);
    let both = [key_a.clone(), org.clone()];
    for _ in 0..3 {
        drop(grant(&r.a, &both, 0, at(0)).await);
    }
    let (_, which, _) = deny(&r.b, &both, 0, at(0)).await;
    assert_eq!((which.scope, which.id.as_str()), (Scope::Org, "o"));
    // The denied call charged neither the org nor the key.
    let only_key = grant(&r.b, std::slice::from_ref(&key_a), 0, at(0)).await;
    assert_eq!(requests(&only_key).remaining, 6);
    drop(only_key);

    // A token limit on the key denies; the org's request limit must not be charged either.
    let key_b = LimitKey::key("b", None, Some(100));
    let org_b = LimitKey::org("ob", Some(5), None);
    let pair = [key_b, org_b.clone()];
    grant(&r.a, &pair, 80, at(0)).await.settle(80, at(0)).await.unwrap();
    let (_, which, _) = deny(&r.a, &pair, 30, at(0)).await;
    assert_eq!((which.scope, which.kind), (Scope::Key, LimitKind::Tokens));
    let org_only = grant(&r.b, &[org_b], 30, at(0)).await;
    assert_eq!(requests(&org_only).remaining, 3);
    drop(org_only);
}

async fn snapshot_reports_the_tightest_limits(r: Limiters) {
    let keys = [LimitKey::key("k", Some(100), Some(1000)), LimitKey::org("o", Some(5), Some(100_000))];
    let reservation = grant(&r.a, &keys, 10, at(0)).await;
    let snapshot = *reservation.snapshot();
    assert_eq!((snapshot.requests.unwrap().limit, snapshot.requests.unwrap().remaining), (5, 4));
    assert_eq!((snapshot.tokens.unwrap().limit, snapshot.tokens.unwrap().remaining), (1000, 990));
    assert_eq!(
        snapshot.headers(),
        vec![
            ("x-ratelimit-limit-requests", "5".to_owned()),
            ("x-ratelimit-remaining-requests", "4".to_owned()),
            ("x-ratelimit-reset-requests", "12s".to_owned()),
            ("x-ratelimit-limit-tokens", "1000".to_owned()),
            ("x-ratelimit-remaining-tokens", "990".to_owned()),
            ("x-ratelimit-reset-tokens", "600ms".to_owned()),
        ]
    );
    reservation.settle(10, at(0)).await.unwrap();
}

async fn no_limits_means_no_state(r: Limiters) {
    for keys in [vec![], vec![LimitKey::key("k", None, None), LimitKey::org("o", None, None)]] {
        for _ in 0..3 {
            let reservation = grant(&r.a, &keys, 1_000_000, at(0)).await;
            assert_eq!(*reservation.snapshot(), RateSnapshot::default());
            assert!(reservation.snapshot().headers().is_empty());
            reservation.settle(5, at(0)).await.unwrap();
        }
    }
}

async fn zero_limit_denies(r: Limiters) {
    let keys = [LimitKey::key("k", Some(0), None)];
    let (retry_after, which, snapshot) = deny(&r.a, &keys, 0, at(0)).await;
    assert_eq!(retry_after, Duration::from_secs(60));
    assert_eq!(which.limit, 0);
    assert_eq!(snapshot.requests.unwrap().remaining, 0);
    let tokens_zero = [LimitKey::key("k2", None, Some(0))];
    deny(&r.b, &tokens_zero, 0, at(0)).await;
}

async fn concurrent_settles_add_up(r: Limiters) {
    let keys = Arc::new([LimitKey::key("k", None, Some(10_000)), LimitKey::org("o", None, Some(20_000))]);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let limiter = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let reservation = grant(&limiter, &keys[..], 50, at(0)).await;
            reservation.settle(20, at(0)).await.unwrap();
        }));
    }
    for task in futures_util::future::join_all(tasks).await {
        task.unwrap();
    }
    // 100 × 20 tokens charged after the settles, on both buckets.
    let probe = grant(&r.a, &keys[..], 0, at(0)).await;
    assert_eq!(tokens(&probe).remaining, 8_000);
    drop(probe);
    let org = grant(&r.b, &keys[1..], 0, at(0)).await;
    assert_eq!(tokens(&org).remaining, 18_000);
    drop(org);
}

async fn burst_of_200_over_two_replicas_admits_at_most_the_bound(r: Limiters) {
    let keys = Arc::new([LimitKey::key("k", Some(60), None), LimitKey::org("o", None, None)]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let limiter = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move { limiter.acquire(&keys[..], 0, SystemTime::now()).await.unwrap() }));
    }
    let mut granted = 0u64;
    for task in futures_util::future::join_all(tasks).await {
        match task.unwrap() {
            Admission::Granted(reservation) => {
                granted += 1;
                drop(reservation);
            }
            Admission::Denied { retry_after, snapshot, .. } => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
                assert_eq!(snapshot.requests.unwrap().remaining, 0);
            }
        }
    }
    let elapsed = started.elapsed();
    // The documented bound: limit + what drains while the burst lasts (1 per second here).
    let bound = 60 + elapsed.as_secs();
    eprintln!("burst: {granted} of 200 admitted in {elapsed:?} (bound {bound})");
    assert!(granted >= 60, "{granted} admitted: the first 60 must fit");
    assert!(granted <= bound, "{granted} admitted, bound {bound}");
}
