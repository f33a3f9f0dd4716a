//! Validation of a backend: its servers, balancing policy, health check, persistence, and
//! what a tcp listener needs of the backend it forwards to.

use super::{check_host_port, header_name_ok, tls, traffic, Checker};
use crate::model::*;
use crate::raw::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A tcp listener's backend must exist and balance without an HTTP request to look at.
pub(super) fn check_tcp_backend(
    c: &mut Checker,
    field: &str,
    name: &str,
    backends: &BTreeMap<String, Backend>,
) {
    let Some(b) = backends.get(name) else {
        c.fail(
            field,
            format!("no backend named \"{name}\"; define [backends.{name}]"),
        );
        return;
    };
    if matches!(
        b.policy,
        Policy::Uri | Policy::UrlParam(_) | Policy::Header(_) | Policy::Cookie(_)
    ) {
        c.fail(
            field,
            format!(
                "backend \"{name}\" hashes on an HTTP request part (policy \"{}\"), which a tcp \
                 connection does not have; use source_ip, least_conn or another policy",
                b.policy.name()
            ),
        );
    }
    if matches!(
        b.persistence,
        Some(Persistence::InsertCookie { .. } | Persistence::RewriteCookie { .. })
    ) {
        c.fail(
            field,
            format!(
                "backend \"{name}\" pins clients with a cookie, which a tcp connection does not \
                 carry; use persistence mode \"source_ip\" or none"
            ),
        );
    }
    if b.tls.is_some() {
        c.fail(
            field,
            format!(
                "backend \"{name}\" speaks TLS to its servers, but a tcp listener relays bytes \
                 as they are (TLS passthrough included); remove [backends.{name}.tls] or use \
                 another backend"
            ),
        );
    }
    let t = &b.traffic;
    if t.max_conns_per_server.is_some() || t.circuit_breaker.is_some() {
        c.fail(
            field,
            format!(
                "backend \"{name}\" has max_conns_per_server or a circuit_breaker, which act on \
                 HTTP requests; a tcp listener's connections would pass them by. Use another \
                 backend, or limit the listener with max_connections / max_conns_per_ip"
            ),
        );
    }
}
fn validate_policy(c: &mut Checker, f: &str, b: &RawBackend) -> Policy {
    let key = |c: &mut Checker, what: &str| -> String {
        match &b.hash_key {
            Some(k) if !k.is_empty() => k.clone(),
            _ => {
                c.fail(
                    format!("{f}.hash_key"),
                    format!("policy needs hash_key = \"<{what}>\""),
                );
                String::new()
            }
        }
    };
    let policy = match b.policy.as_deref().unwrap_or("round_robin") {
        "round_robin" | "roundrobin" => Policy::RoundRobin,
        "least_conn" | "leastconn" => Policy::LeastConn,
        "random" => Policy::Random,
        "p2c" => Policy::P2c,
        "ewma" => Policy::Ewma,
        "source_ip" => Policy::SourceIp,
        "uri" => Policy::Uri,
        "url_param" => Policy::UrlParam(key(c, "query parameter name")),
        "header" => Policy::Header(key(c, "header name").to_ascii_lowercase()),
        "cookie" => Policy::Cookie(key(c, "cookie name")),
        other => {
            c.fail(
                format!("{f}.policy"),
                format!(
                    "unknown policy \"{other}\"; use round_robin, least_conn, random, p2c, ewma, \
                     source_ip, uri, url_param, header or cookie"
                ),
            );
            Policy::RoundRobin
        }
    };
    if b.hash_key.is_some()
        && !matches!(
            policy,
            Policy::UrlParam(_) | Policy::Header(_) | Policy::Cookie(_)
        )
    {
        c.fail(
            format!("{f}.hash_key"),
            format!(
                "policy \"{}\" takes no hash_key; only url_param, header and cookie do",
                policy.name()
            ),
        );
    }
    policy
}

