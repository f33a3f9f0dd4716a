//! Traffic-control settings (seed 004: rate limiting, degradation, circuit breaking,
//! connection limits, ACLs), validated. Each struct hangs off the listener, route or
//! backend it belongs to as one `traffic` field; all-default means "not configured", and
//! the data plane then skips the feature entirely.

pub use crate::cidr::{Cidr, IpAcl};
use std::time::Duration;

/// Listener-level rules: checked for every connection (tcp) or request (http).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListenerTraffic {
    /// CIDR allow/deny of the client address (after PROXY protocol).
    pub acl: IpAcl,
    /// Open connections one client IP may hold on this listener, all workers together.
    pub max_conns_per_ip: Option<u32>,
    /// http: request bodies larger than this are refused with 413 (a route's own limit wins).
    pub max_body_size: Option<u64>,
    /// http: once the first byte of a request head has arrived, the rest of the head must
    /// arrive within this (slowloris). Never longer than the listener's idle_timeout.
    pub header_read_timeout: Duration,
}

/// Route-level rules, checked after the route matched and before any server is picked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTraffic {
    pub rate_limit: Option<RateLimit>,
    pub acl: IpAcl,
    pub hours: Option<TimeWindow>,
    pub max_body_size: Option<u64>,
}

/// Backend-level rules: shared by every route and worker that uses the group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendTraffic {
    /// Requests one server may have in flight (HAProxy `maxconn`).
    pub max_conns_per_server: Option<u32>,
    /// Where requests wait when every eligible server is at `max_conns_per_server`.
    pub queue: Option<ConnQueue>,
    pub circuit_breaker: Option<CircuitBreaker>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateKey {
    /// One bucket per client IP (the real one, after PROXY protocol).
    ClientIp,
    /// One bucket per value of this header (lower-case name); requests without the header
    /// are keyed by client IP, so leaving it out does not escape the limit.
    Header(String),
    /// One bucket for the whole route.
    Route,
}

impl RateKey {
    pub fn describe(&self) -> String {
        match self {
            RateKey::ClientIp => "client_ip".into(),
            RateKey::Header(h) => format!("header:{h}"),
            RateKey::Route => "route".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    pub key: RateKey,
    /// Sustained rate: tokens added per second.
    pub per_second: f64,
    /// Bucket size: requests that may pass at once after a quiet period.
    pub burst: u32,
}

/// A daily window of local time, e.g. 08:00-18:00 at +08:00. `from > to` wraps midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Minutes after local midnight, inclusive.
    pub from_min: u32,
    /// Minutes after local midnight, exclusive (1440 = end of day).
    pub to_min: u32,
    /// Local time minus UTC, in minutes.
    pub utc_offset_min: i32,
}

impl TimeWindow {
    /// Is this instant (Unix milliseconds) inside the window?
    pub fn contains(&self, unix_ms: u64) -> bool {
        let local_s = (unix_ms / 1000) as i64 + i64::from(self.utc_offset_min) * 60;
        let minute = (local_s.rem_euclid(86_400) / 60) as u32;
        if self.from_min < self.to_min {
            (self.from_min..self.to_min).contains(&minute)
        } else {
            minute >= self.from_min || minute < self.to_min
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnQueue {
    /// Requests that may wait at once (per backend, all workers together).
    pub max: u32,
    /// How long one may wait for a server slot before it is answered 503 (or the fallback).
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreaker {
    /// Failures in a row that open the breaker; 0 = this trigger is off.
    pub consecutive_failures: u32,
    /// Failure ratio over `window` that opens it (with at least `min_requests`); None = off.
    pub error_rate: Option<f64>,
    pub min_requests: u32,
    pub window: Duration,
    /// How long it stays open (requests fail fast) before letting probes through.
    pub open_for: Duration,
    /// Probes let through when half-open; that many successes close it, one failure reopens.
    pub half_open_probes: u32,
}
