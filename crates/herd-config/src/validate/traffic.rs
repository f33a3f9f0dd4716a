//! Validation of the traffic-control keys (rate limits, ACLs, time windows, size limits,
//! connection limits and queues, circuit breakers).

use super::{header_name_ok, Checker};
use crate::cidr::{Cidr, IpAcl};
use crate::model::Protocol;
use crate::raw::{RawBackend, RawCircuitBreaker, RawHours, RawListener, RawRateLimit, RawRoute};
use crate::size::parse_size;
use crate::traffic::*;
use std::time::Duration;

const MAX_BODY_LIMIT: u64 = 1 << 40;

/// Slowest rate limit: one request an hour (just under 1/3600, so that "0.000278" passes).
const MIN_RATE: f64 = 0.000_277;

pub(super) fn listener(
    c: &mut Checker,
    f: &str,
    l: &RawListener,
    protocol: Protocol,
) -> ListenerTraffic {
    let http = protocol != Protocol::Tcp;
    let only_http = |c: &mut Checker, key: &str, present: bool| {
        if present && !http {
            c.fail(
                format!("{f}.{key}"),
                "applies to http listeners only; a tcp connection has no request to measure",
            );
        }
    };
    only_http(c, "max_body_size", l.max_body_size.is_some());
    only_http(c, "header_read_timeout", l.header_read_timeout.is_some());
    let max_conns_per_ip = match l.max_conns_per_ip {
        None => None,
        Some(n @ 1..=1_000_000) => Some(n as u32),
        Some(n) => {
            c.fail(
                format!("{f}.max_conns_per_ip"),
                format!("{n} is out of range; use 1-1000000 (omit it for no limit)"),
            );
            None
        }
    };
    if max_conns_per_ip.is_some() && l.accept_proxy_protocol == Some(true) {
        c.fail(
            format!("{f}.max_conns_per_ip"),
            "is counted at accept by the socket's address, which is the balancer's on a \
             listener with accept_proxy_protocol; not supported together yet",
        );
    }
    ListenerTraffic {
        acl: acl(c, f, l.allow.as_deref(), l.deny.as_deref()),
        max_conns_per_ip,
        max_body_size: body_size(c, &format!("{f}.max_body_size"), l.max_body_size.as_ref()),
        header_read_timeout: c.duration(
            &format!("{f}.header_read_timeout"),
            l.header_read_timeout.as_ref(),
            Duration::from_secs(10),
        ),
    }
}

pub(super) fn route(c: &mut Checker, f: &str, r: &RawRoute) -> RouteTraffic {
    RouteTraffic {
        rate_limit: r
            .rate_limit
            .as_ref()
            .map(|rl| rate_limit(c, &format!("{f}.rate_limit"), rl)),
        acl: acl(c, f, r.allow.as_deref(), r.deny.as_deref()),
        hours: r
            .hours
            .as_ref()
            .and_then(|h| hours(c, &format!("{f}.hours"), h)),
        max_body_size: body_size(c, &format!("{f}.max_body_size"), r.max_body_size.as_ref()),
    }
}

pub(super) fn backend(c: &mut Checker, f: &str, b: &RawBackend) -> BackendTraffic {
    let max_conns_per_server = match b.max_conns_per_server {
        None => None,
        Some(n @ 1..=100_000) => Some(n as u32),
        Some(n) => {
            c.fail(
                format!("{f}.max_conns_per_server"),
                format!("{n} is out of range; use 1-100000 (omit it for no limit)"),
            );
            None
        }
    };
    let queue = b.queue.as_ref().map(|q| {
        let qf = format!("{f}.queue");
        if b.max_conns_per_server.is_none() {
            c.fail(
                &qf,
                "a queue holds requests waiting for a server slot; set max_conns_per_server too",
            );
        }
        let max = match q.max {
            n @ 0..=100_000 => n as u32,
            n => {
                c.fail(
                    format!("{qf}.max"),
                    format!("{n} is out of range; use 0-100000 (0: refuse at once when full)"),
                );
                0
            }
        };
        ConnQueue {
            max,
            timeout: c.duration(
                &format!("{qf}.timeout"),
                q.timeout.as_ref(),
                Duration::from_secs(1),
            ),
        }
    });
    BackendTraffic {
        max_conns_per_server,
        queue,
        circuit_breaker: b
            .circuit_breaker
            .as_ref()
            .map(|cb| breaker(c, &format!("{f}.circuit_breaker"), cb)),
    }
}

