//! What to do when an instance's process exits on its own: restart it after a delay that
//! doubles with each crash (so a crash loop does not spin), and give up — Failed — once
//! it has crashed more than `attempts` times within `interval`, rather than retry forever.

use crate::manifest::RestartPolicy;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this long.
    RestartAfter(Duration),
    /// Stop trying: the instance is Failed.
    Failed { crashes: u32 },
}

/// The crashes of one instance that still count: those within the policy's interval.
#[derive(Debug, Clone, Default)]
pub struct Crashes {
    at_ms: VecDeque<u64>,
    /// Restarts made so far, over the instance's life (shown in status).
    pub restarts: u32,
}

impl Crashes {
    /// Record a crash at `now_ms` and decide. The delay is `delay × 2^(n-1)` for the n-th
    /// crash within the interval, at most `max_delay`; crash `attempts + 1` is Failed.
    pub fn on_exit(&mut self, policy: &RestartPolicy, now_ms: u64) -> Decision {
        let window = policy.interval.as_millis() as u64;
        while self
            .at_ms
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= window)
        {
            self.at_ms.pop_front();
        }
        self.at_ms.push_back(now_ms);
        let n = self.at_ms.len() as u32;
        if n > policy.attempts {
            return Decision::Failed { crashes: n };
        }
        self.restarts += 1;
        Decision::RestartAfter(backoff(policy, n))
    }

    /// Crashes still counted against the limit.
    pub fn recent(&self) -> usize {
        self.at_ms.len()
    }
}

/// The delay before the n-th restart (n >= 1) within the interval.
pub fn backoff(policy: &RestartPolicy, n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(32);
    policy
        .delay
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            attempts: 5,
            interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = policy();
        let got: Vec<u64> = (1..=7).map(|n| backoff(&p, n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(&p, u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn too_many_crashes_within_the_interval_fail() {
        let p = policy();
        let mut c = Crashes::default();
        let mut t = 0;
        for want in [1, 2, 4, 8, 16] {
            assert_eq!(
                c.on_exit(&p, t),
                Decision::RestartAfter(Duration::from_secs(want))
            );
            t += 1_000;
        }
        assert_eq!(c.on_exit(&p, t), Decision::Failed { crashes: 6 });
        assert_eq!(c.restarts, 5);
    }

    #[test]
    fn crashes_older_than_the_interval_stop_counting() {
        let p = policy();
        let mut c = Crashes::default();
        // Five crashes ten seconds apart, then a quiet minute: the slate is clean.
        for i in 0..5 {
            assert!(matches!(
                c.on_exit(&p, i * 10_000),
                Decision::RestartAfter(_)
            ));
        }
        let later = 40_000 + 60_000;
        assert_eq!(
            c.on_exit(&p, later),
            Decision::RestartAfter(Duration::from_secs(1))
        );
        assert_eq!(c.recent(), 1);
        // Exactly one interval after a crash, that crash no longer counts.
        let mut c = Crashes::default();
        c.on_exit(&p, 0);
        c.on_exit(&p, 60_000);
        assert_eq!(c.recent(), 1);
    }

    #[test]
    fn zero_attempts_means_never_restart() {
        let p = RestartPolicy {
            attempts: 0,
            ..policy()
        };
        assert_eq!(
            Crashes::default().on_exit(&p, 5),
            Decision::Failed { crashes: 1 }
        );
    }
}
