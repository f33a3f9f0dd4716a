use super::*;

use HealthState::{Healthy, Unhealthy};
use Transition::{CameUp, WentDown};

#[test]
fn tracker_starts_healthy() {
    let t = HealthTracker::new(3, 2);
    assert_eq!(t.state(), Healthy);
    assert_eq!(
        (t.consecutive_failures(), t.consecutive_successes()),
        (0, 0)
    );
}

#[test]
fn tracker_fall_and_rise() {
    let mut t = HealthTracker::new(3, 2);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.consecutive_failures(), 2);
    // A success breaks the failure streak.
    assert_eq!(t.record(true), None);
    assert_eq!(
        (t.consecutive_failures(), t.consecutive_successes()),
        (0, 1)
    );
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.state(), Healthy);
    assert_eq!(t.record(false), Some(WentDown));
    assert_eq!(t.state(), Unhealthy);
    // Further failures: no repeated transition, the streak keeps counting.
    assert_eq!(t.record(false), None);
    assert_eq!(t.consecutive_failures(), 4);
    assert_eq!(t.record(true), None);
    // A failure breaks the success streak.
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(true), None);
    assert_eq!(t.consecutive_successes(), 1);
    assert_eq!(t.record(true), Some(CameUp));
    assert_eq!(t.state(), Healthy);
    assert_eq!(t.record(true), None);
    assert_eq!(t.consecutive_successes(), 3);
}

#[test]
fn tracker_thresholds_of_one_and_zero() {
    let mut t = HealthTracker::new(1, 1);
    assert_eq!(t.record(false), Some(WentDown));
    assert_eq!(t.record(true), Some(CameUp));
    // 0 behaves as 1.
    let mut t = HealthTracker::new(0, 0);
    assert_eq!(t.record(false), Some(WentDown));
    assert_eq!(t.record(true), Some(CameUp));
}

#[test]
fn ejector_needs_consecutive_failures() {
    let e = PassiveEjector::new(3, 10_000);
    assert!(!e.on_failure(100));
    assert!(!e.on_failure(101));
    e.on_success();
    assert_eq!(e.consecutive_failures(), 0);
    assert!(!e.on_failure(102));
    assert!(!e.on_failure(103));
    assert!(!e.is_ejected(103));
    assert_eq!(e.ejected_until_ms(), 0);
}

#[test]
fn ejector_full_cycle() {
    let e = PassiveEjector::new(3, 10_000);
    assert!(!e.on_failure(1_000));
    assert!(!e.on_failure(1_000));
    assert!(e.on_failure(1_000));
    assert_eq!(e.ejected_until_ms(), 11_000);
    assert!(e.is_ejected(1_000));
    assert!(e.is_ejected(10_999));
    // Stragglers failing during the cool-down neither extend it nor report an ejection.
    assert!(!e.on_failure(5_000));
    assert_eq!(e.ejected_until_ms(), 11_000);
    // Cool-down over: on trial.
    assert!(!e.is_ejected(11_000));
    // One failure on trial ejects again at once, for a full cool-down.
    assert!(e.on_failure(11_500));
    assert_eq!(e.ejected_until_ms(), 21_500);
    assert!(e.is_ejected(21_499));
    assert!(!e.is_ejected(21_500));
    // A success on trial: fully back, the threshold applies again.
    e.on_success();
    assert_eq!(e.ejected_until_ms(), 0);
    assert!(!e.on_failure(22_000));
    assert!(!e.on_failure(22_001));
    assert!(!e.is_ejected(22_001));
    assert!(e.on_failure(22_002));
    assert_eq!(e.ejected_until_ms(), 32_002);
}

#[test]
fn ejector_success_during_cooldown_does_not_reinstate() {
    let e = PassiveEjector::new(1, 1_000);
    assert!(e.on_failure(0));
    // A request sent before the ejection succeeds: still ejected.
    e.on_success();
    assert!(e.is_ejected(999));
    assert_eq!(e.ejected_until_ms(), 1_000);
    assert!(!e.is_ejected(1_000));
    e.on_success();
    assert_eq!(e.ejected_until_ms(), 0);
    assert!(!e.is_ejected(1_000));
}

#[test]
fn ejector_disabled_with_zero() {
    let e = PassiveEjector::new(0, 1_000);
    for t in 0..100 {
        assert!(!e.on_failure(t));
    }
    assert!(!e.is_ejected(100));
}

#[test]
fn ejector_zero_cooldown_at_time_zero_still_ejects() {
    let e = PassiveEjector::new(1, 0);
    assert!(e.on_failure(0));
    assert_eq!(e.ejected_until_ms(), 1);
    assert!(e.is_ejected(0));
    assert!(!e.is_ejected(1));
}

#[test]
fn ejector_reports_one_ejection_under_contention() {
    let e = PassiveEjector::new(5, 60_000);
    let ejections = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..1_000 {
                    if e.on_failure(7) {
                        ejections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(ejections.into_inner(), 1);
    assert_eq!(e.ejected_until_ms(), 60_007);
}
