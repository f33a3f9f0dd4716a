//! Consistent hash ring (ketama style).
//!
//! A ring rather than Maglev because the requirement is per-request fallback: when a key's server
//! is ineligible the key must go to a deterministic neighbour and come back later, without moving
//! any other key. Walking clockwise to the next eligible point gives exactly that, while Maglev's
//! table would have to be rebuilt per health change.

use std::fmt::Write as _;

use crate::hash::hash64;
use crate::swrr::first_eligible;

/// Ring points given to a server of average weight (ketama uses 160). More points even out the
/// key shares (relative spread ~ 1/sqrt(points)) at the cost of memory and build time.
pub const POINTS_PER_WEIGHT_UNIT: u64 = 160;

/// Cap on the number of points of one ring (12 bytes each, so ~12 MiB): above
/// `MAX_RING_POINTS / 160` active servers, each server gets proportionally fewer points.
pub const MAX_RING_POINTS: u64 = 1 << 20;

pub(crate) struct Ring {
    /// Sorted point positions; `owners[k]` is the server index owning `points[k]`.
    points: Box<[u64]>,
    owners: Box<[u32]>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .finish()
    }
}

impl Ring {
    /// `ids[i]` names server `i` on the ring. Point positions depend only on the id, the point
    /// number and the point count, so a server keeps its points when others come and go (as long
    /// as the average weight does not change).
    pub(crate) fn new(weights: &[u32], ids: &[u64]) -> Ring {
        debug_assert_eq!(weights.len(), ids.len());
        let active = weights.iter().filter(|&&w| w > 0).count() as u128;
        let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        if active == 0 {
            return Ring {
                points: Box::new([]),
                owners: Box::new([]),
            };
        }
        let per_avg = u128::from(
            POINTS_PER_WEIGHT_UNIT
                .min(MAX_RING_POINTS / active as u64)
                .max(1),
        );
        let mut all: Vec<(u64, u32)> = Vec::new();
        let mut label = String::new();
        for (i, (&w, &id)) in weights.iter().zip(ids).enumerate() {
            if w == 0 {
                continue;
            }
            // Points proportional to weight relative to the group average, rounded to nearest.
            let n = ((2 * per_avg * u128::from(w) * active + sum) / (2 * sum)).max(1) as u64;
            for v in 0..n {
                label.clear();
                let _ = write!(label, "{id}-{v}");
                all.push((hash64(label.as_bytes()), i as u32));
            }
        }
        // Sorting on (position, owner) keeps the ring deterministic even on a position collision.
        all.sort_unstable();
        Ring {
            points: all.iter().map(|p| p.0).collect(),
            owners: all.iter().map(|p| p.1).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    #[cfg(test)]
    pub(crate) fn points_of(&self, server: usize) -> usize {
        self.owners
            .iter()
            .filter(|&&o| o as usize == server)
            .count()
    }

    /// First point clockwise from `key` (inclusive) whose server is eligible.
    pub(crate) fn lookup(
        &self,
        key: u64,
        ok: impl Fn(usize) -> bool,
        any: impl Fn() -> bool,
    ) -> Option<usize> {
        let start = self.points.partition_point(|&p| p < key);
        first_eligible(&self.owners, start, ok, any)
    }
}

#[cfg(test)]
mod tests;
