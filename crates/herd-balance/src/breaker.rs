//! Circuit breaker (Hystrix's, per backend group): closed → open on too many failures,
//! open → half-open after a rest, half-open → closed after enough successful probes or
//! back to open on a failed one.
//!
//! All state that decides a transition is one `AtomicU64` (state, probe counts and the
//! time the state began), so every transition is a single compare-and-swap and exactly
//! one caller sees it. The failure window is a ring of atomic slots. Time (`now_ms`) is an
//! argument.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What opens a breaker and how it recovers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerParams {
    /// Failures in a row; 0 = off.
    pub consecutive_failures: u32,
    /// Failure ratio over the window; None = off.
    pub error_rate: Option<f64>,
    /// Requests the window must hold before `error_rate` may trip it.
    pub min_requests: u32,
    pub window_ms: u64,
    pub open_for_ms: u64,
    /// 1-255.
    pub half_open_probes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// The breaker's answer to "may this request go to the backend?". Give it back to
/// [`CircuitBreaker::record`] with the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: counted in the window.
    Pass,
    /// Half-open: one of the probes (tagged with the half-open episode it belongs to).
    Probe(u64),
    /// Open, or half-open with every probe out: fail fast.
    Reject,
}

/// Slots in the failure window: it slides in steps of `window / WINDOW_SLOTS`.
pub const WINDOW_SLOTS: usize = 10;

const STATE_SHIFT: u32 = 62;
const ISSUED_SHIFT: u32 = 54;
const OK_SHIFT: u32 = 46;
const SINCE_MASK: u64 = (1 << 46) - 1;
const COUNT_BITS: u32 = 21;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << 22) - 1;

fn pack(state: BreakerState, issued: u64, ok: u64, since_ms: u64) -> u64 {
    (state as u64) << STATE_SHIFT
        | (issued & 0xff) << ISSUED_SHIFT
        | (ok & 0xff) << OK_SHIFT
        | (since_ms & SINCE_MASK)
}

