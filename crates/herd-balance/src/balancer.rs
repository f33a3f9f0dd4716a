//! The policies, behind one immutable [`Balancer`] per backend group.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ewma::DEFAULT_RTT_NANOS;
use crate::load::{Loads, ServerLoad};
use crate::ring::Ring;
use crate::rng::Rng;
use crate::swrr::Swrr;

/// Balancing policy. Hash kinds only say WHICH request part is hashed; the data plane extracts
/// the key bytes and passes `hash64(key)` in [`PickContext::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Smooth weighted round robin (nginx).
    RoundRobin,
    /// Fewest in-flight requests per unit of weight.
    LeastConn,
    /// Weighted random.
    Random,
    /// Power of two (weighted random) choices, by in-flight per unit of weight.
    P2c,
    /// Power of two choices by peak-EWMA latency × (in-flight + 1) / weight.
    Ewma,
    /// Hash ring on `PickContext::key`; round robin when there is no key.
    ConsistentHash,
}

/// Everything a pick needs besides the balancer itself.
#[derive(Debug)]
pub struct PickContext<'a> {
    /// Hash of the request key for `ConsistentHash`; None => round-robin behaviour.
    pub key: Option<u64>,
    /// The calling worker thread's generator.
    pub rng: &'a mut Rng,
    pub now_nanos: u64,
    /// Server indexes already tried by this request; they are never picked.
    pub exclude: &'a [usize],
}

impl<'a> PickContext<'a> {
    /// No key, nothing excluded.
    pub fn new(rng: &'a mut Rng, now_nanos: u64) -> Self {
        PickContext {
            key: None,
            rng,
            now_nanos,
            exclude: &[],
        }
    }
}

/// A balancer for one backend group's server list (indexes `0..n` in config order).
///
/// Immutable except for internal cursors, so one `Arc<Balancer>` serves all worker threads; a
/// re-weight builds a new one and the data plane swaps it in. Pick never allocates or locks.
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    weights: Box<[u32]>,
    ids: Box<[u64]>,
    /// `cumulative[i]` = sum of `weights[..=i]`, for weighted random draws by binary search.
    cumulative: Box<[u64]>,
    /// Round robin, and consistent hash without a key.
    swrr: Option<Swrr>,
    ring: Option<Ring>,
    /// Rotating start for least-conn scans, so that ties are shared rather than always won by
    /// the lowest index.
    lc_cursor: AtomicUsize,
}

/// Weighted random draws are first tried against the full distribution and the result rejected
/// if ineligible (usually nothing is excluded, so this is one binary search); after this many
/// rejections the draw is redone exactly over the eligible servers only. Both stages draw from
/// the same conditional distribution, so the mix is exact.
const REJECTION_TRIES: usize = 4;

/// Eligibility of one pick: weight > 0, usable, not excluded.
struct Eligible<'a, L: ?Sized> {
    weights: &'a [u32],
    loads: &'a L,
    exclude: &'a [usize],
}

impl<L: Loads + ?Sized> Eligible<'_, L> {
    fn ok(&self, i: usize) -> bool {
        i < self.weights.len()
            && self.weights[i] > 0
            && self.loads.load(i).usable()
            && !self.exclude.contains(&i)
    }

    fn any(&self) -> bool {
        (0..self.weights.len()).any(|i| self.ok(i))
    }

    fn load(&self, i: usize) -> &ServerLoad {
        self.loads.load(i)
    }
}

impl Balancer {
    /// `weights`: one per server, normally 1..=100; 0 = drained, never picked by any policy.
    /// Server `i` is identified on the hash ring by its index; use [`Balancer::with_ids`] when
    /// keys must stay put across server list changes.
    pub fn new(policy: Policy, weights: &[u32]) -> Balancer {
        let ids: Vec<u64> = (0..weights.len() as u64).collect();
        Self::with_ids(policy, weights, &ids)
    }

