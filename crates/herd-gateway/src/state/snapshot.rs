//! The immutable view every request reads: routes, backend groups and their servers,
//! built from a validated `Config` and swapped whole on reload (ArcSwap).
//! Server state (health, counters, admin overrides) is carried across reloads by
//! (backend, address), so a reload neither resets health nor forgets a drained server.

use crate::state::access_log::AccessLogSink;
use crate::state::lock::ShortMutex as Mutex;
use crate::state::sticky::SourceIpTable;
use arc_swap::ArcSwap;
use herd_balance::{
    hash64, Balancer, HealthState, HealthTracker, PassiveEjector, Policy, ServerLoad,
};
use herd_config::{Backend, Config, Route};
use herd_telemetry::{Counter, Histogram};
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

/// Operator-set state of a server, from the runtime API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminState {
    /// Takes traffic.
    Ready = 0,
    /// No new clients; clients pinned by persistence keep coming (HAProxy "drain").
    Drain = 1,
    /// No traffic at all (HAProxy "maint").
    Maint = 2,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
    fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }
}

/// Counters by response status class, 1xx..5xx.
#[derive(Default)]
pub struct StatusCounters {
    pub by_class: [Counter; 5],
}

impl StatusCounters {
    pub fn record(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].inc();
    }
    pub fn total(&self) -> u64 {
        self.by_class.iter().map(Counter::get).sum()
    }
}

pub struct ServerState {
    /// As written in the config; the identity used by the admin API and metrics.
    pub addr: String,
    pub socket_addr: SocketAddr,
    /// Stable id (hash of the address) for cookies: it does not reveal the address.
    pub id: u64,
    /// Key of this server's pooled upstream connections: (backend, address, TLS settings),
    /// so two backends naming one address — say, with different TLS names — never share
    /// a connection made for the other.
    pub pool_key: u64,
    pub cookie_id: String,
    pub load: ServerLoad,
    pub weight: AtomicU32,
    admin: AtomicU8,
    health: AtomicU8,
    pub tracker: Mutex<HealthTracker>,
    pub passive: PassiveEjector,
    pub responses: StatusCounters,
    /// Attempts that got no response: connect errors, resets, timeouts.
    pub failures: Counter,
    pub latency: Histogram,
    /// TCP (L4) connections relayed to this server, and the bytes each way.
    pub tcp_connections: Counter,
    /// Active health checks run against this server, by outcome.
    pub checks_passed: Counter,
    pub checks_failed: Counter,
    pub tcp_bytes_sent: Counter,
    pub tcp_bytes_received: Counter,
}

impl ServerState {
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }
    pub fn set_admin(&self, s: AdminState) {
        self.admin.store(s as u8, Ordering::Relaxed);
    }
    pub fn healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == 0
    }
    pub fn set_health(&self, s: HealthState) {
        self.health
            .store(u8::from(s != HealthState::Healthy), Ordering::Relaxed);
    }
    /// May a client already pinned to this server (persistence) keep using it?
    pub fn serves_pinned(&self, now_ms: u64) -> bool {
        self.healthy() && self.admin() != AdminState::Maint && !self.passive.is_ejected(now_ms)
    }
    /// Recompute the balancer's view; cheap, called on every state change and by the ticker.
    pub fn refresh_usable(&self, now_ms: u64) {
        let usable =
            self.healthy() && self.admin() == AdminState::Ready && !self.passive.is_ejected(now_ms);
        if usable != self.load.usable() {
            self.load.set_usable(usable);
        }
    }
    pub fn state_name(&self, now_ms: u64) -> &'static str {
        if !self.healthy() {
            "down"
        } else if self.passive.is_ejected(now_ms) {
            "ejected"
        } else {
            match self.admin() {
                AdminState::Ready => "up",
                AdminState::Drain => "drain",
                AdminState::Maint => "maint",
            }
        }
    }
}

pub struct ServerList(pub Vec<Arc<ServerState>>);

impl herd_balance::Loads for ServerList {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize) -> &ServerLoad {
        &self.0[i].load
    }
}

