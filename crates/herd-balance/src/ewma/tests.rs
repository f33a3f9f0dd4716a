use super::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn close(actual: u64, expected: f64, rel: f64) -> bool {
    (actual as f64 - expected).abs() <= expected * rel
}

#[test]
fn no_sample_reads_zero() {
    let e = PeakEwma::new();
    assert_eq!(e.estimate_nanos(0), 0);
    assert_eq!(e.estimate_nanos(100 * S), 0);
}

#[test]
fn first_sample_is_taken_as_is() {
    let e = PeakEwma::new();
    e.observe(50 * MS, 5 * S);
    assert_eq!(e.estimate_nanos(5 * S), 50 * MS);
}

#[test]
fn resolution_is_one_microsecond_and_never_zero() {
    let e = PeakEwma::new();
    e.observe(1_499, 0);
    assert_eq!(e.estimate_nanos(0), 1_000);
    let e = PeakEwma::new();
    e.observe(0, 0);
    assert_eq!(e.estimate_nanos(0), 1_000);
}

#[test]
fn huge_samples_saturate() {
    let e = PeakEwma::new();
    e.observe(u64::MAX, 0);
    assert_eq!(e.estimate_nanos(0), EST_MASK * 1000);
}

#[test]
fn peak_jumps_up_immediately() {
    let e = PeakEwma::new();
    e.observe(MS, 0);
    e.observe(80 * MS, 1);
    assert_eq!(e.estimate_nanos(1), 80 * MS);
}

#[test]
fn lower_samples_decay_with_tau() {
    let e = PeakEwma::new();
    e.observe(50 * MS, 0);
    // Same instant: weight of the old estimate is exp(0) = 1, nothing changes.
    e.observe(10 * MS, 0);
    assert_eq!(e.estimate_nanos(0), 50 * MS);
    // One tau later: 50 e^-1 + 10 (1 - e^-1) = 24.715 ms.
    e.observe(10 * MS, 10 * S);
    let want = 50e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
    assert!(
        close(e.estimate_nanos(10 * S), want, 2e-4),
        "{}",
        e.estimate_nanos(10 * S)
    );
}

#[test]
fn read_decays_toward_zero_without_storing() {
    let e = PeakEwma::new();
    e.observe(50 * MS, 0);
    let later = e.estimate_nanos(10 * S);
    assert!(close(later, 50e6 * (-1f64).exp(), 2e-4), "{later}");
    // Reading did not store the decay.
    assert_eq!(e.estimate_nanos(0), 50 * MS);
    // Long idle: the estimate fades out entirely.
    assert_eq!(e.estimate_nanos(1000 * S), 0);
}

#[test]
fn samples_stamped_before_the_last_update_do_not_decay() {
    let e = PeakEwma::new();
    e.observe(40 * MS, 20 * S);
    // Another thread's slightly older clock reading: treated as no elapsed time.
    e.observe(10 * MS, 19 * S);
    assert_eq!(e.estimate_nanos(20 * S), 40 * MS);
    assert_eq!(e.estimate_nanos(19 * S), 40 * MS);
}

#[test]
fn timestamps_wrap_without_corruption() {
    let wrap = 1u64 << (TIME_BITS + TIME_SHIFT);
    let e = PeakEwma::new();
    e.observe(50 * MS, wrap - S);
    // Two seconds later, across the wrap of the packed timestamp.
    let got = e.estimate_nanos(wrap + S);
    assert!(close(got, 50e6 * (-0.2f64).exp(), 2e-4), "{got}");
}

#[test]
fn concurrent_observers_keep_a_valid_estimate() {
    let e = PeakEwma::new();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let e = &e;
            s.spawn(move || {
                for i in 0..10_000u64 {
                    e.observe((1 + (i + t) % 5) * MS, i * MS);
                }
            });
        }
    });
    let v = e.estimate_nanos(10 * S);
    assert!((MS..=5 * MS).contains(&v), "{v}");
}