    /// Like [`Balancer::new`], with a stable identity per server (e.g. `hash64` of its address)
    /// placing its hash ring points, so that removing or adding a server moves only about
    /// 1/N of the keys even though indexes shift. Only `ConsistentHash` uses the ids.
    ///
    /// Panics if `ids.len() != weights.len()` (a construction-time programming error).
    pub fn with_ids(policy: Policy, weights: &[u32], ids: &[u64]) -> Balancer {
        assert_eq!(
            weights.len(),
            ids.len(),
            "Balancer::with_ids: one id per weight"
        );
        let cumulative: Box<[u64]> = weights
            .iter()
            .scan(0u64, |acc, &w| {
                *acc += u64::from(w);
                Some(*acc)
            })
            .collect();
        let swrr = matches!(policy, Policy::RoundRobin | Policy::ConsistentHash)
            .then(|| Swrr::new(weights));
        let ring = (policy == Policy::ConsistentHash).then(|| Ring::new(weights, ids));
        Balancer {
            policy,
            weights: weights.into(),
            ids: ids.into(),
            cumulative,
            swrr,
            ring,
            lc_cursor: AtomicUsize::new(0),
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// The ring identities (server indexes when built with [`Balancer::new`]).
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Number of servers (including drained ones).
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Number of hash ring points (0 unless the policy is `ConsistentHash`).
    pub fn ring_points(&self) -> usize {
        self.ring.as_ref().map_or(0, Ring::len)
    }

    /// Pick a server index. `loads` must be indexed like the weights; if it is shorter, the
    /// servers beyond its end are ineligible. Only servers with weight > 0, `usable()` and not
    /// in `ctx.exclude` are eligible; None when there is none.
    pub fn pick<L: Loads + ?Sized>(&self, loads: &L, ctx: &mut PickContext<'_>) -> Option<usize> {
        let n = self.weights.len().min(loads.len());
        if n == 0 {
            return None;
        }
        let el = Eligible {
            weights: &self.weights[..n],
            loads,
            exclude: ctx.exclude,
        };
        match self.policy {
            Policy::RoundRobin => self.round_robin(&el),
            Policy::LeastConn => self.least_conn(&el),
            Policy::Random => self.weighted_random(&el, ctx.rng, None),
            Policy::P2c => self.two_choices(&el, ctx.rng, |i| {
                (
                    u128::from(el.load(i).in_flight()),
                    u128::from(el.weights[i]),
                )
            }),
            Policy::Ewma => {
                let now = ctx.now_nanos;
                self.two_choices(&el, ctx.rng, |i| {
                    let l = el.load(i);
                    let rtt = match l.ewma_nanos(now) {
                        0 => DEFAULT_RTT_NANOS,
                        v => v,
                    };
                    // The +1 makes latency count even when idle, and in-flight count even when
                    // latency is equal: a queue at a fast server still costs.
                    let cost = u128::from(rtt) * (u128::from(l.in_flight()) + 1);
                    (cost, u128::from(el.weights[i]))
                })
            }
            Policy::ConsistentHash => match (ctx.key, &self.ring) {
                (Some(key), Some(ring)) => ring.lookup(key, |i| el.ok(i), || el.any()),
                _ => self.round_robin(&el),
            },
        }
    }

    fn round_robin<L: Loads + ?Sized>(&self, el: &Eligible<'_, L>) -> Option<usize> {
        self.swrr.as_ref()?.pick(|i| el.ok(i), || el.any())
    }

    fn least_conn<L: Loads + ?Sized>(&self, el: &Eligible<'_, L>) -> Option<usize> {
        let n = el.weights.len();
        let start = self.lc_cursor.fetch_add(1, Ordering::Relaxed) % n;
        // (index, in_flight, weight); compare in_flight/weight by cross-multiplication.
        let mut best: Option<(usize, u64, u64)> = None;
        for i in (start..n).chain(0..start) {
            if !el.ok(i) {
                continue;
            }
            let f = u64::from(el.load(i).in_flight());
            let w = u64::from(el.weights[i]);
            match best {
                Some((_, bf, bw)) if f * bw >= bf * w => {}
                _ => best = Some((i, f, w)),
            }
        }
        best.map(|b| b.0)
    }

    /// Weighted random over eligible servers other than `skip`.
    fn weighted_random<L: Loads + ?Sized>(
        &self,
        el: &Eligible<'_, L>,
        rng: &mut Rng,
        skip: Option<usize>,
    ) -> Option<usize> {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return None;
        }
        for _ in 0..REJECTION_TRIES {
            let r = rng.below(total);
            let i = self.cumulative.partition_point(|&c| c <= r);
            if Some(i) != skip && el.ok(i) {
                return Some(i);
            }
        }
        let candidates = || (0..el.weights.len()).filter(|&i| Some(i) != skip && el.ok(i));
        let eligible_total: u64 = candidates().map(|i| u64::from(el.weights[i])).sum();
        if eligible_total == 0 {
            return None;
        }
        let mut r = rng.below(eligible_total);
        for i in candidates() {
            let w = u64::from(el.weights[i]);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    /// Draw two distinct eligible servers (weighted) and keep the cheaper; `cost(i)` returns
    /// (numerator, weight) and the compared cost is numerator / weight. Ties keep the first draw.
    fn two_choices<L: Loads + ?Sized>(
        &self,
        el: &Eligible<'_, L>,
        rng: &mut Rng,
        cost: impl Fn(usize) -> (u128, u128),
    ) -> Option<usize> {
        let a = self.weighted_random(el, rng, None)?;
        let Some(b) = self.weighted_random(el, rng, Some(a)) else {
            return Some(a);
        };
        let (ca, wa) = cost(a);
        let (cb, wb) = cost(b);
        if cb * wa < ca * wb {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests;