pub struct Group {
    pub config: Backend,
    pub servers: ServerList,
    /// Swapped by the runtime re-weight API without a reload.
    pub balancer: ArcSwap<Balancer>,
    /// Shared with the previous snapshot when persistence is unchanged: a reload must not
    /// forget which client is pinned where.
    pub source_ip: Option<Arc<SourceIpTable>>,
    pub no_server: Counter,
    /// `max_conns_per_server` and its queue; None when not configured.
    pub limit: Option<Arc<crate::traffic::ConnLimit>>,
    /// Kept across reloads while its settings are unchanged; None when not configured.
    pub breaker: Option<Arc<crate::traffic::GroupBreaker>>,
    /// TLS to the servers, built (CA read) with this snapshot; None = cleartext.
    pub tls: Option<Arc<crate::state::backend_tls::BackendTls>>,
}

impl Group {
    pub fn server_index(&self, addr: &str) -> Option<usize> {
        self.servers.0.iter().position(|s| s.addr == addr)
    }
    pub fn server_by_cookie(&self, id: &str) -> Option<usize> {
        self.servers.0.iter().position(|s| s.cookie_id == id)
    }
    pub fn rebuild_balancer(&self) {
        let weights: Vec<u32> = self
            .servers
            .0
            .iter()
            .map(|s| s.weight.load(Ordering::Relaxed))
            .collect();
        let ids: Vec<u64> = self.servers.0.iter().map(|s| s.id).collect();
        let policy = balance_policy(&self.config);
        self.balancer
            .store(Arc::new(Balancer::with_ids(policy, &weights, &ids)));
    }
}

pub fn balance_policy(b: &Backend) -> Policy {
    use herd_config::Policy as P;
    match b.policy {
        P::RoundRobin => Policy::RoundRobin,
        P::LeastConn => Policy::LeastConn,
        P::Random => Policy::Random,
        P::P2c => Policy::P2c,
        P::Ewma => Policy::Ewma,
        P::SourceIp | P::Uri | P::UrlParam(_) | P::Header(_) | P::Cookie(_) => {
            Policy::ConsistentHash
        }
    }
}

pub struct RouteState {
    pub route: Route,
    pub group: Arc<Group>,
    pub label: String,
    /// The route's header edits, parsed once here instead of on every request.
    pub request_add: Vec<(HeaderName, HeaderValue)>,
    pub request_remove: Vec<HeaderName>,
    pub response_add: Vec<(HeaderName, HeaderValue)>,
    pub response_remove: Vec<HeaderName>,
    pub responses: StatusCounters,
    pub latency: Histogram,
    /// Rate limit, ACL, time window, body limit; None when none applies.
    pub traffic: Option<crate::traffic::RouteGuard>,
    /// The share of this route's requests traced (route, else listener, else `[tracing]`);
    /// None when tracing is off and trace context passes through untouched.
    pub trace_ratio: Option<f64>,
}

pub struct ListenerState {
    pub name: String,
    /// http listeners: their routes in file order; empty for tcp.
    pub routes: Vec<Arc<RouteState>>,
    /// tcp listeners: the group every connection goes to.
    pub group: Option<Arc<Group>>,
    pub access_log: Option<Arc<AccessLogSink>>,
    /// https listeners: certificates as read when this snapshot was built.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// tcp listeners: TLS passthrough routes by SNI, in file order; `group` is the default.
    pub sni_routes: Vec<(herd_config::SniRoute, Arc<Group>)>,
}

