use super::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

#[test]
fn burst_then_refill_at_the_rate() {
    let p = RateParams::new(5.0, 5);
    let b = RateBucket::new();
    let t0 = 10 * S;
    for i in 0..5 {
        assert_eq!(b.try_take(&p, t0), Ok(()), "request {i} of the burst");
    }
    // The 6th waits for one token: 1/5 s.
    assert_eq!(b.try_take(&p, t0), Err(200 * MS));
    assert_eq!(b.try_take(&p, t0 + 150 * MS), Err(50 * MS));
    assert_eq!(b.try_take(&p, t0 + 200 * MS), Ok(()));
    assert_eq!(b.try_take(&p, t0 + 200 * MS), Err(200 * MS));
    // A full second later the whole burst is back.
    let t1 = t0 + 1400 * MS;
    for _ in 0..5 {
        assert_eq!(b.try_take(&p, t1), Ok(()));
    }
    assert!(b.try_take(&p, t1).is_err());
}

#[test]
fn fractional_rate() {
    let p = RateParams::new(0.5, 1);
    let b = RateBucket::new();
    assert_eq!(b.try_take(&p, 100 * S), Ok(()));
    assert_eq!(b.try_take(&p, 100 * S), Err(2 * S));
    assert_eq!(b.try_take(&p, 101 * S), Err(S));
    assert_eq!(b.try_take(&p, 102 * S), Ok(()));
}

#[test]
fn a_denied_request_takes_nothing() {
    let p = RateParams::new(1.0, 1);
    let b = RateBucket::new();
    assert_eq!(b.try_take(&p, 5 * S), Ok(()));
    for _ in 0..100 {
        assert!(b.try_take(&p, 5 * S).is_err());
    }
    assert_eq!(b.try_take(&p, 6 * S), Ok(()));
}

#[test]
fn table_keeps_keys_apart() {
    let p = RateParams::new(1.0, 2);
    let t = RateTable::new(64);
    let now = 50 * S;
    assert_eq!(t.try_take(7, &p, now), RateDecision::Allowed);
    assert_eq!(t.try_take(7, &p, now), RateDecision::Allowed);
    assert_eq!(t.try_take(7, &p, now), RateDecision::Limited(S));
    // Another key has its own full bucket.
    assert_eq!(t.try_take(8, &p, now), RateDecision::Allowed);
    assert_eq!(t.try_take(8, &p, now), RateDecision::Allowed);
    assert_eq!(t.try_take(8, &p, now), RateDecision::Limited(S));
    assert_eq!(t.active(now), 2);
    assert_eq!(t.active(now + 2 * S), 0);
}

#[test]
fn table_memory_is_fixed_and_idle_buckets_are_reused() {
    let p = RateParams::new(10.0, 1);
    let t = RateTable::new(64);
    assert_eq!(t.slots(), 64);
    let mut now = 10 * S;
    // 100 000 distinct clients, each one request, 1 ms apart: every bucket is idle again
    // 100 ms after its request, so the 64 slots are reused with no early eviction.
    for key in 0..100_000u64 {
        assert_eq!(t.try_take(key, &p, now), RateDecision::Allowed);
        now += 200 * MS;
    }
    assert_eq!(t.busy_evictions(), 0);
}

#[test]
fn table_fails_open_when_overfull() {
    let p = RateParams::new(1.0, 1);
    let t = RateTable::new(8); // one set of 8 ways
    let now = 10 * S;
    for key in 1..=8u64 {
        assert_eq!(t.try_take(key, &p, now), RateDecision::Allowed);
    }
    // A 9th active key evicts a refilling bucket: allowed, and counted.
    assert_eq!(t.try_take(9, &p, now), RateDecision::Allowed);
    assert_eq!(t.busy_evictions(), 1);
}
