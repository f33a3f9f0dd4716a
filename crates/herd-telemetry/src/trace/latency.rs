//! A mergeable latency distribution for per-minute aggregates: sparse log buckets (each
//! 25 % wider than the last, from 50 µs), so a minute of one endpoint costs a few words,
//! two nodes' minutes add up exactly, and a quantile is off by at most one bucket's width.

use serde::{Deserialize, Serialize};

/// Lower edge of bucket 1; bucket 0 holds everything faster.
const FIRST_BOUND_NANOS: f64 = 50_000.0;
const GROWTH: f64 = 1.25;
/// Bucket 80's lower edge is 50 µs × 1.25^79 ≈ 2.2 hours: beyond any request.
const LAST_BUCKET: u16 = 80;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyDigest {
    /// (bucket, observations), sorted by bucket, no zero counts.
    pub buckets: Vec<(u16, u64)>,
    pub count: u64,
    pub sum_nanos: u64,
}

fn bucket_of(nanos: u64) -> u16 {
    if (nanos as f64) < FIRST_BOUND_NANOS {
        return 0;
    }
    let i = ((nanos as f64 / FIRST_BOUND_NANOS).ln() / GROWTH.ln()).floor() as u16 + 1;
    i.min(LAST_BUCKET)
}

/// Bucket `i` covers `[lower(i), lower(i + 1))` nanoseconds.
fn lower(i: u16) -> f64 {
    if i == 0 {
        0.0
    } else {
        FIRST_BOUND_NANOS * GROWTH.powi(i as i32 - 1)
    }
}

impl LatencyDigest {
    pub fn observe(&mut self, nanos: u64) {
        let b = bucket_of(nanos);
        match self.buckets.binary_search_by_key(&b, |e| e.0) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (b, 1)),
        }
        self.count += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
    }

    pub fn merge(&mut self, other: &LatencyDigest) {
        for &(b, n) in &other.buckets {
            match self.buckets.binary_search_by_key(&b, |e| e.0) {
                Ok(i) => self.buckets[i].1 += n,
                Err(i) => self.buckets.insert(i, (b, n)),
            }
        }
        self.count += other.count;
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }

    /// The `q` quantile in seconds (q in 0..=1), interpolated inside its bucket; None when
    /// empty.
    pub fn quantile_secs(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0);
        let mut seen = 0u64;
        for &(b, n) in &self.buckets {
            if (seen + n) as f64 >= rank {
                let within = (rank - seen as f64) / n as f64;
                let (lo, hi) = (lower(b), lower(b + 1));
                return Some((lo + (hi - lo) * within) / 1e9);
            }
            seen += n;
        }
        None
    }

    /// The non-empty buckets as (upper bound in seconds, observations), fastest first.
    pub fn buckets_secs(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .map(|&(b, n)| (lower(b + 1) / 1e9, n))
            .collect()
    }

    pub fn mean_secs(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_nanos as f64 / self.count as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_have_the_documented_edges() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(49_999), 0);
        assert_eq!(bucket_of(50_000), 1);
        assert_eq!(bucket_of(62_499), 1);
        assert_eq!(bucket_of(62_500), 2);
        assert_eq!(bucket_of(u64::MAX), LAST_BUCKET);
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket_and_merge_adds_exactly() {
        let mut fast = LatencyDigest::default();
        for _ in 0..99 {
            fast.observe(1_000_000); // 1 ms
        }
        let mut slow = LatencyDigest::default();
        slow.observe(500_000_000); // 500 ms
        fast.merge(&slow);
        assert_eq!(fast.count, 100);
        assert_eq!(fast.sum_nanos, 99_000_000 + 500_000_000);
        let p50 = fast.quantile_secs(0.5).unwrap();
        assert!((0.001 / 1.25..=0.001 * 1.25).contains(&p50), "{p50}");
        let p99 = fast.quantile_secs(0.99).unwrap();
        assert!((0.001 / 1.25..=0.001 * 1.25).contains(&p99), "{p99}");
        let max = fast.quantile_secs(1.0).unwrap();
        assert!((0.5 / 1.25..=0.5 * 1.25).contains(&max), "{max}");
        assert_eq!(LatencyDigest::default().quantile_secs(0.5), None);
    }
}
