//! A route's own rules, checked before any server: allow/deny lists, time windows, a
//! declared body over the limit, the rate limit (last, so a refused request spends no
//! token); and the listener's allow/deny lists.

use super::per_ip::ip_key;
use crate::clock;
use herd_balance::{hash64, RateBucket, RateDecision, RateParams, RateTable};
use herd_config::traffic::{IpAcl, RateKey, TimeWindow};
use herd_config::{Listener, Route};
use herd_telemetry::Counter;
use http::StatusCode;
use serde_json::{json, Value};
use std::net::IpAddr;

/// Buckets per route with a keyed rate limit: 16 bytes each, so 256 KiB per route, however
/// many clients. A bucket is reusable once full again (`burst / per_second` after its last
/// request), so this holds every client active within that time up to 16 384 (8 per set).
pub const RATE_TABLE_SLOTS: usize = 16_384;

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
