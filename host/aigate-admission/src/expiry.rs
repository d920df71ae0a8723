//! A map whose entries carry a deadline, swept a few entries per call.
//!
//! Lookups treat an entry past its deadline as absent, so correctness never depends on the
//! sweep; the sweep only bounds memory. Each entry has one slot in a min-heap keyed by a
//! deadline that is never later than the entry's (lazily rescheduled if the entry was
//! extended), plus stale slots of removed entries, recognised by their generation. Every
//! call to [`ExpiryMap::sweep`] pops at most `budget` slots, so the work per call is bounded
//! and, as long as the budget exceeds the inserts per call, the heap keeps up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

struct Slot<V, D> {
    value: V,
    deadline: D,
    generation: u64,
}

pub(crate) struct ExpiryMap<K, V, D> {
    entries: HashMap<K, Slot<V, D>>,
    queue: BinaryHeap<Reverse<(D, u64, K)>>,
    next_generation: u64,
}

impl<K: Hash + Eq + Clone + Ord, V, D: Ord + Copy> ExpiryMap<K, V, D> {
    pub(crate) fn new() -> Self {
        Self { entries: HashMap::new(), queue: BinaryHeap::new(), next_generation: 0 }
    }

    /// The live entry under `key` and its deadline.
    pub(crate) fn get(&self, key: &K, now: D) -> Option<(&V, D)> {
        self.entries.get(key).filter(|slot| slot.deadline > now).map(|slot| (&slot.value, slot.deadline))
    }

    /// The entry under `key`, live or expired but not yet swept.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|slot| &slot.value)
    }

    /// Inserts or replaces the entry under `key`; returns the value it replaced, if any.
    pub(crate) fn insert(&mut self, key: K, value: V, deadline: D, now: D) -> Option<V> {
        match self.entries.get_mut(&key) {
            // A live slot extended to a later deadline keeps its heap entry; the sweep
            // reschedules it when the earlier deadline comes up.
            Some(slot) if slot.deadline > now && deadline >= slot.deadline => {
                slot.deadline = deadline;
                Some(std::mem::replace(&mut slot.value, value))
            }
            _ => {
                let generation = self.next_generation;
                self.next_generation += 1;
                self.queue.push(Reverse((deadline, generation, key.clone())));
                self.entries.insert(key, Slot { value, deadline, generation }).map(|slot| slot.value)
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|slot| slot.value)
    }

    /// Entries held, expired ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes up to `budget` entries whose deadline has passed.
    pub(crate) fn sweep(&mut self, now: D, budget: usize) {
        self.sweep_with(now, budget, |_| {});
    }

    /// [`ExpiryMap::sweep`], handing each removed value to `removed`.
    pub(crate) fn sweep_with(&mut self, now: D, budget: usize, mut removed: impl FnMut(V)) {
        for _ in 0..budget {
            let Some(Reverse((due, _, _))) = self.queue.peek() else {
                return;
            };
            if *due > now {
                return;
            }
            let Some(Reverse((_, generation, key))) = self.queue.pop() else {
                return;
            };
            let Some(slot) = self.entries.get(&key) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            if slot.deadline <= now {
                if let Some(slot) = self.entries.remove(&key) {
                    removed(slot.value);
                }
            } else {
                let deadline = slot.deadline;
                self.queue.push(Reverse((deadline, generation, key)));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::ExpiryMap;

    #[test]
    fn expired_entries_are_hidden_before_the_sweep() {
        let mut map = ExpiryMap::new();
        map.insert("a".to_owned(), 1, 10u64, 0);
        assert_eq!(map.get(&"a".to_owned(), 9).map(|(v, _)| *v), Some(1));
        assert!(map.get(&"a".to_owned(), 10).is_none());
    }

    #[test]
    fn sweep_is_bounded_per_call_and_keeps_up() {
        let mut map = ExpiryMap::new();
        for i in 0..100u64 {
            map.insert(i, (), i + 1, 0);
        }
        map.sweep(1_000, 8);
        assert_eq!(map.len(), 92);
        for _ in 0..20 {
            map.sweep(1_000, 8);
        }
        assert_eq!(map.len(), 0);
        assert_eq!(map.queued(), 0);
    }

    #[test]
    fn extended_entries_are_rescheduled_not_removed() {
        let mut map = ExpiryMap::new();
        map.insert("a", 1, 10u64, 0);
        map.insert("a", 2, 50, 5);
        map.sweep(20, 8);
        assert_eq!(map.get(&"a", 20).map(|(v, _)| *v), Some(2));
        assert_eq!(map.queued(), 1);
        map.sweep(50, 8);
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn removed_then_reinserted_keys_keep_one_live_slot() {
        let mut map = ExpiryMap::new();
        map.insert("a", 1, 10u64, 0);
        map.remove(&"a");
        map.insert("a", 2, 30, 1);
        map.sweep(15, 8); // pops the stale slot of the first entry only
        assert_eq!(map.get(&"a", 15).map(|(v, _)| *v), Some(2));
        map.sweep(30, 8);
        assert_eq!(map.len(), 0);
        assert_eq!(map.queued(), 0);
    }
}
