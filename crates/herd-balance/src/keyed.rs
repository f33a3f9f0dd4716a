//! Open connections per client IP, counted by every worker thread in one fixed-size
//! table of atomics (`max_conns_per_ip`). Each slot is one `AtomicU64`: a 40-bit tag of the
//! key and a 24-bit count, so claiming a slot and counting in it is a single
//! compare-and-swap. A slot whose count is 0 is free: no eviction pass is ever needed.

use std::sync::atomic::{AtomicU64, Ordering};

const WAYS: usize = 8;
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The outcome of [`KeyedCounter::acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyedAcquire {
    /// Counted in this slot: give it back with [`KeyedCounter::release`].
    Counted(usize),
    /// The key already holds `max`.
    OverLimit,
    /// Every slot of the key's set belongs to other keys with open connections. The caller
    /// decides (the gateway admits the connection uncounted: fail open).
    TableFull,
}

#[derive(Debug)]
pub struct KeyedCounter {
    slots: Box<[AtomicU64]>,
    set_mask: usize,
}

impl KeyedCounter {
    /// `slots` rounded up to a power of two, at least one set of 8.
    pub fn new(slots: usize) -> KeyedCounter {
        let slots = slots.max(WAYS).next_power_of_two();
        KeyedCounter {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            set_mask: slots / WAYS - 1,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    fn place(&self, key: u64) -> (usize, u64) {
        let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let set = (mixed >> 32) as usize & self.set_mask;
        (set * WAYS, mixed >> COUNT_BITS)
    }

    /// Count one more connection for `key` unless it already has `max`.
    pub fn acquire(&self, key: u64, max: u32) -> KeyedAcquire {
        let (base, tag) = self.place(key);
        for _ in 0..8 {
            let mut free = None;
            let mut found = None;
            for i in base..base + WAYS {
                let v = self.slots[i].load(Ordering::Relaxed);
                if v & COUNT_MASK == 0 {
                    free.get_or_insert((i, v));
                } else if v >> COUNT_BITS == tag {
                    found = Some((i, v));
                    break;
                }
            }
            let (i, v, next) = match (found, free) {
                (Some((i, v)), _) => {
                    if v & COUNT_MASK >= u64::from(max).min(COUNT_MASK) {
                        return KeyedAcquire::OverLimit;
                    }
                    (i, v, v + 1)
                }
                (None, Some((i, v))) => (i, v, tag << COUNT_BITS | 1),
                (None, None) => return KeyedAcquire::TableFull,
            };
            if self.slots[i]
                .compare_exchange(v, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return KeyedAcquire::Counted(i);
            }
        }
        KeyedAcquire::TableFull
    }

    /// Give back a slot from [`KeyedAcquire::Counted`].
    pub fn release(&self, slot: usize) {
        if let Some(s) = self.slots.get(slot) {
            let _ = s.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v & COUNT_MASK > 0).then(|| v - 1)
            });
        }
    }

    /// Open connections counted for `key`.
    pub fn count(&self, key: u64) -> u32 {
        let (base, tag) = self.place(key);
        self.slots[base..base + WAYS]
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .find(|v| v & COUNT_MASK != 0 && v >> COUNT_BITS == tag)
            .map_or(0, |v| (v & COUNT_MASK) as u32)
    }

    /// Keys with at least one open connection.
    pub fn keys(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) & COUNT_MASK != 0)
            .count()
    }
}

#[cfg(test)]
mod tests;
