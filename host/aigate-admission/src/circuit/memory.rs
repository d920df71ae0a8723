//! One replica's circuits: a map from deployment id to its state, under one mutex.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::{CircuitBreaker, CircuitPolicy, Gate, MAX_TRACKED, millis};
use crate::{BoxFuture, LimitError};

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    /// Set while open (and half-open): when the cooldown ends.
    open_until: Option<u64>,
    /// A probe is in flight until then.
    probe_until: Option<u64>,
}

/// The in-process [`CircuitBreaker`] (embedded default, and every replica without Redis).
#[derive(Debug, Default)]
pub struct MemoryCircuitBreaker {
    states: Mutex<HashMap<String, State>>,
}

impl MemoryCircuitBreaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The gate, decided synchronously (the Redis backend's cache uses the same rules).
    pub fn gate_now(&self, id: &str, now_ms: u64, policy: &CircuitPolicy) -> Gate {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = states.get_mut(id) else {
            return Gate::Closed;
        };
        match state.open_until {
            None => Gate::Closed,
            Some(until) if now_ms < until => Gate::Open,
            Some(_) => match state.probe_until {
                Some(probe) if now_ms < probe => Gate::Open,
                _ => {
                    state.probe_until = Some(now_ms.saturating_add(millis(policy.probe_timeout)));
                    Gate::Probe
                }
            },
        }
    }

    pub fn record_now(&self, id: &str, ok: bool, now_ms: u64, policy: &CircuitPolicy) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if ok {
            states.remove(id);
            return;
        }
        if !states.contains_key(id) && states.len() >= MAX_TRACKED {
            // Keep the open circuits; forget counts of closed ones.
            states.retain(|_, s| s.open_until.is_some());
            if states.len() >= MAX_TRACKED {
                return;
            }
        }
        let state = states.entry(id.to_owned()).or_default();
        state.failures = state.failures.saturating_add(1);
        // A failure while open or half-open (the probe, or a call that started before the
        // circuit opened) opens it for a full cooldown from now.
        if state.open_until.is_some() || state.failures >= policy.failures.max(1) {
            *state = State {
                failures: 0,
                open_until: Some(now_ms.saturating_add(millis(policy.cooldown))),
                probe_until: None,
            };
        }
    }
}

impl CircuitBreaker for MemoryCircuitBreaker {
    fn gate<'a>(
        &'a self,
        id: &'a str,
        now_ms: u64,
        policy: &'a CircuitPolicy,
    ) -> BoxFuture<'a, Result<Gate, LimitError>> {
        let gate = self.gate_now(id, now_ms, policy);
        Box::pin(async move { Ok(gate) })
    }

    fn record<'a>(
        &'a self,
        id: &'a str,
        ok: bool,
        now_ms: u64,
        policy: &'a CircuitPolicy,
    ) -> BoxFuture<'a, Result<(), LimitError>> {
        self.record_now(id, ok, now_ms, policy);
        Box::pin(async { Ok(()) })
    }
}
