//! The validated configuration: every value checked, defaults filled, regexes compiled.
//! The data plane builds its snapshot from this and never re-checks.

use regex::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: GatewaySettings,
    pub admin: Option<Admin>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub backends: BTreeMap<String, Backend>,
    /// Where `service = "..."` backends find their members.
    pub registry: Option<Registry>,
    /// Where the gateway's spans go; None: the gateway passes trace context on untouched
    /// and records nothing.
    pub tracing: Option<Tracing>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// As written: `http://host:port/path`.
    pub otlp_endpoint: String,
    /// `host:port` and the path of the endpoint, split once here.
    pub authority: String,
    pub path: String,
    /// Share of requests without a sampled parent that get a span (0.0–1.0, default 1.0).
    pub sample_ratio: f64,
    /// The `service.name` of the gateway's spans (default "herd-gateway").
    pub service_name: String,
    /// Finished spans waiting for export, at most; beyond, a span is dropped and counted.
    pub max_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Registry nodes ("host:port"); the next is tried when one does not answer.
    pub servers: Vec<String>,
    pub token: Option<String>,
    /// Speak TLS to the registry: trust its CA, present a certificate when it wants one.
    pub tls: Option<RegistryTls>,
}

/// Paths (resolved against the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    /// Worker threads, each with its own runtime, accept loop and connection pools.
    pub workers: usize,
    /// How long SIGTERM waits for in-flight requests before exiting anyway.
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: String,
    /// The file holding the admin token (first line); relative to the config file.
    pub token_file: Option<PathBuf>,
    /// Reads (`/status`, `/metrics`) need the token too, not only state changes.
    pub token_for_reads: bool,
    /// Host names accepted in requests besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// HTTP/1.1 and HTTP/2 over TLS, with certificates chosen by SNI.
    Https,
    /// L4: bytes are relayed both ways to one server of the listener's backend.
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
        }
    }
    /// Listeners that speak HTTP (with or without TLS) and so have routes.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

/// A certificate chain and its private key (PEM files), paths resolved against the
/// config file's directory. Read by the gateway at start and on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the gateway speaks to a backend's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive pooling.
    #[default]
    Http1,
    /// HTTP/2 over cleartext TCP with prior knowledge, multiplexed (gRPC servers).
    H2c,
}

impl UpstreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccessLog {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    pub bind: String,
    pub access_log: Option<AccessLog>,
    /// http: time a client connection may spend waiting for or sending the next request
    /// head. tcp: time with no byte in either direction before the pair is closed.
    pub idle_timeout: Duration,
    /// tcp only: the backend group every connection is relayed to.
    pub backend: Option<String>,
    /// Expect a PROXY protocol v1 or v2 header first on every connection (from an
    /// upstream load balancer) and take the client's address from it.
    pub accept_proxy_protocol: bool,
    /// Start even when another process already listens on `bind`, sharing the port with it
    /// (the kernel splits new connections between the two): for zero-downtime upgrades.
    pub reuse_port: bool,
    /// Open connections allowed on this listener (all workers together); over it, new
    /// connections are closed at once and counted.
    pub max_connections: Option<u64>,
    /// ACLs, per-IP connection limit, body size limit, header read timeout.
    pub traffic: crate::traffic::ListenerTraffic,
    /// https only: in file order; the first is the default when SNI matches none.
    pub certificates: Vec<CertificateFiles>,
    /// tcp only: TLS passthrough routes by SNI, in file order; a connection whose SNI
    /// matches none (or that has none) goes to `backend`.
    pub sni_routes: Vec<SniRoute>,
    /// Overrides `[tracing] sample_ratio` for this listener's requests.
    pub sample_ratio: Option<f64>,
}

/// One TLS passthrough route of a tcp listener: connections whose ClientHello names one
/// of `server_names` are relayed, still encrypted, to `backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    pub server_names: Vec<HostMatch>,
    pub backend: String,
}

impl SniRoute {
    pub fn matches(&self, sni: &str) -> bool {
        self.server_names.iter().any(|m| m.matches(sni))
    }
}

/// TLS from the gateway to a backend's servers (`[backends.x.tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM bundle of the CAs trusted for the servers' certificates (resolved against the
    /// config file's directory, read by the gateway at start and on every reload). None
    /// only when `verify` is off.
    pub ca: Option<PathBuf>,
    /// Sent as SNI and verified against the certificate; None = the host part of each
    /// server's address (an IP address sends no SNI and is checked against IP SANs).
    pub sni: Option<String>,
    /// Off = accept any certificate (insecure: for tests and migrations only).
    pub verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// "*.example.com" stored as ".example.com": matches any name ending in it.
    Suffix(String),
}

