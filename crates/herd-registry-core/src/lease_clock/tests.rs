use super::*;

#[test]
fn grant_keep_alive_expire() {
    let mut c = LeaseClock::new();
    c.grant(7, 10_000, 1_000);
    c.grant(3, 5_000, 1_000);
    assert_eq!(c.remaining(7, 1_000), Some(10_000));
    assert_eq!(c.expired(5_999), Vec::<u64>::new());
    assert_eq!(c.expired(6_000), vec![3]);
    // Renewed at 9 s: lease 7 now ends at 19 s instead of 11 s.
    assert_eq!(c.keep_alive(7, 9_000), Some(10_000));
    assert_eq!(c.remaining(7, 10_000), Some(9_000));
    assert_eq!(c.expired(18_999), vec![3]);
    assert_eq!(c.expired(19_000), vec![3, 7]);
    assert_eq!(c.remaining(7, 25_000), Some(0));
}

#[test]
fn expired_lease_is_not_revived() {
    let mut c = LeaseClock::new();
    c.grant(1, 100, 0);
    assert_eq!(c.keep_alive(1, 99), Some(100));
    assert_eq!(c.keep_alive(1, 198), Some(100));
    // Renewed at 198 to end at 298: at 298 it is over.
    assert_eq!(c.keep_alive(1, 298), None);
    assert_eq!(c.keep_alive(42, 0), None);
    // Still listed until its revoke is applied and the caller removes it.
    assert_eq!(c.expired(300), vec![1]);
    assert!(c.remove(1));
    assert!(!c.remove(1));
    assert!(c.is_empty());
}

#[test]
fn new_leader_restarts_every_countdown() {
    let mut c = LeaseClock::new();
    c.grant(1, 1_000, 0);
    c.grant(2, 3_000, 0);
    // The old leader would have expired lease 1 at 1 s; the new one starts counting at 900 ms.
    c.reset_all(900);
    assert_eq!(c.expired(1_899), Vec::<u64>::new());
    assert_eq!(c.expired(1_900), vec![1]);
    assert_eq!(c.remaining(2, 900), Some(3_000));
    assert_eq!(c.len(), 2);
    assert!(c.contains(2));
}

#[test]
fn huge_ttl_saturates() {
    let mut c = LeaseClock::new();
    c.grant(1, u64::MAX, 5);
    assert_eq!(c.expired(u64::MAX - 1), Vec::<u64>::new());
    assert_eq!(c.keep_alive(1, 10), Some(u64::MAX));
}
