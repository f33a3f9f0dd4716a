use super::*;

#[test]
fn counts_up_to_the_limit_and_frees_on_release() {
    let t = KeyedCounter::new(64);
    let a = t.acquire(1, 2);
    let b = t.acquire(1, 2);
    assert!(matches!(a, KeyedAcquire::Counted(_)));
    assert_eq!(a, b, "same key, same slot");
    assert_eq!(t.acquire(1, 2), KeyedAcquire::OverLimit);
    assert_eq!(t.count(1), 2);
    // Another key is not affected.
    assert!(matches!(t.acquire(2, 2), KeyedAcquire::Counted(_)));
    let KeyedAcquire::Counted(slot) = a else {
        unreachable!()
    };
    t.release(slot);
    assert_eq!(t.count(1), 1);
    assert!(matches!(t.acquire(1, 2), KeyedAcquire::Counted(_)));
    t.release(slot);
    t.release(slot);
    assert_eq!(t.count(1), 0);
    assert_eq!(t.keys(), 1);
    // Releasing an empty slot never wraps.
    t.release(slot);
    assert_eq!(t.count(1), 0);
}

#[test]
fn a_full_set_is_reported_and_freed_slots_are_reused() {
    let t = KeyedCounter::new(8); // one set
    let mut held = Vec::new();
    for key in 0..8u64 {
        match t.acquire(key, 1) {
            KeyedAcquire::Counted(s) => held.push(s),
            other => panic!("key {key}: {other:?}"),
        }
    }
    assert_eq!(t.acquire(100, 1), KeyedAcquire::TableFull);
    t.release(held[3]);
    assert!(matches!(t.acquire(100, 1), KeyedAcquire::Counted(_)));
    assert_eq!(t.keys(), 8);
}

#[test]
fn many_threads_never_exceed_the_limit() {
    use std::sync::Arc;
    let t = Arc::new(KeyedCounter::new(1024));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..1000 {
                    if let KeyedAcquire::Counted(s) = t.acquire(42, 10) {
                        got.push(s);
                    }
                }
                got
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap().len()).sum();
    assert_eq!(total, 10);
    assert_eq!(t.count(42), 10);
}
