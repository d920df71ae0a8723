//! Circuit breakers per deployment: a deployment that keeps failing is skipped, not waited on.
//!
//! # States
//!
//! - **Closed**: calls go through; each failure adds one to a count of consecutive failures, a
//!   success clears it. At [`CircuitPolicy::failures`] the circuit opens.
//! - **Open** until `cooldown` has passed: [`CircuitBreaker::gate`] answers [`Gate::Open`] and
//!   the router skips the deployment at once.
//! - **Half-open** once the cooldown is over: exactly one caller (across replicas, on Redis)
//!   gets [`Gate::Probe`]; everyone else still sees `Open` while the probe runs (at most
//!   [`CircuitPolicy::probe_timeout`]). The probe's success closes the circuit, its failure
//!   opens it for another cooldown.
//!
//! # Backends
//!
//! [`MemoryCircuitBreaker`] is one replica's view. [`RedisCircuitBreaker`] keeps the state in
//! one Redis hash per deployment, changed only by Lua scripts, so a circuit one replica opens
//! is skipped by all. To keep Redis off the path of healthy calls it caches what it read for
//! [`CircuitPolicy::sync`]: a circuit another replica opened is seen within that interval, and
//! a success costs a Redis call only when this replica knows of failures to clear.
//!
//! Time is the caller's wall clock in milliseconds since the Unix epoch (`now_ms`), as for the
//! rate limits; replicas are assumed to be on NTP.

pub(crate) mod memory;
pub(crate) mod redis;

use std::time::Duration;

use crate::BoxFuture;

/// The thresholds of every circuit.
#[derive(Debug, Clone)]
pub struct CircuitPolicy {
    /// Consecutive failures that open a circuit (at least 1).
    pub failures: u32,
    /// How long an open circuit is skipped before a probe may go.
    pub cooldown: Duration,
    /// How long a probe holds the half-open slot before another caller may probe.
    pub probe_timeout: Duration,
    /// Redis only: how long a read of the shared state is trusted.
    pub sync: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy {
            failures: 5,
            cooldown: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(60),
            sync: Duration::from_millis(250),
        }
    }
}

/// Whether a deployment may be called now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Healthy (or not known to fail): call it.
    Closed,
    /// The cooldown is over and this caller is the one probe: call it, and record the outcome.
    Probe,
    /// Skip it: open, or half-open with a probe in flight.
    Open,
}

/// The circuit state store; see the module docs.
pub trait CircuitBreaker: Send + Sync {
    /// Whether `id` may be called at `now_ms`.
    fn gate<'a>(
        &'a self,
        id: &'a str,
        now_ms: u64,
        policy: &'a CircuitPolicy,
    ) -> BoxFuture<'a, Result<Gate, crate::LimitError>>;

    /// The outcome of a call to `id` (a failure is one that should count against the
    /// deployment: a connect error, a timeout, a 429 or 5xx; never the client's own 4xx).
    fn record<'a>(
        &'a self,
        id: &'a str,
        ok: bool,
        now_ms: u64,
        policy: &'a CircuitPolicy,
    ) -> BoxFuture<'a, Result<(), crate::LimitError>>;
}

/// Circuits kept per process at most: ids come from config and from model names, and only
/// failing ones are kept, but a bound keeps memory flat whatever clients ask for.
pub(crate) const MAX_TRACKED: usize = 10_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
