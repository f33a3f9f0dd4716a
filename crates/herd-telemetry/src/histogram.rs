//! Fixed-bucket latency histogram made of atomics only.

use std::sync::atomic::{AtomicU64, Ordering};

/// Default latency bucket upper bounds, in seconds (`+Inf` is implicit).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Fixed-bucket latency histogram in seconds. `observe_*` is lock-free and
/// allocation-free: one binary search over integer nanosecond bounds and two
/// relaxed `fetch_add`s.
///
/// Per-bucket counts are stored non-cumulatively; the total count is derived
/// from them, so the `+Inf` bucket always equals `count()` in a snapshot.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds, as given (for rendering).
    bounds: Box<[f64]>,
    /// The same bounds in integer nanoseconds (for comparison).
    bounds_nanos: Box<[u64]>,
    /// One slot per bound plus a final `+Inf` slot.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Histogram {
        Histogram::with_buckets(&LATENCY_BUCKETS)
    }

    /// Histogram with the given upper bounds in seconds. Bounds are sorted and
    /// deduplicated; NaN, negative and infinite bounds are dropped (`+Inf` is
    /// always implicit).
    pub fn with_buckets(upper_bounds: &[f64]) -> Histogram {
        let mut bounds: Vec<f64> = upper_bounds
            .iter()
            .copied()
            .filter(|b| b.is_finite() && *b >= 0.0)
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup_by_key(|b| secs_to_nanos(*b));
        let bounds_nanos = bounds.iter().map(|b| secs_to_nanos(*b)).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds: bounds.into_boxed_slice(),
            bounds_nanos,
            counts,
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation. A value equal to a bound falls in that bucket
    /// (`le` is inclusive).
    pub fn observe_nanos(&self, nanos: u64) {
        let idx = self.bounds_nanos.partition_point(|&b| b < nanos);
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records one observation in seconds; negative or NaN values count as 0.
    pub fn observe_secs(&self, secs: f64) {
        self.observe_nanos(secs_to_nanos(secs));
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of all observations, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Upper bounds in seconds, without the implicit `+Inf`.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Cumulative counts per bucket; the last entry is `(+Inf, count)`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0u64;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter())
            .map(|(le, c)| {
                acc += c.load(Ordering::Relaxed);
                (le, acc)
            })
            .collect()
    }

    /// Approximate quantile `q` in `0..=1` (clamped): the upper bound of the
    /// bucket containing the rank-`ceil(q * count)` observation, possibly
    /// `f64::INFINITY`. `None` when empty or `q` is NaN. Meant for `/status`.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        if q.is_nan() {
            return None;
        }
        let buckets = self.cumulative();
        let total = buckets.last().map_or(0, |b| b.1);
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        buckets.iter().find(|b| b.1 >= rank).map(|b| b.0)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::latency()
    }
}

/// Seconds to nanoseconds, rounded; NaN and negatives become 0, huge values
/// saturate at `u64::MAX`.
fn secs_to_nanos(secs: f64) -> u64 {
    if secs > 0.0 {
        (secs * 1e9).round() as u64
    } else {
        0
    }
}
