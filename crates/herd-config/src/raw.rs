//! The file as written: serde structs that mirror the TOML one to one.
//! `deny_unknown_fields` everywhere, so a misspelt key is an error, not a silent default.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub gateway: Option<RawGateway>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    pub registry: Option<RawRegistry>,
    #[serde(default)]
    pub tracing: Option<RawTracing>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: String,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub max_queue: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub workers: Option<usize>,
    pub drain_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
    pub token_file: Option<String>,
    pub token_for_reads: Option<bool>,
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub protocol: Option<String>,
    pub bind: String,
    pub access_log: Option<String>,
    pub idle_timeout: Option<String>,
    /// https listeners: certificate chains and keys, chosen by SNI (SPEC §2).
    pub certificates: Option<Vec<RawCertificate>>,
    /// tcp listeners: the backend group every connection goes to.
    pub backend: Option<String>,
    pub accept_proxy_protocol: Option<bool>,
    /// Share the port with another process already listening on it (SO_REUSEPORT), as
    /// during a zero-downtime upgrade; off, such a port is refused at startup.
    pub reuse_port: Option<bool>,
    pub max_connections: Option<i64>,
    /// Traffic control (see `RawRoute` for the same keys on a route).
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub max_conns_per_ip: Option<i64>,
    /// "10MB", "512KiB" or an integer of bytes.
    pub max_body_size: Option<toml::Value>,
    pub header_read_timeout: Option<String>,
    /// tcp listeners: TLS passthrough, each connection routed by its ClientHello's SNI.
    pub sni_routes: Option<Vec<RawSniRoute>>,
    /// Share of this listener's requests traced (needs `[tracing]`).
    pub sample_ratio: Option<f64>,
}

/// `{ server_names = ["a.example.com", "*.b.example.com"], backend = "x" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSniRoute {
    pub server_names: Vec<String>,
    pub backend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub listener: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub backend: String,
    pub add_request_headers: Option<BTreeMap<String, String>>,
    pub remove_request_headers: Option<Vec<String>>,
    pub add_response_headers: Option<BTreeMap<String, String>>,
    pub remove_response_headers: Option<Vec<String>>,
    pub retries: Option<u32>,
    pub timeout: Option<String>,
    pub fallback: Option<RawFallback>,
    pub rate_limit: Option<RawRateLimit>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub hours: Option<RawHours>,
    pub max_body_size: Option<toml::Value>,
    pub redirect_https: Option<bool>,
    pub sample_ratio: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub policy: Option<String>,
    pub hash_key: Option<String>,
    pub servers: Option<Vec<RawServer>>,
    pub service: Option<String>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub retries: Option<u32>,
    pub max_idle_per_server: Option<usize>,
    pub fallback: Option<RawFallback>,
    pub health: Option<RawHealth>,
    pub passive: Option<RawPassive>,
    pub persistence: Option<RawPersistence>,
    pub proxy_protocol: Option<String>,
    pub max_conns_per_server: Option<i64>,
    pub queue: Option<RawQueue>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// "http1" (default) or "h2c"/"h2": HTTP/2 with prior knowledge to the servers.
    pub protocol: Option<String>,
    /// TLS to the servers (`[backends.x.tls]`).
    pub tls: Option<RawUpstreamTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub enabled: Option<bool>,
    pub ca: Option<String>,
    pub sni: Option<String>,
    pub verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub addr: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_threshold: Option<u32>,
    pub healthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    pub consecutive_failures: Option<u32>,
    pub cooldown: Option<String>,
    pub on_5xx: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPersistence {
    pub mode: String,
    pub cookie: Option<String>,
    pub max_age: Option<String>,
    pub http_only: Option<bool>,
    pub secure: Option<bool>,
    pub same_site: Option<String>,
    pub timeout: Option<String>,
}

/// `rate_limit = { key = "client_ip", per_second = 100, burst = 200 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub key: Option<String>,
    pub per_second: f64,
    pub burst: Option<i64>,
}

/// `hours = { from = "08:00", to = "18:00", utc_offset = "+08:00" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    pub from: String,
    pub to: String,
    pub utc_offset: Option<String>,
}

/// `queue = { max = 100, timeout = "2s" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max: i64,
    pub timeout: Option<String>,
}

/// `circuit_breaker = { consecutive_failures = 5, error_rate = 0.5, ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub consecutive_failures: Option<u32>,
    pub error_rate: Option<f64>,
    pub min_requests: Option<u32>,
    pub window: Option<String>,
    pub open_for: Option<String>,
    pub half_open_probes: Option<u32>,
}
