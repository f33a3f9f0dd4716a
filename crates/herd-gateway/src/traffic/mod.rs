//! Traffic control on the request path (seed 004): rate limits, per-server connection
//! limits with a bounded queue, circuit breakers, CIDR ACLs and time windows, body size
//! limits and per-IP connection limits. The state machines are herd-balance's (atomics,
//! time as an argument); this module wires them to requests, responses and metrics.
//!
//! Zero cost when unused: a route, group or listener with nothing configured carries
//! `None` and the request path checks one `Option`.

use crate::clock;
use herd_balance::{
    hash64, Admission, BreakerParams, BreakerState, CircuitBreaker, KeyedCounter, RateBucket,
    RateDecision, RateParams, RateTable,
};
use herd_config::traffic::{IpAcl, RateKey, TimeWindow};
use herd_config::{Listener, Route};
use herd_telemetry::Counter;
use http::StatusCode;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use tokio::sync::Notify;

/// Buckets per route with a keyed rate limit: 16 bytes each, so 256 KiB per route, however
/// many clients. A bucket is reusable once full again (`burst / per_second` after its last
/// request), so this holds every client active within that time up to 16 384 (8 per set).
pub const RATE_TABLE_SLOTS: usize = 16_384;

/// Client IPs with open connections tracked per listener with `max_conns_per_ip`: 8 bytes
/// each, 512 KiB per listener.
pub const PER_IP_TABLE_SLOTS: usize = 65_536;

// ---------------------------------------------------------------- route rules

/// Why a request is answered before any server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// ACL or time window: 403.
    Forbidden(&'static str),
    /// Rate limit: 429 with Retry-After (whole seconds until a token, at least 1).
    RateLimited { retry_after_s: u64 },
    /// Body over max_body_size: 413.
    TooLarge,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
    pub fn body(self) -> &'static str {
        match self {
            Refusal::Forbidden(why) => why,
            Refusal::RateLimited { .. } => "rate limit exceeded, retry later\n",
            Refusal::TooLarge => "request body too large\n",
        }
    }
}

pub(crate) enum Rate {
    /// One bucket for the route: a single atomic shared by every worker.
    Route(RateBucket),
    Keyed(RateTable),
}

/// A route's own rules (and its listener's body limit), built with the snapshot.
pub struct RouteGuard {
    pub(crate) acl: IpAcl,
    pub(crate) hours: Option<TimeWindow>,
    pub(crate) rate: Option<(Rate, RateParams, RateKey)>,
    /// Route's max_body_size, else the listener's.
    pub max_body: Option<u64>,
    pub rate_limited: Counter,
    /// Refused by the route's allow/deny lists.
    pub forbidden: Counter,
    /// Refused by the route's `hours`.
    pub outside_hours: Counter,
    pub too_large: Counter,
}

impl RouteGuard {
    /// None when the route and its listener configure nothing it checks.
    pub fn build(route: &Route, listener: &Listener) -> Option<RouteGuard> {
        let t = &route.traffic;
        let max_body = t.max_body_size.or(listener.traffic.max_body_size);
        if t.rate_limit.is_none() && t.acl.is_empty() && t.hours.is_none() && max_body.is_none() {
            return None;
        }
        let rate = t.rate_limit.as_ref().map(|rl| {
            let params = RateParams::new(rl.per_second, rl.burst);
            let state = match rl.key {
                RateKey::Route => Rate::Route(RateBucket::new()),
                _ => Rate::Keyed(RateTable::new(RATE_TABLE_SLOTS)),
            };
            (state, params, rl.key.clone())
        });
        Some(RouteGuard {
            acl: t.acl.clone(),
            hours: t.hours,
            rate,
            max_body,
            rate_limited: Counter::new(),
            forbidden: Counter::new(),
            outside_hours: Counter::new(),
            too_large: Counter::new(),
        })
    }

