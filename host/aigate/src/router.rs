//! The attempt loop: which deployment next, how long to back off, when to give up.
//!
//! A request's [`Plan`] is tiers of candidates (`routing.rs`). The loop walks the tiers in
//! order. Within a tier it picks among the candidates not yet tried in this round whose
//! circuit lets them through ([`Health::gate`]): by weight, or the faster of two random picks
//! by a decaying latency average. After a failure ([`ApiError::recovery`]):
//!
//! - `Final` (the request's own fault, a content filter): the error is the answer;
//! - `Elsewhere` (a refused key, a plugin fault): the next candidate, never this one again;
//! - `Transient` (connect error, timeout, 429, 5xx): the next candidate at once; when the
//!   tier is exhausted, another round after a backoff (exponential with full jitter, at least
//!   the provider's `Retry-After` up to `routing.retry_after_max_ms`), up to the tier's
//!   `retries`; then the next tier.
//!
//! Nothing waits past the request's one deadline: a backoff that would end after it is not
//! taken, and each attempt's upstream timeouts end at it. At most `routing.max_attempts`
//! provider calls are made in all. Every failure that counts against a deployment is
//! recorded by its circuit; every success records its latency.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aigate_admission::{CircuitBreaker, CircuitPolicy, Gate};
use tokio::time::Instant;

use crate::config::{RoutingConfig, Strategy};
use crate::error::{ApiError, Recovery};
use crate::routing::{Candidate, Plan, Tier};

/// What an attempt that failed hands back to the loop.
pub trait AttemptFailure {
    fn error(&self) -> &ApiError;
    /// Closes the attempt (meters it); `retried` says whether another attempt follows.
    fn close(self, retried: bool) -> ApiError;
}

/// Who answered, for the response headers.
#[derive(Debug, Clone)]
pub struct Served {
    pub candidate: Candidate,
    /// Provider calls made, this one included.
    pub attempts: u32,
    /// Whether a later tier than the first answered (a fallback model).
    pub fallback: bool,
}

/// The health of deployments as this replica sees it: circuits (shared through Redis when
/// set) and latency averages (local).
pub struct Health {
    breaker: Arc<dyn CircuitBreaker>,
    policy: CircuitPolicy,
    /// Decaying average latency per deployment, in microseconds.
    latency: Mutex<HashMap<Arc<str>, u64>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// Deployments whose latency is kept at most (ids come from config and model names).
const MAX_LATENCIES: usize = 10_000;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Health {
    pub fn new(breaker: Arc<dyn CircuitBreaker>, config: &RoutingConfig) -> Self {
        let policy = CircuitPolicy {
            failures: config.circuit_failures,
            cooldown: config.circuit_cooldown,
            probe_timeout: config.circuit_cooldown.max(Duration::from_secs(10)),
            sync: config.circuit_sync,
        };
        Health { breaker, policy, latency: Mutex::new(HashMap::new()) }
    }

    /// Whether `id` may be called now. A circuit store that cannot answer (Redis down) lets
    /// the call through: health checks must not turn an outage of Redis into one of the
    /// gateway.
    pub async fn gate(&self, id: &str) -> Gate {
        match self.breaker.gate(id, now_ms(), &self.policy).await {
            Ok(gate) => gate,
            Err(e) => {
                tracing::warn!(deployment = id, "circuit state unavailable, calling anyway: {e}");
                Gate::Closed
            }
        }
    }

    pub async fn record(&self, id: &Arc<str>, ok: bool, latency: Option<Duration>) {
        if let Err(e) = self.breaker.record(id, ok, now_ms(), &self.policy).await {
            tracing::warn!(deployment = %id, "circuit state not recorded: {e}");
        }
        if let Some(latency) = latency {
            let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            let mut map = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
            if !map.contains_key(id) && map.len() >= MAX_LATENCIES {
                map.clear();
            }
            // Decay 1/4 per sample: a deployment that turns slow loses its traffic within a few calls.
            map.entry(id.clone()).and_modify(|avg| *avg = (*avg * 3 + sample) / 4).or_insert(sample);
        }
    }

    /// The decaying average latency of `id`; `None` before its first success.
    pub fn latency(&self, id: &str) -> Option<u64> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner).get(id).copied()
    }
}