fn acl(c: &mut Checker, f: &str, allow: Option<&[String]>, deny: Option<&[String]>) -> IpAcl {
    let mut list = |key: &str, items: Option<&[String]>| -> Vec<Cidr> {
        let items = items.unwrap_or_default();
        if items.is_empty() && key == "allow" && allow.is_some() {
            c.fail(
                format!("{f}.allow"),
                "an empty allow list would refuse every client; remove it to allow all",
            );
        }
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match Cidr::parse(s) {
                Ok(cidr) => Some(cidr),
                Err(e) => {
                    c.fail(format!("{f}.{key}[{i}]"), e);
                    None
                }
            })
            .collect()
    };
    IpAcl {
        allow: list("allow", allow),
        deny: list("deny", deny),
    }
}

fn body_size(c: &mut Checker, field: &str, v: Option<&toml::Value>) -> Option<u64> {
    let bytes = match v? {
        toml::Value::Integer(n) if *n > 0 => *n as u64,
        toml::Value::String(s) => match parse_size(s) {
            Ok(n) => n,
            Err(e) => {
                c.fail(field, e);
                return None;
            }
        },
        other => {
            c.fail(
                field,
                format!(
                    "{other} is not a size; write e.g. \"10MB\", \"512KiB\" or a number of bytes"
                ),
            );
            return None;
        }
    };
    if bytes == 0 || bytes > MAX_BODY_LIMIT {
        c.fail(field, format!("{bytes} bytes is out of range; use 1B-1TiB"));
        return None;
    }
    Some(bytes)
}

fn rate_limit(c: &mut Checker, f: &str, rl: &RawRateLimit) -> RateLimit {
    let key = match rl.key.as_deref().unwrap_or("client_ip") {
        "client_ip" => RateKey::ClientIp,
        "route" => RateKey::Route,
        k => match k.strip_prefix("header:") {
            Some(name) if header_name_ok(name) => RateKey::Header(name.to_ascii_lowercase()),
            _ => {
                c.fail(
                    format!("{f}.key"),
                    format!("\"{k}\" is not a rate-limit key; use \"client_ip\", \"route\" or \"header:NAME\" (e.g. \"header:X-Api-Key\")"),
                );
                RateKey::ClientIp
            }
        },
    };
    let per_second = rl.per_second;
    // Below one an hour a bucket's span (interval × burst) would overflow the limiter's
    // nanosecond arithmetic and be silently shortened.
    if !(per_second.is_finite() && (MIN_RATE..=1_000_000.0).contains(&per_second)) {
        c.fail(
            format!("{f}.per_second"),
            format!("{per_second} is out of range; use from 0.000278 (one request an hour) to 1000000 (0.5 = one request every 2s)"),
        );
    }
    let burst = match rl.burst {
        None => per_second.ceil().clamp(1.0, 1_000_000.0) as u32,
        Some(n @ 1..=1_000_000) => n as u32,
        Some(n) => {
            c.fail(
                format!("{f}.burst"),
                format!("{n} is out of range; use 1-1000000 (requests allowed at once)"),
            );
            1
        }
    };
    RateLimit {
        key,
        per_second: per_second.clamp(MIN_RATE, 1_000_000.0),
        burst,
    }
}

