//! The circuit-breaker suite, run against every backend. Time is injected (`T0 + ms`). On
//! Redis the two replicas are two connections, each with its own read cache, as two gateway
//! processes would have.

use std::time::Duration;

use aigate_admission::{CircuitBreaker, CircuitPolicy, Gate};

use crate::{Replicas, backend_suite};

type Breakers = Replicas<dyn CircuitBreaker>;

backend_suite!(crate::memory_breakers, crate::redis_breakers;
    consecutive_failures_open_the_circuit,
    a_success_resets_the_count,
    one_probe_after_the_cooldown_and_its_success_closes,
    a_failed_probe_opens_for_another_cooldown,
    a_circuit_opened_by_one_replica_is_open_for_the_other,
    circuits_are_per_deployment,
);

const T0: u64 = 1_700_000_000_000;

fn policy() -> CircuitPolicy {
    CircuitPolicy {
        failures: 3,
        cooldown: Duration::from_millis(1_000),
        probe_timeout: Duration::from_millis(5_000),
        // Reads are trusted for 100 ms; the tests step past it where a replica must re-read.
        sync: Duration::from_millis(100),
    }
}

async fn gate(b: &std::sync::Arc<dyn CircuitBreaker>, id: &str, at: u64) -> Gate {
    b.gate(id, T0 + at, &policy()).await.unwrap()
}

async fn fail(b: &std::sync::Arc<dyn CircuitBreaker>, id: &str, at: u64) {
    b.record(id, false, T0 + at, &policy()).await.unwrap();
}

async fn succeed(b: &std::sync::Arc<dyn CircuitBreaker>, id: &str, at: u64) {
    b.record(id, true, T0 + at, &policy()).await.unwrap();
}

async fn consecutive_failures_open_the_circuit(r: Breakers) {
    for i in 0..2 {
        fail(&r.a, "d1", i).await;
        assert_eq!(gate(&r.a, "d1", i).await, Gate::Closed, "below the threshold");
    }
    fail(&r.a, "d1", 2).await;
    assert_eq!(gate(&r.a, "d1", 3).await, Gate::Open);
    assert_eq!(gate(&r.a, "d1", 999).await, Gate::Open, "for the whole cooldown");
}

async fn a_success_resets_the_count(r: Breakers) {
    fail(&r.a, "d1", 0).await;
    fail(&r.a, "d1", 1).await;
    succeed(&r.a, "d1", 2).await;
    fail(&r.a, "d1", 3).await;
    fail(&r.a, "d1", 4).await;
    assert_eq!(gate(&r.a, "d1", 5).await, Gate::Closed, "two failures since the success");
}

async fn one_probe_after_the_cooldown_and_its_success_closes(r: Breakers) {
    for i in 0..3 {
        fail(&r.a, "d1", i).await;
    }
    assert_eq!(gate(&r.a, "d1", 500).await, Gate::Open);
    assert_eq!(gate(&r.a, "d1", 1_100).await, Gate::Probe, "the cooldown is over: one probe");
    assert_eq!(gate(&r.a, "d1", 1_101).await, Gate::Open, "the probe is in flight");
    assert_eq!(gate(&r.b, "d1", 1_102).await, Gate::Open, "on every replica");
    succeed(&r.a, "d1", 1_200).await;
    assert_eq!(gate(&r.a, "d1", 1_201).await, Gate::Closed);
    assert_eq!(gate(&r.b, "d1", 1_400).await, Gate::Closed, "the other replica reads it closed");
}

async fn a_failed_probe_opens_for_another_cooldown(r: Breakers) {
    for i in 0..3 {
        fail(&r.a, "d1", i).await;
    }
    assert_eq!(gate(&r.a, "d1", 1_100).await, Gate::Probe);
    fail(&r.a, "d1", 1_150).await;
    assert_eq!(gate(&r.a, "d1", 2_000).await, Gate::Open, "open again from the probe's failure");
    assert_eq!(gate(&r.a, "d1", 2_200).await, Gate::Probe, "until 1 s after it");
}

async fn a_circuit_opened_by_one_replica_is_open_for_the_other(r: Breakers) {
    assert_eq!(gate(&r.b, "d1", 0).await, Gate::Closed, "b has read it closed");
    for i in 1..4 {
        fail(&r.a, "d1", i).await;
    }
    assert_eq!(gate(&r.b, "d1", 200).await, Gate::Open, "b sees it once its read is older than sync");
}

async fn circuits_are_per_deployment(r: Breakers) {
    for i in 0..3 {
        fail(&r.a, "d1", i).await;
    }
    assert_eq!(gate(&r.a, "d1", 10).await, Gate::Open);
    assert_eq!(gate(&r.a, "d2", 10).await, Gate::Closed);
}
