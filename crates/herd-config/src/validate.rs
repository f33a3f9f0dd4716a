//! Raw file → validated `Config`. Every problem is collected with its field path, so an
//! operator fixes a file in one pass instead of one error per restart.

use crate::duration::parse_duration;
use crate::model::*;
use crate::raw::*;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

mod tls;
mod traffic;

/// One thing wrong with the file: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

#[derive(Default)]
pub(crate) struct Checker {
    pub problems: Vec<Problem>,
    /// The config file's directory: relative certificate paths are taken from it.
    pub base_dir: PathBuf,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn duration(&mut self, field: &str, text: Option<&String>, default: Duration) -> Duration {
        match text {
            None => default,
            Some(t) => match parse_duration(t) {
                Ok(d) if d.is_zero() => {
                    self.fail(field, "must be greater than zero");
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    self.fail(field, e);
                    default
                }
            },
        }
    }

    fn regex(&mut self, field: &str, pattern: &str) -> Option<Regex> {
        match Regex::new(pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                self.fail(field, format!("invalid regex: {e}"));
                None
            }
        }
    }

    fn fallback(&mut self, field: &str, raw: Option<&RawFallback>) -> Option<Fallback> {
        let raw = raw?;
        if !(100..=599).contains(&raw.status) {
            self.fail(
                format!("{field}.status"),
                format!("{} is not an HTTP status; use 100-599", raw.status),
            );
        }
        Some(Fallback {
            status: raw.status,
            body: raw.body.clone(),
            content_type: raw
                .content_type
                .clone()
                .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
        })
    }
}

