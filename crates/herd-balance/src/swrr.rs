//! Smooth weighted round robin, precomputed.
//!
//! nginx runs SWRR online, mutating every server's `current` on each pick, which needs a lock.
//! The sequence is periodic with period `sum(weights)`, so it is computed once at build time and
//! a pick is one `fetch_add` on a cursor plus a read.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Upper bound on the precomputed sequence length (entries of 4 bytes, so 256 KiB).
///
/// Weights are first divided by their gcd (exact: same order, shorter period). If the sum is
/// still larger, weights are scaled down proportionally (each active server keeps at least one
/// slot), trading a small ratio error for bounded memory; that only happens for groups of
/// hundreds of servers with dissimilar weights. A group with more active servers than this
/// gets one slot per server.
pub const MAX_SEQUENCE_LEN: usize = 1 << 16;

/// After this many ineligible entries a walk checks whether anything at all is eligible, so a
/// group with every server down costs O(servers) per pick instead of O(sequence).
pub(crate) const QUICK_WALK: usize = 32;

#[derive(Debug)]
pub(crate) struct Swrr {
    seq: Box<[u32]>,
    cursor: AtomicUsize,
}

impl Swrr {
    pub(crate) fn new(weights: &[u32]) -> Swrr {
        Swrr {
            seq: build_sequence(weights).into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The server whose turn it is. An ineligible server's turn is skipped — the cursor
    /// moves on to the next turn in the period — so its share spreads over the eligible
    /// servers in proportion to their weights, as nginx's SWRR over usable peers does.
    /// (Handing the turn to the next eligible entry instead gave one neighbour the whole
    /// share: 2:1 over three equal servers with one out.) Bounded: one period at most, and
    /// after [`QUICK_WALK`] skips it checks that anything is eligible at all.
    pub(crate) fn pick(&self, ok: impl Fn(usize) -> bool, any: impl Fn() -> bool) -> Option<usize> {
        let len = self.seq.len();
        if len == 0 {
            return None;
        }
        for skipped in 0..len {
            if skipped == QUICK_WALK && !any() {
                return None;
            }
            // Relaxed: the cursor only spreads turns; wrapping at usize::MAX merely restarts
            // the period one slot off.
            let turn = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
            let s = self.seq[turn] as usize;
            if ok(s) {
                return Some(s);
            }
        }
        None
    }
}

/// Walk `owners` circularly from `start` (which may equal `owners.len()`) to the first entry
/// accepted by `ok`. Shared with the hash ring, which has the same shape.
pub(crate) fn first_eligible(
    owners: &[u32],
    start: usize,
    ok: impl Fn(usize) -> bool,
    any: impl Fn() -> bool,
) -> Option<usize> {
    let len = owners.len();
    for off in 0..len {
        if off == QUICK_WALK && !any() {
            return None;
        }
        let mut j = start + off;
        if j >= len {
            j -= len;
        }
        let s = owners[j] as usize;
        if ok(s) {
            return Some(s);
        }
    }
    None
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// How many slots of one period each active server gets: weights divided by their gcd, then
/// scaled down to fit [`MAX_SEQUENCE_LEN`] when needed (never below one slot).
fn slot_counts(mut w: Vec<u64>) -> Vec<u64> {
    let g = w.iter().fold(0, |g, &x| gcd(g, x));
    w.iter_mut().for_each(|x| *x /= g);
    let sum: u64 = w.iter().sum();
    let cap = MAX_SEQUENCE_LEN as u64;
    if sum > cap {
        for x in w.iter_mut() {
            *x = ((u128::from(*x) * u128::from(cap) / u128::from(sum)) as u64).max(1);
        }
    }
    w
}

/// One full SWRR period over the servers with weight > 0; ties go to the lowest index.
///
/// Costs O(active servers × period) once per build: ~10^8 steps for the worst realistic case
/// (a thousand servers of dissimilar weights), which is a config reload, not the request path.
pub(crate) fn build_sequence(weights: &[u32]) -> Vec<u32> {
    let idx: Vec<u32> = (0..weights.len() as u32)
        .filter(|&i| weights[i as usize] > 0)
        .collect();
    if idx.is_empty() {
        return Vec::new();
    }
    let w = slot_counts(
        idx.iter()
            .map(|&i| u64::from(weights[i as usize]))
            .collect(),
    );
    if w.iter().all(|&x| x == 1) {
        // Equal weights: SWRR degenerates to index order; skip the quadratic loop for big groups.
        return idx;
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let w: Vec<i64> = w.into_iter().map(|x| x as i64).collect();
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for j in 0..w.len() {
            current[j] += w[j];
            if current[j] > current[best] {
                best = j;
            }
        }
        current[best] -= total;
        seq.push(idx[best]);
    }
    seq
}

#[cfg(test)]
mod tests;