    /// The route's rules in order: ACL, time window, declared body size, rate limit (last,
    /// so a refused request spends no token).
    pub fn check(&self, parts: &http::request::Parts, client: IpAddr) -> Result<(), Refusal> {
        if !self.acl.is_empty() && !self.acl.permits(client) {
            self.forbidden.inc();
            return Err(Refusal::Forbidden(
                "forbidden: your address may not use this route\n",
            ));
        }
        if let Some(h) = &self.hours {
            if !h.contains(clock::unix_ms()) {
                self.outside_hours.inc();
                return Err(Refusal::Forbidden(
                    "forbidden: this route is closed at this time of day\n",
                ));
            }
        }
        if let Some(max) = self.max_body {
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                self.too_large.inc();
                return Err(Refusal::TooLarge);
            }
        }
        if let Some((rate, params, key)) = &self.rate {
            let now = clock::now_nanos();
            let decision = match rate {
                Rate::Route(bucket) => match bucket.try_take(params, now) {
                    Ok(()) => RateDecision::Allowed,
                    Err(wait) => RateDecision::Limited(wait),
                },
                Rate::Keyed(table) => {
                    let k = match key {
                        RateKey::Header(name) => parts
                            .headers
                            .get(name.as_str())
                            .map_or_else(|| ip_key(client), |v| hash64(v.as_bytes()) ^ 0x5bd1),
                        _ => ip_key(client),
                    };
                    table.try_take(k, params, now)
                }
            };
            if let RateDecision::Limited(wait) = decision {
                self.rate_limited.inc();
                return Err(Refusal::RateLimited {
                    retry_after_s: wait.div_ceil(1_000_000_000).max(1),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn describe(&self) -> Value {
        json!({
            "rate_limit": self.rate.as_ref().map(|(_, p, k)| json!({
                "key": k.describe(),
                "interval_ms": p.interval_nanos() as f64 / 1e6,
            })),
            "max_body_size": self.max_body,
            "rate_limited": self.rate_limited.get(),
            "forbidden": self.forbidden.get(),
            "outside_hours": self.outside_hours.get(),
            "too_large": self.too_large.get(),
        })
    }
}

/// The listener's CIDR rules: deny wins, an allow list closes everything else.
pub fn listener_permits(listener: &Listener, ip: IpAddr) -> bool {
    let acl = &listener.traffic.acl;
    acl.is_empty() || acl.permits(ip)
}

// ---------------------------------------------------------------- circuit breaker

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

// ---------------------------------------------------------------- per-server limit + queue

/// `max_conns_per_server` and its queue, per backend group (all workers together).
pub struct ConnLimit {
    pub max: u32,
    pub queue: Option<herd_config::traffic::ConnQueue>,
    pub(crate) waiting: AtomicU32,
    pub(crate) notify: Notify,
    pub timeouts: Counter,
    pub full: Counter,
}

impl ConnLimit {
    pub fn new(t: &herd_config::traffic::BackendTraffic) -> Option<ConnLimit> {
        Some(ConnLimit {
            max: t.max_conns_per_server?,
            queue: t.queue.clone(),
            waiting: AtomicU32::new(0),
            notify: Notify::new(),
            timeouts: Counter::new(),
            full: Counter::new(),
        })
    }

    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A slot was given back: the longest waiter (tokio's Notify is FIFO) tries again.
    pub fn released(&self) {
        if self.queue.is_some() {
            self.notify.notify_one();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotFailure {
    /// No usable server at all (not a matter of load).
    NoServer,
    /// Every eligible server is full and the queue is full (or there is none).
    QueueFull,
    /// Waited the queue's timeout without a slot.
    QueueTimeout,
}

// ---------------------------------------------------------------- per-IP connections

/// Per-listener traffic counters; they live in `Shared` (the listener set is fixed).
#[derive(Default)]
pub struct ListenerTrafficStats {
    /// Created on the first connection that needs it.
    pub(crate) per_ip: OnceLock<KeyedCounter>,
    /// Connections closed because their IP already had max_conns_per_ip.
    pub per_ip_rejected: Counter,
    /// Connections (tcp) or requests (http) refused by the listener's allow/deny lists.
    pub denied: Counter,
    /// Connections admitted uncounted because the per-IP table was full (fail open).
    pub per_ip_untracked: Counter,
    /// http: connections closed because a request head took over header_read_timeout.
    pub header_timeouts: Counter,
    /// http: requests refused 400 for a missing, repeated, invalid or conflicting Host.
    pub bad_host: Counter,
}

/// The source_ip policy's key: an IPv4 client hashes the same over IPv4 and dual-stack.
pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash64(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash64(&v4.octets()),
            None => hash64(&v6.octets()),
        },
    }
}

#[cfg(test)]
mod tests;