/// Picks one of `eligible` (indexes into `tier.candidates`, not empty).
pub fn pick(tier: &Tier, eligible: &[usize], health: &Health) -> usize {
    let weighted = |choices: &[usize]| -> usize {
        let total: u64 = choices.iter().map(|&i| u64::from(tier.candidates[i].weight)).sum();
        let mut point = fastrand::u64(0..total.max(1));
        for &i in choices {
            let w = u64::from(tier.candidates[i].weight);
            if point < w {
                return i;
            }
            point -= w;
        }
        choices[choices.len() - 1]
    };
    match (tier.strategy, eligible.len()) {
        (_, 1) => eligible[0],
        (Strategy::Weighted, _) => weighted(eligible),
        (Strategy::LeastLatency, n) => {
            // Power of two choices: two distinct random candidates, the faster one. One never
            // measured counts as fastest, so every deployment gets measured.
            let a = fastrand::usize(0..n);
            let mut b = fastrand::usize(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (eligible[a], eligible[b]);
            let la = health.latency(&tier.candidates[a].id).unwrap_or(0);
            let lb = health.latency(&tier.candidates[b].id).unwrap_or(0);
            if la <= lb { a } else { b }
        }
    }
}

/// The wait before retry round `round` (0-based): full jitter over `base × 2^round` capped at
/// `backoff_max`, but at least the provider's `Retry-After`. `None` when the provider asks for
/// longer than `retry_after_max`: fall back instead of waiting.
pub fn backoff(round: u32, config: &RoutingConfig, retry_after: Option<Duration>) -> Option<Duration> {
    let ceiling = config.backoff_base.saturating_mul(1u32 << round.min(16)).min(config.backoff_max);
    let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    let jitter = Duration::from_micros(fastrand::u64(0..=ceiling_us));
    match retry_after {
        Some(after) if after > config.retry_after_max => None,
        Some(after) => Some(after.max(jitter)),
        None => Some(jitter),
    }
}

/// Runs `attempt` over the plan until one succeeds, a failure is final, or the plan, the
/// attempt budget or the deadline is spent. See the module docs.
pub async fn run<T, F, Fut, E>(
    plan: &Plan,
    health: &Health,
    config: &RoutingConfig,
    deadline: Instant,
    mut attempt: F,
) -> Result<(T, Served), ApiError>
where
    F: FnMut(Candidate, u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AttemptFailure,
{
    let mut made = 0u32;
    // The last failure, closed (metered) only once it is known whether another attempt follows.
    let mut pending: Option<E> = None;
    let mut last: Option<ApiError> = None;
    for (tier_index, tier) in plan.tiers.iter().enumerate() {
        let mut excluded = vec![false; tier.candidates.len()];
        let mut round = 0u32;
        loop {
            let mut tried = excluded.clone();
            let mut retry_after: Option<Duration> = None;
            let mut transient = false;
            loop {
                let mut eligible: Vec<usize> = (0..tier.candidates.len()).filter(|&i| !tried[i]).collect();
                let mut chosen = None;
                while !eligible.is_empty() {
                    let i = pick(tier, &eligible, health);
                    match health.gate(&tier.candidates[i].id).await {
                        Gate::Open => {
                            tried[i] = true;
                            eligible.retain(|&e| e != i);
                            if pending.is_none() {
                                last.get_or_insert_with(|| circuit_open(&tier.candidates[i]));
                            }
                        }
                        Gate::Closed | Gate::Probe => {
                            chosen = Some(i);
                            break;
                        }
                    }
                }
                let Some(i) = chosen else { break };
                tried[i] = true;
                if made >= config.max_attempts || Instant::now() >= deadline {
                    return Err(give_up(pending, last, made));
                }
                if let Some(failure) = pending.take() {
                    last = Some(failure.close(true));
                }
                made += 1;
                let candidate = &tier.candidates[i];
                let started = Instant::now();
                match attempt(candidate.clone(), made).await {
                    Ok(answer) => {
                        health.record(&candidate.id, true, Some(started.elapsed())).await;
                        let served = Served { candidate: candidate.clone(), attempts: made, fallback: tier_index > 0 };
                        return Ok((answer, served));
                    }
                    Err(failure) => {
                        let err = failure.error();
                        if err.counts_against_deployment() {
                            health.record(&candidate.id, false, None).await;
                        }
                        match err.recovery() {
                            Recovery::Final => return Err(failure.close(false)),
                            Recovery::Elsewhere => excluded[i] = true,
                            Recovery::Transient => {
                                transient = true;
                                retry_after = retry_after.max(err.retry_after);
                            }
                        }
                        tracing::info!(
                            deployment = %candidate.id, attempt = made, code = ?err.code,
                            "attempt failed: {}", err.message
                        );
                        pending = Some(failure);
                    }
                }
            }
            // The tier is spent for this round: another round only after transient failures.
            if !transient || round >= tier.retries || excluded.iter().all(|&e| e) {
                break;
            }
            let Some(wait) = backoff(round, config, retry_after) else { break };
            if Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            round += 1;
        }
    }
    Err(give_up(pending, last, made))
}

/// The error of a request no attempt could serve: the last failure's (metered as final).
fn give_up<E: AttemptFailure>(pending: Option<E>, last: Option<ApiError>, attempts: u32) -> ApiError {
    match pending {
        Some(failure) => failure.close(false),
        None => last.unwrap_or_else(|| ApiError::upstream_deadline(attempts)),
    }
}

fn circuit_open(candidate: &Candidate) -> ApiError {
    ApiError::provider_unavailable(format!(
        "Provider `{}` is failing (its circuit is open) and no other deployment could serve the call. Try again later.",
        candidate.route.provider
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap_and_honours_retry_after() {
        let config = RoutingConfig::default();
        for round in 0..6 {
            let cap = config.backoff_base.saturating_mul(1 << round).min(config.backoff_max);
            for _ in 0..200 {
                let wait = backoff(round, &config, None).unwrap();
                assert!(wait <= cap, "round {round}: {wait:?} > {cap:?}");
            }
        }
        let after = Duration::from_secs(2);
        assert!(backoff(0, &config, Some(after)).unwrap() >= after, "never sooner than the provider asked");
        assert_eq!(backoff(0, &config, Some(config.retry_after_max + Duration::from_secs(1))), None);
    }
}
