use super::*;

#[test]
fn splitmix64_reference_outputs() {
    let mut r = Rng::new(0);
    assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    let mut r = Rng::new(42);
    assert_eq!(r.next_u64(), 0xbdd7_3226_2feb_6e95);
}

#[test]
fn same_seed_same_sequence() {
    let mut a = Rng::new(7);
    let mut b = a.clone();
    for _ in 0..100 {
        assert_eq!(a.next_u64(), b.next_u64());
    }
}

#[test]
fn below_stays_in_range() {
    let mut r = Rng::new(1);
    for n in [1u64, 2, 3, 7, 100, 1 << 40, u64::MAX] {
        for _ in 0..1000 {
            assert!(r.below(n) < n);
        }
    }
    for _ in 0..100 {
        assert_eq!(r.below(1), 0);
    }
}

#[test]
fn below_is_uniform() {
    let mut r = Rng::new(3);
    let mut counts = [0u32; 6];
    for _ in 0..60_000 {
        counts[r.below(6) as usize] += 1;
    }
    for &c in &counts {
        assert!((9_700..=10_300).contains(&c), "{counts:?}");
    }
}

#[test]
fn below_high_n_uses_the_whole_range() {
    // With n just above 2^63 a modulo would favour the low half 2:1; rejection keeps it 1:1.
    let n = (1u64 << 63) + (1 << 62);
    let mut r = Rng::new(9);
    let low = (0..30_000).filter(|_| r.below(n) < n / 2).count();
    assert!((14_400..=15_600).contains(&low), "{low}");
}
