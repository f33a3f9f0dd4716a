use crate::{Histogram, LATENCY_BUCKETS};

#[test]
fn bounds_are_inclusive_and_inf_catches_the_rest() {
    let h = Histogram::with_buckets(&[0.001, 0.01]);
    h.observe_nanos(1_000_000); // exactly 1ms -> le="0.001"
    h.observe_secs(0.001); // same, via f64
    h.observe_nanos(1_000_001);
    h.observe_secs(60.0);
    assert_eq!(
        h.cumulative(),
        vec![(0.001, 2), (0.01, 3), (f64::INFINITY, 4)]
    );
    assert_eq!(h.count(), 4);
    assert_eq!(h.sum_secs(), 60.003000001);
}

#[test]
fn odd_inputs_are_sanitised() {
    let h = Histogram::with_buckets(&[5.0, f64::NAN, 1.0, -1.0, 1.0, f64::INFINITY]);
    assert_eq!(h.bounds(), &[1.0, 5.0]);
    h.observe_secs(-3.0);
    h.observe_secs(f64::NAN);
    assert_eq!(h.cumulative()[0], (1.0, 2));
    assert_eq!(h.sum_secs(), 0.0);
    let empty = Histogram::with_buckets(&[]);
    empty.observe_nanos(u64::MAX);
    assert_eq!(empty.cumulative(), vec![(f64::INFINITY, 1)]);
}

#[test]
fn latency_has_default_buckets() {
    let h = Histogram::latency();
    assert_eq!(h.bounds(), &LATENCY_BUCKETS);
    assert_eq!(h.cumulative().len(), 15);
}

#[test]
fn quantiles_use_bucket_upper_bounds() {
    let h = Histogram::latency();
    assert_eq!(h.quantile_upper_bound(0.5), None);
    for _ in 0..90 {
        h.observe_secs(0.004);
    }
    for _ in 0..9 {
        h.observe_secs(0.2);
    }
    h.observe_secs(30.0);
    assert_eq!(h.quantile_upper_bound(0.0), Some(0.005));
    assert_eq!(h.quantile_upper_bound(0.5), Some(0.005));
    assert_eq!(h.quantile_upper_bound(0.9), Some(0.005));
    assert_eq!(h.quantile_upper_bound(0.95), Some(0.25));
    assert_eq!(h.quantile_upper_bound(0.99), Some(0.25));
    assert_eq!(h.quantile_upper_bound(1.0), Some(f64::INFINITY));
    assert_eq!(h.quantile_upper_bound(7.0), Some(f64::INFINITY));
    assert_eq!(h.quantile_upper_bound(f64::NAN), None);
}

#[test]
fn concurrent_observations_are_all_counted() {
    let h = Histogram::latency();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..1000u64 {
                    h.observe_nanos(i * 1000);
                }
            });
        }
    });
    assert_eq!(h.count(), 4000);
    assert_eq!(h.sum_secs(), 4.0 * 999.0 * 1000.0 * 1000.0 / 2.0 / 1e9);
}