pub(crate) fn validate(raw: FileConfig, c: &mut Checker) -> Config {
    let gateway = {
        let g = raw.gateway.unwrap_or_default();
        let workers = match g.workers {
            Some(0) => {
                c.fail(
                    "gateway.workers",
                    "must be at least 1 (omit it to use one per core)",
                );
                1
            }
            Some(n) if n > 1024 => {
                c.fail("gateway.workers", format!("{n} is too many; use 1-1024"));
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        GatewaySettings {
            workers,
            drain_timeout: c.duration(
                "gateway.drain_timeout",
                g.drain_timeout.as_ref(),
                Duration::from_secs(30),
            ),
        }
    };

    let admin = raw.admin.map(|a| {
        check_host_port(c, "admin.listen", &a.listen);
        let allowed_hosts = a.allowed_hosts.unwrap_or_default();
        for (i, h) in allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains([':', '/', ' ', '@']) {
                c.fail(
                    format!("admin.allowed_hosts[{i}]"),
                    format!("\"{h}\" is not a host name; list names only, without port or scheme"),
                );
            }
        }
        if a.token_file.as_deref() == Some("") {
            c.fail(
                "admin.token_file",
                "empty path; name the file that holds the token, or remove the key",
            );
        }
        Admin {
            listen: a.listen,
            token_file: a.token_file.map(|f| c.base_dir.join(f)),
            token_for_reads: a.token_for_reads.unwrap_or(false),
            allowed_hosts,
        }
    });

    let mut listeners = Vec::new();
    let mut names = BTreeMap::new();
    for (i, l) in raw.listeners.into_iter().enumerate() {
        let f = format!("listeners[{i}]");
        let protocol = match l.protocol.as_deref().unwrap_or("http") {
            "http" => Protocol::Http,
            "tcp" => Protocol::Tcp,
            "https" => Protocol::Https,
            other => {
                c.fail(
                    format!("{f}.protocol"),
                    format!("unknown protocol \"{other}\"; use http, https or tcp"),
                );
                Protocol::Http
            }
        };
        if l.name.is_empty() {
            c.fail(format!("{f}.name"), "must not be empty");
        } else if names.insert(l.name.clone(), protocol).is_some() {
            c.fail(
                format!("{f}.name"),
                format!(
                    "listener \"{}\" is defined twice; names must be unique",
                    l.name
                ),
            );
        }
        let traffic = traffic::listener(c, &f, &l, protocol);
        let certificates = validate_certificates(c, &f, protocol, l.certificates);
        let sni_routes = tls::sni_routes(c, &f, protocol, l.sni_routes);
        match (protocol, &l.backend) {
            (Protocol::Tcp, None) => c.fail(
                format!("{f}.backend"),
                "a tcp listener needs backend = \"<name>\": the group its connections go to",
            ),
            (Protocol::Http | Protocol::Https, Some(_)) => c.fail(
                format!("{f}.backend"),
                "only tcp listeners name a backend; an http listener reaches backends through [[routes]]",
            ),
            _ => {}
        }
        check_host_port(c, &format!("{f}.bind"), &l.bind);
        let access_log = match l.access_log.as_deref() {
            None | Some("off") => None,
            Some(_) if protocol == Protocol::Tcp => {
                c.fail(
                    format!("{f}.access_log"),
                    "the access log records HTTP requests; remove it from this tcp listener",
                );
                None
            }
            Some("stdout") | Some("-") => Some(AccessLog::Stdout),
            Some("") => {
                c.fail(
                    format!("{f}.access_log"),
                    "empty; use \"stdout\", a file path or \"off\"",
                );
                None
            }
            Some(path) => Some(AccessLog::File(PathBuf::from(path))),
        };
        let max_connections = match l.max_connections {
            None => None,
            Some(n @ 1..=10_000_000) => Some(n as u64),
            Some(n) => {
                c.fail(
                    format!("{f}.max_connections"),
                    format!("{n} is out of range; use 1-10000000 (omit it for no limit)"),
                );
                None
            }
        };
        // A tcp pair may sit quiet for long (database pools, SSH): HAProxy's `timeout
        // tunnel` territory, not an HTTP keep-alive's.
        let default_idle = match protocol {
            Protocol::Http | Protocol::Https => Duration::from_secs(60),
            Protocol::Tcp => Duration::from_secs(3600),
        };
        listeners.push(Listener {
            idle_timeout: c.duration(
                &format!("{f}.idle_timeout"),
                l.idle_timeout.as_ref(),
                default_idle,
            ),
            name: l.name,
            protocol,
            bind: l.bind,
            access_log,
            backend: l.backend,
            accept_proxy_protocol: l.accept_proxy_protocol.unwrap_or(false),
            reuse_port: l.reuse_port.unwrap_or(false),
            max_connections,
            traffic,
            certificates,
            sni_routes,
        });
    }
    check_overlapping_binds(c, &listeners, admin.as_ref().map(|a| a.listen.as_str()));
    if listeners.is_empty() {
        c.fail(
            "listeners",
            "no listener defined; add [[listeners]] with name, protocol and bind",
        );
    }

    let registry = raw.registry.map(|r| {
        if r.servers.is_empty() {
            c.fail(
                "registry.servers",
                "empty; list the registry nodes, e.g. servers = [\"127.0.0.1:7400\"]",
            );
        }
        for (i, s) in r.servers.iter().enumerate() {
            check_host_port(c, &format!("registry.servers[{i}]"), s);
        }
        Registry {
            servers: r.servers,
            token: r.token,
        }
    });
    let mut backends = BTreeMap::new();
    for (name, b) in raw.backends {
        let backend = validate_backend(c, &name, b);
        if backend.service.is_some() && registry.is_none() {
            c.fail(
                format!("backends.{name}.service"),
                "needs the registry's address: add [registry] servers = [\"127.0.0.1:7400\"]",
            );
        }
        backends.insert(name, backend);
    }
    for (i, l) in listeners.iter().enumerate() {
        if let (Protocol::Tcp, Some(name)) = (l.protocol, &l.backend) {
            check_tcp_backend(c, &format!("listeners[{i}].backend"), name, &backends);
        }
        for (j, r) in l.sni_routes.iter().enumerate() {
            let field = format!("listeners[{i}].sni_routes[{j}].backend");
            check_tcp_backend(c, &field, &r.backend, &backends);
        }
    }

    let mut routes = Vec::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        routes.push(validate_route(c, i, r, &names, &backends));
    }
    if routes.is_empty() && listeners.iter().any(|l| l.protocol.is_http()) {
        c.fail(
            "routes",
            "no route defined; add [[routes]] with at least backend = \"<name>\"",
        );
    }

    Config {
        gateway,
        admin,
        listeners,
        routes,
        backends,
        registry,
    }
}

