//! A backend group's circuit breaker and its counters.

use crate::clock;
use herd_balance::{Admission, BreakerParams, BreakerState, CircuitBreaker};
use herd_telemetry::Counter;

/// A backend group's breaker with its counters; carried across reloads while its settings
/// stay the same.
pub struct GroupBreaker {
    pub settings: herd_config::traffic::CircuitBreaker,
    pub(crate) breaker: CircuitBreaker,
    /// Transitions into closed, open, half-open.
    pub(crate) transitions: [Counter; 3],
    pub rejected: Counter,
}

impl GroupBreaker {
    pub fn new(settings: &herd_config::traffic::CircuitBreaker) -> GroupBreaker {
        GroupBreaker {
            breaker: CircuitBreaker::new(BreakerParams {
                consecutive_failures: settings.consecutive_failures,
                error_rate: settings.error_rate,
                min_requests: settings.min_requests,
                window_ms: settings.window.as_millis() as u64,
                open_for_ms: settings.open_for.as_millis() as u64,
                half_open_probes: settings.half_open_probes,
            }),
            settings: settings.clone(),
            transitions: Default::default(),
            rejected: Counter::new(),
        }
    }

    fn moved(&self, backend: &str, to: Option<BreakerState>) {
        if let Some(s) = to {
            self.transitions[s as usize].inc();
            match s {
                BreakerState::Open => {
                    tracing::warn!(backend, "circuit breaker opened: failing fast")
                }
                _ => tracing::info!(backend, state = s.as_str(), "circuit breaker"),
            }
        }
    }

    pub fn admit(&self, backend: &str) -> Admission {
        let (a, moved) = self.breaker.admit(clock::now_ms());
        self.moved(backend, moved);
        if a == Admission::Reject {
            self.rejected.inc();
        }
        a
    }

    pub fn record(&self, backend: &str, admission: Admission, success: bool) {
        let moved = self.breaker.record(admission, success, clock::now_ms());
        self.moved(backend, moved);
    }

    pub fn state(&self) -> BreakerState {
        self.breaker.state()
    }
}
