use super::*;

fn names(seq: &[u32]) -> String {
    seq.iter().map(|&i| (b'a' + i as u8) as char).collect()
}

#[test]
fn nginx_sequence_5_1_1() {
    assert_eq!(names(&build_sequence(&[5, 1, 1])), "aabacaa");
}

#[test]
fn sequences_are_exact() {
    assert_eq!(names(&build_sequence(&[3, 1])), "aaba");
    assert_eq!(names(&build_sequence(&[1, 1, 1])), "abc");
    assert_eq!(names(&build_sequence(&[2, 1])), "aba");
    assert_eq!(names(&build_sequence(&[1, 2])), "bab");
    assert_eq!(names(&build_sequence(&[4, 2, 1])), "abacaba");
}

#[test]
fn zero_weights_are_left_out() {
    assert_eq!(names(&build_sequence(&[0, 2, 0, 1])), "bdb");
    assert!(build_sequence(&[0, 0]).is_empty());
    assert!(build_sequence(&[]).is_empty());
}

#[test]
fn gcd_reduction_keeps_the_order() {
    assert_eq!(build_sequence(&[50, 10, 10]), build_sequence(&[5, 1, 1]));
    assert_eq!(build_sequence(&[100, 100]).len(), 2);
}

#[test]
fn slot_counts_reduce_then_cap() {
    assert_eq!(slot_counts(vec![50, 10, 10]), vec![5, 1, 1]);
    assert_eq!(slot_counts(vec![7]), vec![1]);
    // 2,000 servers with weights 1..=100 (gcd 1): 101,000 slots would exceed the cap.
    let w: Vec<u64> = (0..2_000).map(|i| 1 + (i % 100)).collect();
    assert_eq!(w.iter().sum::<u64>(), 101_000);
    let c = slot_counts(w);
    let total: u64 = c.iter().sum();
    assert!(total <= MAX_SEQUENCE_LEN as u64, "{total}");
    assert!(total >= MAX_SEQUENCE_LEN as u64 - 2_000, "{total}");
    // floor(w * 65536 / 101000), at least 1.
    assert_eq!((c[0], c[1], c[2], c[99]), (1, 1, 1, 64));
}

#[test]
fn capped_sequence_keeps_proportions() {
    // 660 servers of weight 99 or 100: sum 65,670 just over the cap.
    let w: Vec<u32> = (0..660).map(|i| 99 + (i % 2)).collect();
    let seq = build_sequence(&w);
    assert!(seq.len() <= MAX_SEQUENCE_LEN);
    let mut counts = vec![0u32; w.len()];
    for &s in &seq {
        counts[s as usize] += 1;
    }
    assert_eq!((counts[0], counts[1]), (98, 99));
}

#[test]
fn more_servers_than_cap_get_one_slot_each() {
    let w = vec![1u32; MAX_SEQUENCE_LEN + 10];
    let seq = build_sequence(&w);
    assert_eq!(seq.len(), MAX_SEQUENCE_LEN + 10);
    assert_eq!(seq[7], 7);
}

fn tally(s: &Swrr, n: usize, ok: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut counts = vec![0; 8];
    for _ in 0..n {
        counts[s.pick(&ok, || true).unwrap()] += 1;
    }
    counts
}

#[test]
fn a_missing_servers_share_spreads_by_weight() {
    // Three equal servers, b out: a and c alternate (the old walk gave c two turns in three).
    let s = Swrr::new(&[1, 1, 1]);
    assert_eq!(&tally(&s, 300, |i| i != 1)[..3], [150, 0, 150]);
    // Four equal, b out: 1:1:1.
    let s = Swrr::new(&[1, 1, 1, 1]);
    assert_eq!(&tally(&s, 300, |i| i != 1)[..4], [100, 0, 100, 100]);
    // 5:1:1 with a out: b and c share evenly; with b out, a and c keep 5:1.
    let s = Swrr::new(&[5, 1, 1]);
    assert_eq!(&tally(&s, 70, |i| i != 0)[..3], [0, 35, 35]);
    let s = Swrr::new(&[5, 1, 1]);
    assert_eq!(&tally(&s, 60, |i| i != 1)[..3], [50, 0, 10]);
    // Nothing eligible: None, after a bounded walk.
    let s = Swrr::new(&[5, 1, 1]);
    assert_eq!(s.pick(|_| false, || false), None);
    assert_eq!(s.pick(|_| false, || true), None);
}

#[test]
fn all_eligible_follows_the_sequence() {
    let s = Swrr::new(&[5, 1, 1]);
    let got: String = (0..7)
        .map(|_| (b'a' + s.pick(|_| true, || true).unwrap() as u8) as char)
        .collect();
    assert_eq!(got, "aabacaa");
}

#[test]
fn first_eligible_wraps_and_short_circuits() {
    let owners: Vec<u32> = (0..100).map(|i| i % 4).collect();
    assert_eq!(first_eligible(&owners, 99, |i| i == 0, || true), Some(0));
    assert_eq!(first_eligible(&owners, 100, |i| i == 2, || true), Some(2));
    let calls = std::cell::Cell::new(0);
    let r = first_eligible(
        &owners,
        0,
        |_| {
            calls.set(calls.get() + 1);
            false
        },
        || false,
    );
    assert_eq!(r, None);
    assert_eq!(calls.get(), QUICK_WALK);
}
