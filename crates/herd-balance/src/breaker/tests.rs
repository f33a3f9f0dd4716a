use super::*;

fn params() -> BreakerParams {
    BreakerParams {
        consecutive_failures: 3,
        error_rate: None,
        min_requests: 20,
        window_ms: 10_000,
        open_for_ms: 5_000,
        half_open_probes: 2,
    }
}

fn fail(b: &CircuitBreaker, now: u64) -> Option<BreakerState> {
    let (a, _) = b.admit(now);
    assert_eq!(a, Admission::Pass);
    b.record(a, false, now)
}

#[test]
fn opens_after_consecutive_failures_and_a_success_resets_the_run() {
    let b = CircuitBreaker::new(params());
    assert_eq!(fail(&b, 1000), None);
    assert_eq!(fail(&b, 1001), None);
    let (a, _) = b.admit(1002);
    assert_eq!(b.record(a, true, 1002), None);
    assert_eq!(b.consecutive_failures(), 0);
    assert_eq!(fail(&b, 1003), None);
    assert_eq!(fail(&b, 1004), None);
    assert_eq!(fail(&b, 1005), Some(BreakerState::Open));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.admit(1006), (Admission::Reject, None));
    assert_eq!(
        b.admit(6004),
        (Admission::Reject, None),
        "still inside open_for"
    );
}

#[test]
fn half_open_lets_exactly_the_probes_through_and_successes_close_it() {
    let b = CircuitBreaker::new(params());
    for t in 0..3 {
        fail(&b, 100 + t);
    }
    assert_eq!(b.state(), BreakerState::Open);
    // opened at 102; rest over at 5102.
    let (p1, moved) = b.admit(5102);
    assert_eq!(moved, Some(BreakerState::HalfOpen));
    assert_eq!(p1, Admission::Probe(5102));
    let (p2, moved) = b.admit(5103);
    assert_eq!((p2, moved), (Admission::Probe(5102), None));
    assert_eq!(b.admit(5104), (Admission::Reject, None), "only 2 probes");
    assert_eq!(b.record(p1, true, 5110), None);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.record(p2, true, 5120), Some(BreakerState::Closed));
    assert_eq!(b.admit(5121), (Admission::Pass, None));
    // Counting starts over: it takes 3 new failures to open again.
    assert_eq!(fail(&b, 5122), None);
    assert_eq!(fail(&b, 5123), None);
    assert_eq!(fail(&b, 5124), Some(BreakerState::Open));
}

#[test]
fn a_failed_probe_reopens_and_late_outcomes_are_ignored() {
    let b = CircuitBreaker::new(params());
    let (old, _) = b.admit(0);
    for t in 1..4 {
        fail(&b, t);
    }
    // A request admitted before the breaker opened finishes now: ignored.
    assert_eq!(b.record(old, false, 10), None);
    let (p1, _) = b.admit(5003);
    let (p2, _) = b.admit(5004);
    assert_eq!(b.record(p1, false, 5005), Some(BreakerState::Open));
    assert_eq!(b.record(p2, true, 5006), None, "its episode is over");
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.admit(10_004), (Admission::Reject, None));
    let (p, moved) = b.admit(10_005);
    assert_eq!(
        (p, moved),
        (Admission::Probe(10_005), Some(BreakerState::HalfOpen))
    );
}

#[test]
fn stuck_probes_are_replaced_after_a_rest_period() {
    let b = CircuitBreaker::new(params());
    for t in 0..3 {
        fail(&b, t);
    }
    let _lost1 = b.admit(5002);
    let _lost2 = b.admit(5002);
    assert_eq!(b.admit(9000).0, Admission::Reject);
    assert_eq!(b.admit(10_002).0, Admission::Probe(10_002));
}

#[test]
fn opens_on_error_rate_over_the_window_once_there_are_enough_requests() {
    let b = CircuitBreaker::new(BreakerParams {
        consecutive_failures: 0,
        error_rate: Some(0.5),
        min_requests: 10,
        ..params()
    });
    let mut now = 50_000;
    // Alternate success/failure: 50% but only 9 requests — not enough yet.
    for i in 0..9 {
        let (a, _) = b.admit(now);
        assert_eq!(b.record(a, i % 2 == 1, now), None, "request {i}");
        now += 10;
    }
    assert_eq!(b.window_counts(now), (9, 5));
    // 10th: a success keeps it closed (a success never trips)...
    let (a, _) = b.admit(now);
    assert_eq!(b.record(a, true, now), None);
    // ...11th: failure, 6 of 11 >= 50%.
    let (a, _) = b.admit(now);
    assert_eq!(b.record(a, false, now), Some(BreakerState::Open));
}

#[test]
fn the_window_forgets_old_slots() {
    let b = CircuitBreaker::new(BreakerParams {
        consecutive_failures: 0,
        error_rate: Some(0.5),
        min_requests: 4,
        ..params()
    });
    // 1 s slots. Three failures at t=0 s...
    for _ in 0..3 {
        let (a, _) = b.admit(0);
        b.record(a, false, 0);
    }
    assert_eq!(b.window_counts(9_999), (3, 3));
    assert_eq!(b.window_counts(10_000), (0, 0), "slot 0 left the window");
    // ...so a fourth failure 10 s later is 1 of 1 request: below min_requests.
    let (a, _) = b.admit(10_000);
    assert_eq!(b.record(a, false, 10_000), None);
    assert_eq!(b.state(), BreakerState::Closed);
}
