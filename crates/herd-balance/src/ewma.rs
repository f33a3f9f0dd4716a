//! Peak-EWMA latency estimate (Finagle / Linkerd style), lock-free.
//!
//! The estimate and the time it was last updated must change together: decaying an estimate
//! over the wrong interval makes a slow server look fast or the reverse. A 128-bit atomic is not
//! available on stable Rust, so both are packed into one `AtomicU64` and updated by CAS:
//! - low 28 bits: the estimate in whole microseconds (1 ..= 268.4 s, saturating). Latency
//!   differences below a microsecond never matter for picking a server, and 0 is reserved for
//!   "no sample yet";
//! - high 36 bits: the time of the last update in units of 2^20 ns (~1.05 ms), modulo 2^36
//!   (~2.2 years). At a 10 s time constant a millisecond of quantisation changes the decay by
//!   about 0.01 %.

use std::sync::atomic::{AtomicU64, Ordering};

/// Time constant of the decay: after `tau` without samples an estimate keeps ~37 % of its value.
pub const EWMA_TAU_NANOS: u64 = 10_000_000_000;

/// Latency assumed for a server that has no sample yet, so that new or long-idle servers look
/// reasonably attractive and get tried instead of being starved by servers that have history.
pub const DEFAULT_RTT_NANOS: u64 = 1_000_000;

const EST_BITS: u32 = 28;
const EST_MASK: u64 = (1 << EST_BITS) - 1;
const TIME_SHIFT: u32 = 20;
const TIME_BITS: u32 = 64 - EST_BITS;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Stamps further apart than half the wrap period are read as "now is before the stamp".
const TIME_HALF: u64 = 1 << (TIME_BITS - 1);

#[derive(Debug, Default)]
pub(crate) struct PeakEwma {
    packed: AtomicU64,
}

fn stamp_of(now_nanos: u64) -> u64 {
    (now_nanos >> TIME_SHIFT) & TIME_MASK
}

/// Elapsed nanoseconds from `from` to `to` (stamps), or None when `to` is before `from`:
/// worker threads read the clock independently, so a sample may arrive stamped slightly
/// earlier than the last update made by another thread.
fn elapsed_nanos(from: u64, to: u64) -> Option<u64> {
    let d = to.wrapping_sub(from) & TIME_MASK;
    if d >= TIME_HALF {
        None
    } else {
        Some(d << TIME_SHIFT)
    }
}

fn decay(elapsed_nanos: u64) -> f64 {
    (-(elapsed_nanos as f64) / EWMA_TAU_NANOS as f64).exp()
}

impl PeakEwma {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn observe(&self, rtt_nanos: u64, now_nanos: u64) {
        let sample = (rtt_nanos.saturating_add(500) / 1000).clamp(1, EST_MASK);
        let now = stamp_of(now_nanos);
        // Relaxed: the word is self-contained; no other memory is published through it.
        let mut cur = self.packed.load(Ordering::Relaxed);
        loop {
            let next = if cur == 0 {
                (now << EST_BITS) | sample
            } else {
                let (stamp, est) = (cur >> EST_BITS, cur & EST_MASK);
                let (stamp, elapsed) = match elapsed_nanos(stamp, now) {
                    Some(e) => (now, e),
                    None => (stamp, 0),
                };
                // Peak sensitivity: a slow response is believed at once, so a server that starts
                // struggling sheds traffic immediately; recovery is only trusted gradually.
                let est = if sample >= est {
                    sample
                } else {
                    let w = decay(elapsed);
                    let v = est as f64 * w + sample as f64 * (1.0 - w);
                    (v.round() as u64).clamp(1, EST_MASK)
                };
                (stamp << EST_BITS) | est
            };
            match self
                .packed
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The estimate decayed toward zero as if idle since the last sample; 0 means no sample.
    ///
    /// Decaying on read (without storing) is what lets a server that was slow once be retried
    /// after a while: with no traffic there would never be a new sample to correct it.
    pub(crate) fn estimate_nanos(&self, now_nanos: u64) -> u64 {
        let cur = self.packed.load(Ordering::Relaxed);
        if cur == 0 {
            return 0;
        }
        let (stamp, est) = (cur >> EST_BITS, cur & EST_MASK);
        let elapsed = elapsed_nanos(stamp, stamp_of(now_nanos)).unwrap_or(0);
        ((est * 1000) as f64 * decay(elapsed)).round() as u64
    }
}

#[cfg(test)]
mod tests;