/// A tcp listener's backend must exist and balance without an HTTP request to look at.
fn check_tcp_backend(
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

/// Two sockets of one gateway on one port would both bind (SO_REUSEPORT) and the kernel
/// would split connections between listeners with different rules. Port 0 picks a free
/// port each time; a name (not an IP) is compared as written.
fn check_overlapping_binds(c: &mut Checker, listeners: &[Listener], admin: Option<&str>) {
    let mut seen: Vec<(String, &str, &str, u16)> = Vec::new();
    let binds = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("listeners[{i}].bind"),
                format!("listener \"{}\"", l.name),
                l.bind.as_str(),
            )
        })
        .chain(admin.map(|a| {
            (
                "admin.listen".to_string(),
                "the admin listener".to_string(),
                a,
            )
        }));
    for (field, who, bind) in binds {
        let Some((host, port)) = bind.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let wildcard = |h: &str| h == "0.0.0.0" || h == "::" || h.is_empty();
        if let Some((other, other_bind, _, _)) = seen
            .iter()
            .find(|(_, _, h, p)| *p == port && (*h == host || wildcard(h) || wildcard(host)))
        {
            c.fail(
                field.clone(),
                format!(
                    "\"{bind}\" overlaps {other} (\"{other_bind}\"): both would take connections \
                     for port {port}; give each listener its own port"
                ),
            );
        }
        seen.push((who, bind, host, port));
    }
}

