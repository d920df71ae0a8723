//! What the runtime counts per plugin name, across reloads: instances made and faults by kind.
//! Read by the host's metrics when they are rendered; the request path only bumps atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::PluginFault;

/// The fault kinds, in [`PluginFault::kind`]'s words.
const KINDS: [&str; 7] = ["trap", "cpu_timeout", "wall_timeout", "out_of_memory", "malformed", "busy", "instantiate"];

/// The counters of one plugin name.
#[derive(Debug, Default)]
pub(crate) struct PluginCounters {
    instantiations: AtomicU64,
    faults: [AtomicU64; KINDS.len()],
}

impl PluginCounters {
    pub(crate) fn instantiated(&self) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fault(&self, fault: &PluginFault) {
        if let Some(i) = KINDS.iter().position(|k| *k == fault.kind()) {
            self.faults[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every plugin name's counters (a name keeps its counters when a new version replaces it).
#[derive(Debug, Default)]
pub(crate) struct CounterBook {
    by_name: Mutex<BTreeMap<String, Arc<PluginCounters>>>,
}

impl CounterBook {
    pub(crate) fn of(&self, name: &str) -> Arc<PluginCounters> {
        let mut map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(name.to_owned()).or_default())
    }

    pub(crate) fn snapshot(&self) -> Vec<(String, PluginCounts)> {
        let map = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(name, c)| {
                let faults = KINDS
                    .iter()
                    .zip(&c.faults)
                    .map(|(kind, n)| (*kind, n.load(Ordering::Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                (name.clone(), PluginCounts { instantiations: c.instantiations.load(Ordering::Relaxed), faults })
            })
            .collect()
    }
}

/// One plugin name's counts since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginCounts {
    pub instantiations: u64,
    /// Faults by kind ([`PluginFault::kind`]), only kinds seen.
    pub faults: Vec<(&'static str, u64)>,
}

/// The runtime's and the registry's counts since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeCounts {
    /// By plugin name.
    pub per_plugin: Vec<(String, PluginCounts)>,
    /// Plugin files loaded (at start-up or on change) and files refused.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}
