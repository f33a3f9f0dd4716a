//! Health state machines: active checks (rise/fall) and passive ejection from real traffic.
//!
//! Both only count and compare; the data plane runs the probes, reads the clock, and turns the
//! resulting states into [`crate::ServerLoad::set_usable`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    Healthy,
    Unhealthy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    WentDown,
    CameUp,
}

/// Active-check state machine with HAProxy rise/fall semantics. Starts Healthy, so that a
/// freshly configured server takes traffic before its first probe completes.
///
/// Owned by the single task probing the server, hence `&mut self` and no atomics.
#[derive(Clone, Debug)]
pub struct HealthTracker {
    fall: u32,
    rise: u32,
    state: HealthState,
    failures: u32,
    successes: u32,
}

impl HealthTracker {
    /// `unhealthy_threshold` (fall) consecutive failures take a healthy server down;
    /// `healthy_threshold` (rise) consecutive successes bring it back. 0 is treated as 1.
    pub fn new(unhealthy_threshold: u32, healthy_threshold: u32) -> Self {
        HealthTracker {
            fall: unhealthy_threshold.max(1),
            rise: healthy_threshold.max(1),
            state: HealthState::Healthy,
            failures: 0,
            successes: 0,
        }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Feed one probe result; returns the transition it caused, if any. The streak counters
    /// keep counting past a transition (they describe the probes, not the state).
    pub fn record(&mut self, success: bool) -> Option<Transition> {
        if success {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.state == HealthState::Unhealthy && self.successes >= self.rise {
                self.state = HealthState::Healthy;
                return Some(Transition::CameUp);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.state == HealthState::Healthy && self.failures >= self.fall {
                self.state = HealthState::Unhealthy;
                return Some(Transition::WentDown);
            }
        }
        None
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }
}

/// Passive ejection from real traffic, shared by all worker threads (atomics).
///
/// `state` packs `ejected_until_ms << 1 | released`: 0 means in normal service; otherwise the
/// server is ejected until that time and on trial afterwards. `released` is set once someone
/// observed the cool-down over (via [`PassiveEjector::is_ejected`], which the data plane must
/// consult before sending traffic), so that a success can tell a request sent during the trial
/// from a straggler sent before the ejection — without being given the time.
/// One word means one CAS decides every race between ejecting, re-ejecting and reinstating.
#[derive(Debug)]
pub struct PassiveEjector {
    threshold: u32,
    cooldown_ms: u64,
    streak: AtomicU32,
    state: AtomicU64,
}

const RELEASED: u64 = 1;
const MAX_UNTIL_MS: u64 = u64::MAX >> 1;

impl PassiveEjector {
    /// Eject after `consecutive_failures` failures in a row (0 = never) for `cooldown_ms`.
    pub fn new(consecutive_failures: u32, cooldown_ms: u64) -> Self {
        PassiveEjector {
            threshold: consecutive_failures,
            cooldown_ms,
            streak: AtomicU32::new(0),
            state: AtomicU64::new(0),
        }
    }

    fn ejected_state(&self, now_ms: u64) -> u64 {
        // Never 0, which would read as "in service" (now 0 with no cool-down).
        now_ms
            .saturating_add(self.cooldown_ms)
            .clamp(1, MAX_UNTIL_MS)
            << 1
    }

    /// Resets the failure streak; a server on trial after its cool-down is fully back.
    pub fn on_success(&self) {
        self.streak.store(0, Ordering::Relaxed);
        let s = self.state.load(Ordering::Relaxed);
        if s & RELEASED != 0 {
            // Fails only if a concurrent failure re-ejected it, which then wins.
            let _ = self
                .state
                .compare_exchange(s, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Count a failure; true if THIS failure ejected the server (exactly one caller sees true
    /// per ejection, so it can log it once).
    pub fn on_failure(&self, now_ms: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s != 0 {
                if now_ms < s >> 1 {
                    // A straggler sent before the ejection; it says nothing new.
                    return false;
                }
                // Cool-down over: on trial, one failure is enough.
                match self.state.compare_exchange(
                    s,
                    self.ejected_state(now_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.streak.store(0, Ordering::Relaxed);
                        return true;
                    }
                    Err(actual) => {
                        s = actual;
                        continue;
                    }
                }
            }
            let streak = self
                .streak
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if streak < self.threshold {
                return false;
            }
            return match self.state.compare_exchange(
                0,
                self.ejected_state(now_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.streak.store(0, Ordering::Relaxed);
                    true
                }
                // Another thread's failure ejected it first.
                Err(_) => false,
            };
        }
    }

    /// Ejected and the cool-down not yet over.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        if s == 0 {
            return false;
        }
        if now_ms < s >> 1 {
            return true;
        }
        if s & RELEASED == 0 {
            // Lost race means a concurrent re-ejection or reinstatement, both fine as they are.
            let _ =
                self.state
                    .compare_exchange(s, s | RELEASED, Ordering::Relaxed, Ordering::Relaxed);
        }
        false
    }

    /// End of the current or last cool-down; 0 when in normal service. While on trial (after
    /// the cool-down, before the next success) it still returns that past deadline.
    pub fn ejected_until_ms(&self) -> u64 {
        self.state.load(Ordering::Relaxed) >> 1
    }

    /// Current run of consecutive failures (reset by a success and by an ejection).
    pub fn consecutive_failures(&self) -> u32 {
        self.streak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