fn check_host_port(c: &mut Checker, field: &str, addr: &str) {
    let ok = match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    };
    if !ok {
        c.fail(
            field,
            format!("\"{addr}\" is not host:port; write e.g. \"127.0.0.1:8080\""),
        );
    }
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn header_pairs(
    c: &mut Checker,
    field: &str,
    map: Option<BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in map.unwrap_or_default() {
        if !header_name_ok(&k) {
            c.fail(format!("{field}.{k}"), "not a valid header name");
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            c.fail(
                format!("{field}.{k}"),
                "header value must not contain CR, LF or NUL",
            );
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    out
}

fn header_names(c: &mut Checker, field: &str, list: Option<Vec<String>>) -> Vec<String> {
    let list = list.unwrap_or_default();
    for (i, k) in list.iter().enumerate() {
        if !header_name_ok(k) {
            c.fail(
                format!("{field}[{i}]"),
                format!("\"{k}\" is not a valid header name"),
            );
        }
    }
    list.into_iter().map(|k| k.to_ascii_lowercase()).collect()
}

fn validate_route(
    c: &mut Checker,
    i: usize,
    r: RawRoute,
    listeners: &BTreeMap<String, Protocol>,
    backends: &BTreeMap<String, Backend>,
) -> Route {
    let f = format!("routes[{i}]");
    let traffic = traffic::route(c, &f, &r);
    if let Some(l) = &r.listener {
        match listeners.get(l) {
            None => c.fail(
                format!("{f}.listener"),
                format!("no listener named \"{l}\"; define it under [[listeners]]"),
            ),
            Some(Protocol::Tcp) => c.fail(
                format!("{f}.listener"),
                format!(
                    "\"{l}\" is a tcp listener: it sends every connection to its own backend \
                     and has no routes; point this route at an http listener"
                ),
            ),
            Some(Protocol::Http | Protocol::Https) => {}
        }
    }
    if !backends.contains_key(&r.backend) {
        c.fail(
            format!("{f}.backend"),
            format!(
                "no backend named \"{}\"; define [backends.{}]",
                r.backend, r.backend
            ),
        );
    }
    let host = r.host.as_deref().map(|h| {
        let h = h.to_ascii_lowercase();
        if let Some(rest) = h.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                c.fail(format!("{f}.host"), "wildcard must look like \"*.example.com\"");
            }
            HostMatch::Suffix(format!(".{rest}"))
        } else {
            if h.contains('*') || h.is_empty() {
                c.fail(
                    format!("{f}.host"),
                    "a host is an exact name or \"*.domain\"; '*' is allowed only as the first label",
                );
            }
            HostMatch::Exact(h)
        }
    });
    if let Some(p) = &r.path_prefix {
        if !p.starts_with('/') {
            c.fail(
                format!("{f}.path_prefix"),
                format!("\"{p}\" must start with '/'"),
            );
        }
    }
    let path_regex = r
        .path_regex
        .as_deref()
        .and_then(|p| c.regex(&format!("{f}.path_regex"), p));
    let methods = r
        .methods
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.to_ascii_uppercase())
        .collect::<Vec<_>>();
    for (j, m) in methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            c.fail(
                format!("{f}.methods[{j}]"),
                format!("\"{m}\" is not an HTTP method"),
            );
        }
    }
    let mut headers = Vec::new();
    for (name, pattern) in r.headers.unwrap_or_default() {
        if !header_name_ok(&name) {
            c.fail(format!("{f}.headers.{name}"), "not a valid header name");
        }
        if let Some(re) = c.regex(&format!("{f}.headers.{name}"), &pattern) {
            headers.push((name.to_ascii_lowercase(), re));
        }
    }
    Route {
        traffic,
        index: i,
        listener: r.listener,
        host,
        path_prefix: r.path_prefix,
        path_regex,
        methods,
        headers,
        backend: r.backend,
        add_request_headers: header_pairs(
            c,
            &format!("{f}.add_request_headers"),
            r.add_request_headers,
        ),
        remove_request_headers: header_names(
            c,
            &format!("{f}.remove_request_headers"),
            r.remove_request_headers,
        ),
        add_response_headers: header_pairs(
            c,
            &format!("{f}.add_response_headers"),
            r.add_response_headers,
        ),
        remove_response_headers: header_names(
            c,
            &format!("{f}.remove_response_headers"),
            r.remove_response_headers,
        ),
        retries: r.retries,
        timeout: r
            .timeout
            .as_ref()
            .map(|t| c.duration(&format!("{f}.timeout"), Some(t), Duration::from_secs(30))),
        fallback: c.fallback(&format!("{f}.fallback"), r.fallback.as_ref()),
        redirect_https: r.redirect_https.unwrap_or(false),
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

fn validate_backend(c: &mut Checker, name: &str, b: RawBackend) -> Backend {
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

/// https listeners need at least one certificate; others may not have any. Only paths
/// are checked here (this crate does no I/O): the gateway reads and matches the files.
fn validate_certificates(
    c: &mut Checker,
    f: &str,
    protocol: Protocol,
    raw: Option<Vec<RawCertificate>>,
) -> Vec<CertificateFiles> {
    let list = raw.unwrap_or_default();
    match protocol {
        Protocol::Https if list.is_empty() => c.fail(
            format!("{f}.certificates"),
            "an https listener needs at least one certificate: \
             certificates = [ { cert = \"site.pem\", key = \"site.key\" } ]",
        ),
        Protocol::Http | Protocol::Tcp if !list.is_empty() => c.fail(
            format!("{f}.certificates"),
            "only https listeners have certificates; set protocol = \"https\" or remove them",
        ),
        _ => {}
    }
    let mut out = Vec::with_capacity(list.len());
    for (j, cert) in list.into_iter().enumerate() {
        for (key, value) in [("cert", &cert.cert), ("key", &cert.key)] {
            if value.is_empty() {
                c.fail(
                    format!("{f}.certificates[{j}].{key}"),
                    "empty; give the path of a PEM file",
                );
            }
        }
        out.push(CertificateFiles {
            cert: c.base_dir.join(&cert.cert),
            key: c.base_dir.join(&cert.key),
        });
    }
    out
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