pub struct Snapshot {
    pub revision: u64,
    pub config: Config,
    pub groups: HashMap<String, Arc<Group>>,
    /// Same order as `config.listeners`.
    pub listeners: Vec<ListenerState>,
    /// The CA (and certificate) for reaching the registry over TLS, read when the config
    /// was, so a file that does not load refuses the config rather than failing later.
    pub registry_tls: Option<Arc<herd_api::TlsMaterial>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("backends.{backend}.servers: cannot resolve \"{addr}\": {reason}")]
    Resolve {
        backend: String,
        addr: String,
        reason: String,
    },
    #[error("listeners.{listener}.access_log: {reason}")]
    AccessLog { listener: String, reason: String },
    #[error("{0}")]
    Certificate(#[from] crate::state::certs::CertError),
    #[error("registry: {0}")]
    RegistryTls(#[from] herd_api::TlsError),
}

fn resolve(backend: &str, addr: &str) -> Result<SocketAddr, BuildError> {
    let err = |reason: String| BuildError::Resolve {
        backend: backend.to_string(),
        addr: addr.to_string(),
        reason,
    };
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    addr.to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address found".into()))
}

impl Snapshot {
    /// Build a snapshot, reusing server state and access-log sinks from `previous`.
    pub fn build(
        config: Config,
        revision: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, BuildError> {
        let mut groups = HashMap::new();
        for (name, backend) in &config.backends {
            let old_group = previous.and_then(|p| p.groups.get(name));
            let mut servers = Vec::with_capacity(backend.servers.len());
            for s in &backend.servers {
                let reuse = old_group
                    .and_then(|g| g.server_index(&s.addr).map(|i| g.servers.0[i].clone()))
                    .filter(|_| same_checks(old_group.map(|g| &g.config), backend));
                let state = match reuse {
                    Some(st) => {
                        // A reload restores the file's weights; runtime overrides are temporary.
                        st.weight.store(s.weight, Ordering::Relaxed);
                        st
                    }
                    None => Arc::new(new_server(backend, &s.addr, s.weight)?),
                };
                servers.push(state);
            }
            let weights: Vec<u32> = servers
                .iter()
                .map(|s| s.weight.load(Ordering::Relaxed))
                .collect();
            let ids: Vec<u64> = servers.iter().map(|s| s.id).collect();
            let source_ip = match &backend.persistence {
                Some(herd_config::Persistence::SourceIp { timeout }) => Some(
                    old_group
                        .filter(|g| g.config.persistence == backend.persistence)
                        .and_then(|g| g.source_ip.clone())
                        .unwrap_or_else(|| Arc::new(SourceIpTable::new(*timeout))),
                ),
                _ => None,
            };
            let tls = match &backend.tls {
                None => None,
                Some(t) => Some(Arc::new(crate::state::backend_tls::BackendTls::build(
                    name,
                    t,
                    backend.protocol,
                )?)),
            };
            let group = Group {
                tls,
                balancer: ArcSwap::from_pointee(Balancer::with_ids(
                    balance_policy(backend),
                    &weights,
                    &ids,
                )),
                config: backend.clone(),
                servers: ServerList(servers),
                source_ip,
                no_server: Counter::new(),
                limit: crate::traffic::ConnLimit::new(&backend.traffic).map(Arc::new),
                breaker: backend.traffic.circuit_breaker.as_ref().map(|cb| {
                    old_group
                        .and_then(|g| g.breaker.clone())
                        .filter(|b| b.settings == *cb)
                        .unwrap_or_else(|| Arc::new(crate::traffic::GroupBreaker::new(cb)))
                }),
            };
            groups.insert(name.clone(), Arc::new(group));
        }
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for (li, l) in config.listeners.iter().enumerate() {
            let tls = match l.protocol {
                herd_config::Protocol::Https => Some(crate::state::certs::server_config(
                    &format!("listeners[{li}]"),
                    &l.certificates,
                )?),
                _ => None,
            };
            let routes = config
                .routes
                .iter()
                .filter(|_| l.protocol.is_http())
                .filter(|r| r.listener.as_deref().is_none_or(|n| n == l.name))
                .map(|r| {
                    Arc::new(RouteState {
                        group: groups[&r.backend].clone(),
                        request_add: header_pairs(&r.add_request_headers),
                        request_remove: header_names(&r.remove_request_headers),
                        response_add: header_pairs(&r.add_response_headers),
                        response_remove: header_names(&r.remove_response_headers),
                        label: r.label(),
                        route: r.clone(),
                        responses: StatusCounters::default(),
                        latency: Histogram::latency(),
                        traffic: crate::traffic::RouteGuard::build(r, l),
                        trace_ratio: config
                            .tracing
                            .as_ref()
                            .map(|t| r.sample_ratio.or(l.sample_ratio).unwrap_or(t.sample_ratio)),
                    })
                })
                .collect();
            let old_sink = previous.and_then(|p| {
                p.listeners
                    .iter()
                    .find(|o| o.name == l.name)
                    .and_then(|o| o.access_log.clone())
            });
            let access_log = match &l.access_log {
                None => None,
                Some(target) => match old_sink.filter(|s| s.target() == target) {
                    Some(s) => Some(s),
                    None => Some(Arc::new(AccessLogSink::open(target).map_err(|e| {
                        BuildError::AccessLog {
                            listener: l.name.clone(),
                            reason: e.to_string(),
                        }
                    })?)),
                },
            };
            listeners.push(ListenerState {
                name: l.name.clone(),
                routes,
                group: l.backend.as_ref().and_then(|b| groups.get(b).cloned()),
                access_log,
                tls,
                sni_routes: l
                    .sni_routes
                    .iter()
                    .filter_map(|r| Some((r.clone(), groups.get(&r.backend)?.clone())))
                    .collect(),
            });
        }
        let registry_tls = match config.registry.as_ref().and_then(|r| r.tls.as_ref()) {
            Some(t) => Some(herd_api::TlsMaterial::load(herd_api::TlsFiles {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
                ca_flag: "registry.tls_ca",
                cert_flag: "registry.cert",
                key_flag: "registry.key",
            })?),
            None => None,
        };

        let snap = Snapshot {
            revision,
            config,
            groups,
            listeners,
            registry_tls,
        };
        let now = crate::clock::now_ms();
        for g in snap.groups.values() {
            for s in &g.servers.0 {
                s.refresh_usable(now);
            }
        }
        Ok(snap)
    }

    pub fn group_server(
        &self,
        backend: &str,
        addr: &str,
    ) -> Option<(Arc<Group>, Arc<ServerState>)> {
        let g = self.groups.get(backend)?;
        let i = g.server_index(addr)?;
        Some((g.clone(), g.servers.0[i].clone()))
    }
}

fn header_pairs(list: &[(String, String)]) -> Vec<(HeaderName, HeaderValue)> {
    list.iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}

fn header_names(list: &[String]) -> Vec<HeaderName> {
    list.iter()
        .filter_map(|k| HeaderName::from_bytes(k.as_bytes()).ok())
        .collect()
}

/// Server state survives a reload only if what judges its health is unchanged.
fn same_checks(old: Option<&Backend>, new: &Backend) -> bool {
    old.is_some_and(|o| o.health == new.health && o.passive == new.passive && o.tls == new.tls)
}

fn new_server(backend: &Backend, addr: &str, weight: u32) -> Result<ServerState, BuildError> {
    let socket_addr = resolve(&backend.name, addr)?;
    let id = hash64(addr.as_bytes());
    let pool_key = hash64(format!("{}\0{addr}\0{:?}", backend.name, backend.tls).as_bytes());
    let (fall, rise) = backend
        .health
        .as_ref()
        .map_or((3, 2), |h| (h.unhealthy_threshold, h.healthy_threshold));
    Ok(ServerState {
        addr: addr.to_string(),
        socket_addr,
        id,
        pool_key,
        cookie_id: format!("{id:016x}"),
        load: ServerLoad::new(),
        weight: AtomicU32::new(weight),
        admin: AtomicU8::new(AdminState::Ready as u8),
        health: AtomicU8::new(0),
        tracker: Mutex::new(HealthTracker::new(fall, rise)),
        passive: PassiveEjector::new(
            backend.passive.consecutive_failures,
            backend.passive.cooldown.as_millis() as u64,
        ),
        responses: StatusCounters::default(),
        failures: Counter::new(),
        latency: Histogram::latency(),
        tcp_connections: Counter::new(),
        checks_passed: Counter::new(),
        checks_failed: Counter::new(),
        tcp_bytes_sent: Counter::new(),
        tcp_bytes_received: Counter::new(),
    })
}

/// Read every https listener's certificates and every backend's CA bundle as a start or
/// reload would (`herd check`).
pub fn check_certificates(config: &herd_config::Config) -> Result<(), BuildError> {
    for (i, l) in config.listeners.iter().enumerate() {
        if l.protocol == herd_config::Protocol::Https {
            crate::state::certs::server_config(&format!("listeners[{i}]"), &l.certificates)?;
        }
    }
    for (name, b) in &config.backends {
        if let Some(t) = &b.tls {
            crate::state::backend_tls::BackendTls::build(name, t, b.protocol)?;
        }
    }
    Ok(())
}
