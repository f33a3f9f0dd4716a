//! Raw file → validated `Config`. Every problem is collected with its field path, so an
//! operator fixes a file in one pass instead of one error per restart.

use crate::duration::parse_duration;
use crate::model::*;
use crate::raw::*;
use regex::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

mod backend;
use backend::{check_tcp_backend, validate_backend};
mod tls;
mod tracing;
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
            sample_ratio: tracing::ratio(c, &format!("{f}.sample_ratio"), l.sample_ratio),
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
        let tls = match (r.tls_ca, r.cert, r.key) {
            (None, None, None) => None,
            (None, _, _) => {
                c.fail(
                    "registry.tls_ca",
                    "missing: a client certificate needs the cluster's CA too, e.g. \
                     tls_ca = \"ca.pem\" (herd cert init makes it)",
                );
                None
            }
            (Some(_), Some(_), None) => {
                c.fail(
                    "registry.key",
                    "missing: cert needs its key, e.g. key = \"gw.key\"",
                );
                None
            }
            (Some(_), None, Some(_)) => {
                c.fail(
                    "registry.cert",
                    "missing: key needs its certificate, e.g. cert = \"gw.pem\"",
                );
                None
            }
            (Some(ca), cert, key) => Some(RegistryTls {
                ca: c.base_dir.join(ca),
                cert: cert.map(|p| c.base_dir.join(p)),
                key: key.map(|p| c.base_dir.join(p)),
            }),
        };
        Registry {
            servers: r.servers,
            token: r.token,
            tls,
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

    let tracing = tracing::section(c, raw.tracing);
    if tracing.is_none() {
        for (i, l) in listeners.iter().enumerate() {
            if l.sample_ratio.is_some() {
                c.fail(
                    format!("listeners[{i}].sample_ratio"),
                    "traces go nowhere: add [tracing] otlp_endpoint = \"http://127.0.0.1:7400/v1/traces\"",
                );
            }
        }
        for (i, r) in raw.routes.iter().enumerate() {
            if r.sample_ratio.is_some() {
                c.fail(
                    format!("routes[{i}].sample_ratio"),
                    "traces go nowhere: add [tracing] otlp_endpoint = \"http://127.0.0.1:7400/v1/traces\"",
                );
            }
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
        tracing,
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
        sample_ratio: tracing::ratio(c, &format!("{f}.sample_ratio"), r.sample_ratio),
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