pub(super) fn validate_backend(c: &mut Checker, name: &str, b: RawBackend) -> Backend {
    let f = format!("backends.{name}");
    let policy = validate_policy(c, &f, &b);
    let mut servers = Vec::new();
    match (&b.servers, &b.service) {
        (Some(_), Some(_)) => c.fail(
            &f,
            "give either servers = [...] or service = \"...\", not both",
        ),
        (None, Some(svc)) => {
            let ok = !svc.is_empty()
                && svc.len() <= 128
                && svc
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && svc != "."
                && svc != "..";
            if !ok {
                c.fail(
                    format!("{f}.service"),
                    format!("\"{svc}\" is not a service name (1-128 of A-Z a-z 0-9 . _ -)"),
                );
            }
        }
        (None, None) => c.fail(
            format!("{f}.servers"),
            "no servers; add servers = [ { addr = \"127.0.0.1:9000\" } ]",
        ),
        (Some(list), None) => {
            if list.is_empty() {
                c.fail(
                    format!("{f}.servers"),
                    "empty; add at least one { addr = \"host:port\" }",
                );
            }
            let mut seen = BTreeSet::new();
            for (i, s) in list.iter().enumerate() {
                let sf = format!("{f}.servers[{i}]");
                check_host_port(c, &format!("{sf}.addr"), &s.addr);
                if !seen.insert(s.addr.clone()) {
                    c.fail(
                        format!("{sf}.addr"),
                        format!("\"{}\" is listed twice in this backend", s.addr),
                    );
                }
                let weight = match s.weight {
                    None => 1,
                    Some(w @ 1..=100) => w as u32,
                    Some(w) => {
                        c.fail(
                            format!("{sf}.weight"),
                            format!("weight {w} is out of range; use 1-100"),
                        );
                        1
                    }
                };
                servers.push(Server {
                    addr: s.addr.clone(),
                    weight,
                });
            }
        }
    }
    let health = b.health.as_ref().map(|h| validate_health(c, &f, h));
    let passive = {
        let p = b.passive.as_ref();
        let consecutive_failures = p.and_then(|p| p.consecutive_failures).unwrap_or(5);
        if consecutive_failures > 1000 {
            c.fail(
                format!("{f}.passive.consecutive_failures"),
                "use 0 (off) to 1000",
            );
        }
        PassiveHealth {
            consecutive_failures,
            cooldown: c.duration(
                &format!("{f}.passive.cooldown"),
                p.and_then(|p| p.cooldown.as_ref()),
                Duration::from_secs(10),
            ),
            on_5xx: p.and_then(|p| p.on_5xx).unwrap_or(true),
        }
    };
    let persistence = b
        .persistence
        .as_ref()
        .map(|p| validate_persistence(c, &f, p));
    let proxy_protocol = match b.proxy_protocol.as_deref() {
        None => None,
        Some("v1") => Some(ProxyProtocol::V1),
        Some("v2") => Some(ProxyProtocol::V2),
        Some(other) => {
            c.fail(
                format!("{f}.proxy_protocol"),
                format!("unknown PROXY protocol version \"{other}\"; use \"v1\" or \"v2\""),
            );
            None
        }
    };
    let protocol = match b.protocol.as_deref() {
        None | Some("http1") | Some("http/1.1") => UpstreamProtocol::Http1,
        Some("h2c") | Some("h2") => UpstreamProtocol::H2c,
        Some(other) => {
            c.fail(
                format!("{f}.protocol"),
                format!(
                    "unknown server protocol \"{other}\"; use \"http1\" (default) or \"h2c\" \
                     (HTTP/2 with prior knowledge, e.g. for gRPC servers)"
                ),
            );
            UpstreamProtocol::Http1
        }
    };
    // High enough that a worker's pool is not the limit at the concurrency one server
    // sees under load (at 64, 256 clients over 2 servers churned connections: 0.79x
    // nginx's throughput and 1.59x HAProxy's p99, docs/BENCHMARKS.md); HAProxy keeps
    // idle server connections without a cap. Idle ones still go after idle_timeout.
    let max_idle_per_server = b.max_idle_per_server.unwrap_or(1024);
    let traffic = traffic::backend(c, &f, &b);
    let tls = tls::upstream(c, &f, b.tls.as_ref());
    Backend {
        tls,
        traffic,
        name: name.to_string(),
        policy,
        servers,
        service: b.service.clone(),
        connect_timeout: c.duration(
            &format!("{f}.connect_timeout"),
            b.connect_timeout.as_ref(),
            Duration::from_secs(3),
        ),
        response_timeout: c.duration(
            &format!("{f}.response_timeout"),
            b.response_timeout.as_ref(),
            Duration::from_secs(60),
        ),
        idle_timeout: c.duration(
            &format!("{f}.idle_timeout"),
            b.idle_timeout.as_ref(),
            Duration::from_secs(30),
        ),
        retries: match b.retries {
            Some(r) if r > 10 => {
                c.fail(format!("{f}.retries"), format!("{r} is too many; use 0-10"));
                10
            }
            Some(r) => r,
            None => 2,
        },
        max_idle_per_server,
        fallback: c.fallback(&format!("{f}.fallback"), b.fallback.as_ref()),
        health,
        passive,
        persistence,
        proxy_protocol,
        protocol,
    }
}

