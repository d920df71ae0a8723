//! GCRA arithmetic, written once for the in-process backend and mirrored line by line by the
//! Lua in `redis.rs` (same operations in the same order on IEEE doubles, so both backends
//! agree to the last bit).
//!
//! State per bucket: `level` (units still "in the bucket": requests or tokens) and `at` (µs
//! since the Unix epoch when `level` was measured). The bucket drains at `limit` units per
//! [`PERIOD_US`]; a charge of `cost` is admitted when `level + min(cost, limit) <= limit`.
//! This is GCRA's leaky-bucket form: identical decisions to the virtual-scheduling form with
//! emission interval `T = PERIOD / limit` and tolerance `limit * T` (burst = limit), but a
//! burst of whole requests is exact in floating point (the level is a sum of small integers),
//! where a theoretical arrival time near 1.7e15 µs would round.

use std::time::Duration;

use super::WindowState;

/// The limit period in microseconds: all limits are per minute.
pub(crate) const PERIOD_US: f64 = 60_000_000.0;

/// Slack for rounding in the drain computation, in units.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) level: f64,
    pub(crate) at_us: u64,
}

impl Bucket {
    pub(crate) fn empty(now_us: u64) -> Self {
        Self { level: 0.0, at_us: now_us }
    }

    /// The bucket as seen at `now_us`. A `now` earlier than the last update (clock skew
    /// between replicas) drains nothing and never moves `at` backwards.
    pub(crate) fn drained(self, now_us: u64, limit: u32) -> Self {
        if now_us <= self.at_us {
            return self;
        }
        let elapsed = (now_us - self.at_us) as f64;
        let level = (self.level - elapsed * f64::from(limit) / PERIOD_US).max(0.0);
        Self { level, at_us: now_us }
    }

    /// When the bucket will be empty again (µs since the epoch): it can be forgotten then.
    pub(crate) fn empty_at_us(self, limit: u32) -> u64 {
        self.at_us.saturating_add(drain_us(self.level, limit))
    }
}

/// Whether `cost` fits into a (drained) bucket at `level`: `Ok(new level)` or
/// `Err(time until it would fit)`. A cost above the limit is admitted only into an empty
/// bucket, and then charged in full (see the module docs of `limits`).
pub(crate) fn check(level: f64, limit: u32, cost: u32) -> Result<f64, Duration> {
    if limit == 0 {
        return Err(Duration::from_micros(PERIOD_US as u64));
    }
    let admit = f64::from(cost.min(limit));
    let over = level + admit - f64::from(limit);
    if over <= EPSILON { Ok(level + f64::from(cost)) } else { Err(Duration::from_micros(drain_us(over, limit))) }
}

/// The header view of a bucket at `level`: remaining whole units and time until empty.
pub(crate) fn window(level: f64, limit: u32) -> WindowState {
    let remaining = (f64::from(limit) - level + EPSILON).floor().clamp(0.0, f64::from(limit));
    WindowState { limit, remaining: remaining as u32, reset: Duration::from_micros(drain_us(level, limit)) }
}

/// Microseconds to drain `units`, rounded up.
fn drain_us(units: f64, limit: u32) -> u64 {
    if limit == 0 || units <= 0.0 {
        return 0;
    }
    // `as` saturates for out-of-range floats.
    (units * PERIOD_US / f64::from(limit)).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_exactly_the_limit_fits() {
        let mut level = 0.0;
        for _ in 0..7 {
            level = check(level, 7, 1).unwrap();
        }
        assert_eq!(level, 7.0);
        // 60 s / 7 per unit
        assert_eq!(check(level, 7, 1), Err(Duration::from_micros(8_571_429)));
    }

    #[test]
    fn draining_restores_capacity_at_the_rate() {
        let full = Bucket { level: 60.0, at_us: 1_000_000 };
        let later = full.drained(1_000_000 + 1_500_000, 60);
        assert!((later.level - 58.5).abs() < 1e-9);
        assert_eq!(window(later.level, 60).remaining, 1);
        assert_eq!(window(later.level, 60).reset, Duration::from_micros(58_500_000));
        assert_eq!(full.drained(0, 60), full, "time never runs backwards");
        assert_eq!(full.drained(u64::MAX, 60).level, 0.0);
    }

    #[test]
    fn oversized_costs_need_an_empty_bucket_and_are_charged_in_full() {
        assert_eq!(check(0.0, 1000, 5000), Ok(5000.0));
        assert!(check(0.5, 1000, 5000).is_err());
        // Over-full: even a free request waits until the level is back at the limit.
        assert_eq!(check(5000.0, 1000, 0), Err(Duration::from_secs(240)));
    }

    #[test]
    fn zero_limit_denies_for_a_period() {
        assert_eq!(check(0.0, 0, 0), Err(Duration::from_secs(60)));
        assert_eq!(window(0.0, 0).remaining, 0);
    }
}