fn state_of(w: u64) -> BreakerState {
    match w >> STATE_SHIFT {
        1 => BreakerState::Open,
        2 => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

fn issued_of(w: u64) -> u64 {
    (w >> ISSUED_SHIFT) & 0xff
}

fn ok_of(w: u64) -> u64 {
    (w >> OK_SHIFT) & 0xff
}

fn since_of(w: u64) -> u64 {
    w & SINCE_MASK
}

#[derive(Debug)]
pub struct CircuitBreaker {
    params: BreakerParams,
    word: AtomicU64,
    streak: AtomicU32,
    /// Each: epoch (22 bits) | requests (21) | failures (21).
    window: [AtomicU64; WINDOW_SLOTS],
    slot_ms: u64,
}

impl CircuitBreaker {
    pub fn new(mut params: BreakerParams) -> CircuitBreaker {
        params.half_open_probes = params.half_open_probes.clamp(1, 255);
        CircuitBreaker {
            slot_ms: (params.window_ms / WINDOW_SLOTS as u64).max(1),
            params,
            word: AtomicU64::new(pack(BreakerState::Closed, 0, 0, 0)),
            streak: AtomicU32::new(0),
            window: Default::default(),
        }
    }

    pub fn params(&self) -> &BreakerParams {
        &self.params
    }

    /// The state as stored (an open breaker whose rest is over still reads Open until the
    /// next request turns it half-open).
    pub fn state(&self) -> BreakerState {
        state_of(self.word.load(Ordering::Relaxed))
    }

    /// Current run of failures while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.streak.load(Ordering::Relaxed)
    }

    /// (requests, failures) in the window ending at `now_ms`.
    pub fn window_counts(&self, now_ms: u64) -> (u64, u64) {
        let cur = (now_ms / self.slot_ms) & EPOCH_MASK;
        self.window.iter().fold((0, 0), |(r, f), slot| {
            let v = slot.load(Ordering::Relaxed);
            let epoch = v >> (2 * COUNT_BITS);
            if cur.wrapping_sub(epoch) & EPOCH_MASK < WINDOW_SLOTS as u64 {
                (r + ((v >> COUNT_BITS) & COUNT_MAX), f + (v & COUNT_MAX))
            } else {
                (r, f)
            }
        })
    }

    /// May a request go through? The second value is the state this call moved the
    /// breaker to, if it did (open → half-open).
    pub fn admit(&self, now_ms: u64) -> (Admission, Option<BreakerState>) {
        let probes = u64::from(self.params.half_open_probes);
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            let (next, admission, moved) = match state_of(w) {
                BreakerState::Closed => return (Admission::Pass, None),
                BreakerState::Open => {
                    if now_ms < since_of(w).saturating_add(self.params.open_for_ms) {
                        return (Admission::Reject, None);
                    }
                    let next = pack(BreakerState::HalfOpen, 1, 0, now_ms);
                    (
                        next,
                        Admission::Probe(since_of(next)),
                        Some(BreakerState::HalfOpen),
                    )
                }
                BreakerState::HalfOpen => {
                    if issued_of(w) < probes {
                        (w + (1 << ISSUED_SHIFT), Admission::Probe(since_of(w)), None)
                    } else if now_ms >= since_of(w).saturating_add(self.params.open_for_ms) {
                        // Every probe went out and none came back within a rest period
                        // (their clients hung up): start a new round rather than stay stuck.
                        let next = pack(BreakerState::HalfOpen, 1, 0, now_ms);
                        (next, Admission::Probe(since_of(next)), None)
                    } else {
                        return (Admission::Reject, None);
                    }
                }
            };
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (admission, moved),
                Err(actual) => w = actual,
            }
        }
    }

    /// The outcome of an admitted request. Returns the state this call moved the breaker
    /// to, if it did. Outcomes of requests admitted under an earlier state are ignored.
    pub fn record(&self, admission: Admission, success: bool, now_ms: u64) -> Option<BreakerState> {
        match admission {
            Admission::Reject => None,
            Admission::Pass => self.record_closed(success, now_ms),
            Admission::Probe(episode) => self.record_probe(episode, success, now_ms),
        }
    }

    fn record_closed(&self, success: bool, now_ms: u64) -> Option<BreakerState> {
        let w = self.word.load(Ordering::Relaxed);
        if state_of(w) != BreakerState::Closed {
            return None;
        }
        self.count(success, now_ms);
        if success {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self
            .streak
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let p = &self.params;
        let by_streak = p.consecutive_failures > 0 && streak >= p.consecutive_failures;
        let by_rate = p.error_rate.is_some_and(|rate| {
            let (requests, failures) = self.window_counts(now_ms);
            requests >= u64::from(p.min_requests) && failures as f64 >= rate * requests as f64
        });
        if !(by_streak || by_rate) {
            return None;
        }
        self.word
            .compare_exchange(
                w,
                pack(BreakerState::Open, 0, 0, now_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| {
                self.streak.store(0, Ordering::Relaxed);
                BreakerState::Open
            })
    }

    fn record_probe(&self, episode: u64, success: bool, now_ms: u64) -> Option<BreakerState> {
        let probes = u64::from(self.params.half_open_probes);
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if state_of(w) != BreakerState::HalfOpen || since_of(w) != episode {
                return None;
            }
            let (next, moved) = if !success {
                (
                    pack(BreakerState::Open, 0, 0, now_ms),
                    Some(BreakerState::Open),
                )
            } else if ok_of(w) + 1 >= probes {
                (
                    pack(BreakerState::Closed, 0, 0, now_ms),
                    Some(BreakerState::Closed),
                )
            } else {
                (w + (1 << OK_SHIFT), None)
            };
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if moved == Some(BreakerState::Closed) {
                        // A fresh start: the failures that opened it are history.
                        self.streak.store(0, Ordering::Relaxed);
                        for slot in &self.window {
                            slot.store(0, Ordering::Relaxed);
                        }
                    }
                    return moved;
                }
                Err(actual) => w = actual,
            }
        }
    }

    fn count(&self, success: bool, now_ms: u64) {
        let epoch = (now_ms / self.slot_ms) & EPOCH_MASK;
        let slot = &self.window[(now_ms / self.slot_ms) as usize % WINDOW_SLOTS];
        let failure = u64::from(!success);
        let mut v = slot.load(Ordering::Relaxed);
        loop {
            let next = if v >> (2 * COUNT_BITS) != epoch {
                epoch << (2 * COUNT_BITS) | 1 << COUNT_BITS | failure
            } else if (v >> COUNT_BITS) & COUNT_MAX == COUNT_MAX {
                // Saturated: over two million requests in one slot; the ratio stands.
                return;
            } else {
                v + (1 << COUNT_BITS) + failure
            };
            match slot.compare_exchange_weak(v, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => v = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests;