/// "HH:MM", 00:00-24:00 (24:00 only makes sense as an end).
fn clock_minutes(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn hours(c: &mut Checker, f: &str, h: &RawHours) -> Option<TimeWindow> {
    let mut time = |key: &str, text: &str| {
        let m = clock_minutes(text);
        if m.is_none() {
            c.fail(
                format!("{f}.{key}"),
                format!("\"{text}\" is not a time of day; write \"HH:MM\", e.g. \"08:00\" (24:00 = end of day)"),
            );
        }
        m
    };
    let (from, to) = (time("from", &h.from), time("to", &h.to));
    let offset_text = h.utc_offset.as_deref().unwrap_or("+00:00");
    let offset = match offset_text {
        "Z" | "UTC" => Some(0),
        t => {
            let (sign, rest) = match t.as_bytes().first() {
                Some(b'+') => (1, &t[1..]),
                Some(b'-') => (-1, &t[1..]),
                _ => (0, t),
            };
            clock_minutes(rest)
                .filter(|m| sign != 0 && *m <= 14 * 60)
                .map(|m| sign * m as i32)
        }
    };
    if offset.is_none() {
        c.fail(
            format!("{f}.utc_offset"),
            format!("\"{offset_text}\" is not a UTC offset; write \"+08:00\", \"-05:30\" or \"Z\" (-14:00 to +14:00)"),
        );
    }
    let (from, to, offset) = (from?, to?, offset?);
    if from == 1440 {
        c.fail(
            format!("{f}.from"),
            "a window cannot start at 24:00; use \"00:00\"",
        );
        return None;
    }
    if from == to % 1440 {
        c.fail(
            f,
            "from and to are the same time: an empty window; remove hours to allow all day",
        );
        return None;
    }
    Some(TimeWindow {
        from_min: from,
        to_min: to,
        utc_offset_min: offset,
    })
}

fn breaker(c: &mut Checker, f: &str, cb: &RawCircuitBreaker) -> CircuitBreaker {
    let consecutive_failures = cb.consecutive_failures.unwrap_or(5);
    if consecutive_failures > 10_000 {
        c.fail(
            format!("{f}.consecutive_failures"),
            format!("{consecutive_failures} is out of range; use 0 (off) to 10000"),
        );
    }
    let error_rate = cb.error_rate;
    if let Some(r) = error_rate {
        if !(r > 0.0 && r <= 1.0) {
            c.fail(
                format!("{f}.error_rate"),
                format!("{r} is not a ratio; use more than 0 and at most 1 (0.5 = half the requests failed)"),
            );
        }
    }
    if consecutive_failures == 0 && error_rate.is_none() {
        c.fail(
            f,
            "nothing would open this breaker; set consecutive_failures above 0 or an error_rate",
        );
    }
    let min_requests = cb.min_requests.unwrap_or(20);
    if !(1..=1_000_000).contains(&min_requests) {
        c.fail(
            format!("{f}.min_requests"),
            format!("{min_requests} is out of range; use 1-1000000"),
        );
    }
    let half_open_probes = cb.half_open_probes.unwrap_or(3);
    if !(1..=100).contains(&half_open_probes) {
        c.fail(
            format!("{f}.half_open_probes"),
            format!("{half_open_probes} is out of range; use 1-100"),
        );
    }
    let window = c.duration(
        &format!("{f}.window"),
        cb.window.as_ref(),
        Duration::from_secs(10),
    );
    if window < Duration::from_millis(100) || window > Duration::from_secs(3600) {
        c.fail(format!("{f}.window"), "use 100ms to 1h");
    }
    let open_for = c.duration(
        &format!("{f}.open_for"),
        cb.open_for.as_ref(),
        Duration::from_secs(5),
    );
    if open_for > Duration::from_secs(24 * 3600) {
        c.fail(format!("{f}.open_for"), "use at most 24h");
    }
    CircuitBreaker {
        consecutive_failures,
        error_rate,
        min_requests,
        window,
        open_for,
        half_open_probes,
    }
}
