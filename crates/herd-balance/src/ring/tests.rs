use super::*;

fn index_ids(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

#[test]
fn points_follow_weight_relative_to_average() {
    let r = Ring::new(&[1, 1, 1], &index_ids(3));
    assert_eq!(r.len(), 480);
    assert_eq!(r.points_of(1), 160);
    // Average weight 2: 80 and 240.
    let r = Ring::new(&[1, 3], &index_ids(2));
    assert_eq!((r.points_of(0), r.points_of(1)), (80, 240));
    // Drained servers have no points and do not count toward the average.
    let r = Ring::new(&[2, 0, 2], &index_ids(3));
    assert_eq!(
        (r.points_of(0), r.points_of(1), r.points_of(2)),
        (160, 0, 160)
    );
    assert_eq!(Ring::new(&[0, 0], &index_ids(2)).len(), 0);
    assert_eq!(Ring::new(&[], &[]).len(), 0);
}

#[test]
fn total_points_are_capped() {
    let n = 10_000;
    let r = Ring::new(&vec![1; n], &index_ids(n));
    // floor(2^20 / 10,000) = 104 per server.
    assert_eq!(r.len(), 104 * n);
    assert!(r.len() as u64 <= MAX_RING_POINTS);
}

#[test]
fn every_server_keeps_a_point() {
    let r = Ring::new(&[100, 1, 100, 100], &index_ids(4));
    // 160 * 1 * 4 / 301 = 2.13 -> 2.
    assert_eq!(r.points_of(1), 2);
}

#[test]
fn positions_are_stable_hashes_of_id_and_point() {
    let r = Ring::new(&[1], &[42]);
    let mut want: Vec<u64> = (0..160)
        .map(|v| hash64(format!("42-{v}").as_bytes()))
        .collect();
    want.sort_unstable();
    assert_eq!(&*r.points, &want[..]);
}

#[test]
fn lookup_is_first_point_clockwise() {
    let r = Ring::new(&[1, 1], &index_ids(2));
    let p = r.points[10];
    let owner = r.owners[10] as usize;
    // Exactly on a point, and just before it, both land on it.
    assert_eq!(r.lookup(p, |_| true, || true), Some(owner));
    assert_eq!(r.lookup(p - 1, |_| true, || true), Some(owner));
    // Past the last point wraps to the first.
    let last = *r.points.last().unwrap();
    if last < u64::MAX {
        assert_eq!(
            r.lookup(last + 1, |_| true, || true),
            Some(r.owners[0] as usize)
        );
    }
    // The owner ineligible: the next point of another server.
    let next = r.owners[11..]
        .iter()
        .map(|&o| o as usize)
        .find(|&o| o != owner)
        .unwrap();
    assert_eq!(r.lookup(p, |i| i != owner, || true), Some(next));
    assert_eq!(r.lookup(p, |_| false, || false), None);
}