fn validate_health(c: &mut Checker, f: &str, h: &RawHealth) -> HealthCheck {
    let f = format!("{f}.health");
    let kind = match h.kind.as_deref().unwrap_or("tcp") {
        "tcp" => CheckKind::Tcp,
        "http" => CheckKind::Http,
        other => {
            c.fail(
                format!("{f}.kind"),
                format!("unknown check kind \"{other}\"; use tcp or http"),
            );
            CheckKind::Tcp
        }
    };
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        c.fail(
            format!("{f}.path"),
            format!("\"{path}\" must start with '/'"),
        );
    }
    if kind == CheckKind::Tcp && (h.path.is_some() || h.expect_status.is_some() || h.host.is_some())
    {
        c.fail(
            format!("{f}.kind"),
            "path, host and expect_status need kind = \"http\"",
        );
    }
    let expect_status = h.expect_status.clone().unwrap_or_default();
    for (i, s) in expect_status.iter().enumerate() {
        if !(100..=599).contains(s) {
            c.fail(
                format!("{f}.expect_status[{i}]"),
                format!("{s} is not an HTTP status"),
            );
        }
    }
    let mut threshold = |key: &str, v: Option<u32>, default: u32| match v {
        None => default,
        Some(n @ 2..=10) => n,
        Some(n) => {
            c.fail(
                format!("{f}.{key}"),
                format!("{n} is out of range; use 2-10"),
            );
            default
        }
    };
    let unhealthy_threshold = threshold("unhealthy_threshold", h.unhealthy_threshold, 3);
    let healthy_threshold = threshold("healthy_threshold", h.healthy_threshold, 2);
    let interval = c.duration(
        &format!("{f}.interval"),
        h.interval.as_ref(),
        Duration::from_secs(2),
    );
    let timeout = c.duration(
        &format!("{f}.timeout"),
        h.timeout.as_ref(),
        Duration::from_secs(1),
    );
    if interval < Duration::from_millis(10) {
        c.fail(format!("{f}.interval"), "must be at least 10ms");
    }
    HealthCheck {
        kind,
        path,
        host: h.host.clone(),
        expect_status,
        interval,
        timeout,
        unhealthy_threshold,
        healthy_threshold,
    }
}

fn cookie_name_ok(name: &str) -> bool {
    header_name_ok(name) && !name.contains(['=', ';', ','])
}

fn validate_persistence(c: &mut Checker, f: &str, p: &RawPersistence) -> Persistence {
    let f = format!("{f}.persistence");
    let cookie = |c: &mut Checker, default: Option<&str>| -> String {
        let name = p.cookie.as_deref().or(default).unwrap_or_default();
        if name.is_empty() {
            c.fail(
                format!("{f}.cookie"),
                "rewrite_cookie needs cookie = \"<your application's cookie name>\"",
            );
        } else if !cookie_name_ok(name) {
            c.fail(
                format!("{f}.cookie"),
                format!("\"{name}\" is not a valid cookie name"),
            );
        }
        name.to_string()
    };
    let only_for = |c: &mut Checker, key: &str, present: bool, mode: &str| {
        if present {
            c.fail(format!("{f}.{key}"), format!("not used by mode \"{mode}\""));
        }
    };
    match p.mode.as_str() {
        "insert_cookie" => {
            only_for(c, "timeout", p.timeout.is_some(), "insert_cookie");
            let same_site = match p.same_site.as_deref().unwrap_or("Lax") {
                s if s.eq_ignore_ascii_case("strict") => SameSite::Strict,
                s if s.eq_ignore_ascii_case("lax") => SameSite::Lax,
                s if s.eq_ignore_ascii_case("none") => SameSite::None,
                other => {
                    c.fail(
                        format!("{f}.same_site"),
                        format!("\"{other}\" is not Strict, Lax or None"),
                    );
                    SameSite::Lax
                }
            };
            let secure = p.secure.unwrap_or(same_site == SameSite::None);
            Persistence::InsertCookie {
                cookie: cookie(c, Some("HERDSRV")),
                max_age: p.max_age.as_ref().map(|m| {
                    c.duration(&format!("{f}.max_age"), Some(m), Duration::from_secs(3600))
                }),
                http_only: p.http_only.unwrap_or(true),
                secure,
                same_site,
            }
        }
        "rewrite_cookie" => {
            for (key, present) in [
                ("max_age", p.max_age.is_some()),
                ("timeout", p.timeout.is_some()),
                ("same_site", p.same_site.is_some()),
                ("http_only", p.http_only.is_some()),
                ("secure", p.secure.is_some()),
            ] {
                only_for(c, key, present, "rewrite_cookie");
            }
            Persistence::RewriteCookie {
                cookie: cookie(c, None),
            }
        }
        "source_ip" => {
            for (key, present) in [
                ("cookie", p.cookie.is_some()),
                ("max_age", p.max_age.is_some()),
                ("same_site", p.same_site.is_some()),
            ] {
                only_for(c, key, present, "source_ip");
            }
            Persistence::SourceIp {
                timeout: c.duration(
                    &format!("{f}.timeout"),
                    p.timeout.as_ref(),
                    Duration::from_secs(30 * 60),
                ),
            }
        }
        other => {
            c.fail(
                format!("{f}.mode"),
                format!("unknown mode \"{other}\"; use insert_cookie, rewrite_cookie or source_ip"),
            );
            Persistence::SourceIp {
                timeout: Duration::from_secs(1800),
            }
        }
    }
}