impl HostMatch {
    /// `host` without a port, in any case (DNS names are case-insensitive); the
    /// pattern is stored lower-case so the request path never allocates to compare.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the file, for error messages, metrics labels and the access log.
    pub index: usize,
    /// `listener` if given, else the route applies to every HTTP listener.
    pub listener: Option<String>,
    pub host: Option<HostMatch>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<Regex>,
    /// Upper-case method names; empty = any.
    pub methods: Vec<String>,
    /// Lower-case header name and the regex its value must match.
    pub headers: Vec<(String, Regex)>,
    pub backend: String,
    pub add_request_headers: Vec<(String, String)>,
    pub remove_request_headers: Vec<String>,
    pub add_response_headers: Vec<(String, String)>,
    pub remove_response_headers: Vec<String>,
    /// Overrides the backend's retries for this route.
    pub retries: Option<u32>,
    /// Overrides the backend's response_timeout for this route.
    pub timeout: Option<Duration>,
    pub fallback: Option<Fallback>,
    /// Rate limit, ACLs, time window, body size limit.
    pub traffic: crate::traffic::RouteTraffic,
    /// Answer requests that came over plain HTTP with 308 to the same https URL.
    pub redirect_https: bool,
    /// Overrides the listener's and `[tracing]`'s sample ratio for this route's requests.
    pub sample_ratio: Option<f64>,
}

/// What the request looks like to the router: enough to match without copying it.
pub trait RequestView {
    fn method(&self) -> &str;
    /// Host without port, if the request named one.
    fn host(&self) -> Option<&str>;
    fn path(&self) -> &str;
    /// Every value of the header, lower-case `name`.
    fn header_matches(&self, name: &str, re: &Regex) -> bool;
}

impl Route {
    pub fn matches<R: RequestView + ?Sized>(&self, req: &R) -> bool {
        if let Some(h) = &self.host {
            match req.host() {
                Some(host) if h.matches(host) => {}
                _ => return false,
            }
        }
        if let Some(p) = &self.path_prefix {
            if !req.path().starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(re) = &self.path_regex {
            if !re.is_match(req.path()) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method()) {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, re)| req.header_matches(name, re))
    }

    /// A short stable label for metrics and logs: "#<index>:<backend>".
    pub fn label(&self) -> String {
        format!("{}:{}", self.index, self.backend)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    LeastConn,
    Random,
    P2c,
    Ewma,
    SourceIp,
    Uri,
    UrlParam(String),
    Header(String),
    Cookie(String),
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastConn => "least_conn",
            Policy::Random => "random",
            Policy::P2c => "p2c",
            Policy::Ewma => "ewma",
            Policy::SourceIp => "source_ip",
            Policy::Uri => "uri",
            Policy::UrlParam(_) => "url_param",
            Policy::Header(_) => "header",
            Policy::Cookie(_) => "cookie",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// "host:port" as written; the data plane resolves it.
    pub addr: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub policy: Policy,
    /// The file's servers; for a `service` backend, the members the registry last reported.
    pub servers: Vec<Server>,
    /// Members follow this service in the registry's catalog instead of the file.
    pub service: Option<String>,
    pub connect_timeout: Duration,
    /// Time from sending the request to receiving the response head.
    pub response_timeout: Duration,
    /// A pooled idle connection to a server older than this is not reused.
    pub idle_timeout: Duration,
    /// How many other servers a failed attempt may move to.
    pub retries: u32,
    pub max_idle_per_server: usize,
    pub fallback: Option<Fallback>,
    pub health: Option<HealthCheck>,
    pub passive: PassiveHealth,
    pub persistence: Option<Persistence>,
    /// Send a PROXY protocol header on every new connection to a server.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Per-server connection limit with its queue, circuit breaker.
    pub traffic: crate::traffic::BackendTraffic,
    /// HTTP/1.1 (default) or HTTP/2 with prior knowledge to the servers.
    pub protocol: UpstreamProtocol,
    /// TLS to the servers; None = cleartext.
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

impl ProxyProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub path: String,
    pub host: Option<String>,
    /// Empty means any 2xx or 3xx.
    pub expect_status: Vec<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

impl HealthCheck {
    pub fn status_ok(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PassiveHealth {
    /// 0 disables passive ejection.
    pub consecutive_failures: u32,
    pub cooldown: Duration,
    /// Count 5xx answers as failures (connect errors and resets always count).
    pub on_5xx: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Persistence {
    InsertCookie {
        cookie: String,
        /// None = a session cookie, gone when the browser closes.
        max_age: Option<Duration>,
        http_only: bool,
        secure: bool,
        same_site: SameSite,
    },
    RewriteCookie {
        cookie: String,
    },
    SourceIp {
        timeout: Duration,
    },
}
