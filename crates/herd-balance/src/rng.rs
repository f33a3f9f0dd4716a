//! A per-thread PRNG for the randomised policies. Statistical quality matters (weighted shares
//! must come out right), cryptographic strength does not: nobody gains by predicting which
//! server gets a request.

/// splitmix64: tiny state, passes BigCrush, any seed (including 0) is fine.
///
/// One per worker thread; it is deliberately not `Sync`-shared because a shared generator would
/// need an atomic read-modify-write per pick, contended by every thread.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The same seed always yields the same sequence, which keeps tests exact.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` without modulo bias (Lemire's multiply-and-reject).
    ///
    /// `n == 0` has no valid answer; it returns 0 rather than panicking because a panic on the
    /// request path would take down a worker thread.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "Rng::below(0)");
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            // Only the first `2^64 mod n` low values are over-represented; reject those.
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests;
