//! Rate limiting as a token bucket, kept as one number: GCRA's theoretical arrival time
//! (TAT). A bucket is a single `AtomicU64`, so taking a token is one compare-and-swap and a
//! route-wide limit costs every worker one atomic. Keyed limits (per client IP, per header
//! value) live in [`RateTable`], a fixed-size set-associative table of such buckets.
//!
//! Time is an argument (`now_nanos`, any monotonic origin); nothing here reads a clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// A bucket's shape: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateParams {
    /// Nanoseconds per token (the emission interval).
    interval: u64,
    /// `burst * interval`: how far ahead of now the TAT may run.
    capacity: u64,
}

impl RateParams {
    /// `per_second` > 0 (fractions allowed: 0.5 = one token every 2 s), `burst` >= 1.
    pub fn new(per_second: f64, burst: u32) -> RateParams {
        let interval = (1e9 / per_second.max(1e-9))
            .round()
            .clamp(1.0, u64::MAX as f64 / 4e6);
        let interval = interval as u64;
        RateParams {
            interval,
            capacity: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }
}

/// One token bucket (GCRA). A fresh or long-idle bucket is full.
#[derive(Debug, Default)]
pub struct RateBucket {
    tat: AtomicU64,
}

impl RateBucket {
    pub fn new() -> RateBucket {
        RateBucket::default()
    }

    /// Take one token. `Err(wait)`: none left, the next one comes in `wait` nanoseconds.
    pub fn try_take(&self, p: &RateParams, now_nanos: u64) -> Result<(), u64> {
        take(&self.tat, p, now_nanos)
    }
}

fn take(tat: &AtomicU64, p: &RateParams, now: u64) -> Result<(), u64> {
    let mut current = tat.load(Ordering::Relaxed);
    loop {
        let next = current.max(now).saturating_add(p.interval);
        let ahead = next - now;
        if ahead > p.capacity {
            return Err(ahead - p.capacity);
        }
        match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

/// Ways per set: a key may sit in any of these slots of its set.
pub const RATE_TABLE_WAYS: usize = 8;

/// What [`RateTable::try_take`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; the next token comes in this many nanoseconds.
    Limited(u64),
}

/// Token buckets by 64-bit key (a hash of the client IP or header value), in a fixed
/// number of slots: memory is `16 bytes × slots` however many clients there are.
///
/// A bucket whose TAT is in the past is full, exactly like a bucket never used, so it can
/// be handed to another key with no loss: that is the idle eviction, done in passing. Only
/// when all the ways of a set hold buckets still refilling is one evicted early (the one
/// closest to full), and its client gets a fresh bucket: the table fails open, never
/// closed, and counts it ([`RateTable::busy_evictions`]).
#[derive(Debug)]
pub struct RateTable {
    keys: Box<[AtomicU64]>,
    tats: Box<[AtomicU64]>,
    set_mask: usize,
    busy_evictions: AtomicU64,
}

impl RateTable {
    /// `slots` is rounded up to a power of two and to at least one set.
    pub fn new(slots: usize) -> RateTable {
        let slots = slots.max(RATE_TABLE_WAYS).next_power_of_two();
        RateTable {
            keys: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            tats: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            set_mask: slots / RATE_TABLE_WAYS - 1,
            busy_evictions: AtomicU64::new(0),
        }
    }

    pub fn slots(&self) -> usize {
        self.keys.len()
    }

    /// Keys whose bucket was taken over while still refilling (the table was too small for
    /// the clients active at once).
    pub fn busy_evictions(&self) -> u64 {
        self.busy_evictions.load(Ordering::Relaxed)
    }

    /// Take one token from `key`'s bucket.
    pub fn try_take(&self, key: u64, p: &RateParams, now_nanos: u64) -> RateDecision {
        // 0 marks an empty slot.
        let key = key.max(1);
        let base = (mix(key) as usize & self.set_mask) * RATE_TABLE_WAYS;
        let ways = base..base + RATE_TABLE_WAYS;
        // A lost race for a slot just means looking again; bounded, then fail open.
        for _ in 0..4 {
            if let Some(i) = ways
                .clone()
                .find(|&i| self.keys[i].load(Ordering::Relaxed) == key)
            {
                return decide(&self.tats[i], p, now_nanos);
            }
            // Claim an empty or idle (full) slot, else the one closest to full.
            let mut victim = base;
            let mut victim_tat = u64::MAX;
            for i in ways.clone() {
                let t = if self.keys[i].load(Ordering::Relaxed) == 0 {
                    0
                } else {
                    self.tats[i].load(Ordering::Relaxed)
                };
                if t < victim_tat {
                    victim = i;
                    victim_tat = t;
                }
            }
            let old = self.keys[victim].load(Ordering::Relaxed);
            if self.keys[victim]
                .compare_exchange(old, key, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                if victim_tat > now_nanos {
                    self.busy_evictions.fetch_add(1, Ordering::Relaxed);
                }
                self.tats[victim].store(0, Ordering::Relaxed);
                return decide(&self.tats[victim], p, now_nanos);
            }
        }
        RateDecision::Allowed
    }

    /// Keys currently holding a bucket that is still refilling (for /status).
    pub fn active(&self, now_nanos: u64) -> usize {
        self.keys
            .iter()
            .zip(self.tats.iter())
            .filter(|(k, t)| {
                k.load(Ordering::Relaxed) != 0 && t.load(Ordering::Relaxed) > now_nanos
            })
            .count()
    }
}

fn decide(tat: &AtomicU64, p: &RateParams, now: u64) -> RateDecision {
    match take(tat, p, now) {
        Ok(()) => RateDecision::Allowed,
        Err(wait) => RateDecision::Limited(wait),
    }
}

/// Spread the key's bits before taking the set index (keys may be raw IPv4 addresses).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

#[cfg(test)]
mod tests;
