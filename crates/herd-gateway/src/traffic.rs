//! Traffic control on the request path (seed 004): rate limits, per-server connection
//! limits with a bounded queue, circuit breakers, CIDR ACLs and time windows, body size
//! limits and per-IP connection limits. The state machines are herd-balance's (atomics,
//! time as an argument); this module wires them to requests, responses and metrics.
//!
//! Zero cost when unused: a route, group or listener with nothing configured carries
//! `None` and the request path checks one `Option`.

use crate::clock;
use crate::proxy::{ip_key, InFlight};
use crate::snapshot::{Group, Snapshot};
use crate::worker::Worker;
use crate::Shared;
use bytes::Bytes;
use herd_balance::{
    hash64, Admission, BreakerParams, BreakerState, CircuitBreaker, KeyedAcquire, KeyedCounter,
    RateBucket, RateDecision, RateParams, RateTable,
};
use herd_config::traffic::{IpAcl, RateKey, TimeWindow};
use herd_config::{Listener, Route};
use herd_telemetry::{Counter, MetricKind, TextEncoder};
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;

/// Buckets per route with a keyed rate limit: 16 bytes each, so 256 KiB per route, however
/// many clients. A bucket is reusable once full again (`burst / per_second` after its last
/// request), so this holds every client active within that time up to 16 384 (8 per set).
pub const RATE_TABLE_SLOTS: usize = 16_384;

/// Client IPs with open connections tracked per listener with `max_conns_per_ip`: 8 bytes
/// each, 512 KiB per listener.
pub const PER_IP_TABLE_SLOTS: usize = 65_536;

/// How often a queued request looks again even without a wake-up (a reload starts a new
/// queue; slots freed by requests of the old snapshot wake the old one).
const QUEUE_RECHECK: Duration = Duration::from_millis(100);

/// Servers skipped as full in one pick: beyond this the group counts as full.
const MAX_FULL_SKIPS: usize = 64;

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

enum Rate {
    /// One bucket for the route: a single atomic shared by every worker.
    Route(RateBucket),
    Keyed(RateTable),
}

/// A route's own rules (and its listener's body limit), built with the snapshot.
pub struct RouteGuard {
    acl: IpAcl,
    hours: Option<TimeWindow>,
    rate: Option<(Rate, RateParams, RateKey)>,
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

    fn describe(&self) -> Value {
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

// ---------------------------------------------------------------- request body limit

/// The client's request body, cut off once it passes the limit: the upstream request
/// fails (its connection is dropped, the server never sees a complete body) and `exceeded`
/// tells the proxy to answer 413 if no response has gone out yet.
pub struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64) -> (LimitedBody, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let body = LimitedBody {
            inner,
            remaining: limit,
            exceeded: flag.clone(),
        };
        (body, flag)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body exceeds max_body_size")]
pub struct BodyTooLarge;

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                let n = d.len() as u64;
                if n > self.remaining {
                    self.exceeded.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                }
                self.remaining -= n;
            }
        }
        polled.map(|o| o.map(|r| r.map_err(Into::into)))
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------- circuit breaker

/// A backend group's breaker with its counters; carried across reloads while its settings
/// stay the same.
pub struct GroupBreaker {
    pub settings: herd_config::traffic::CircuitBreaker,
    breaker: CircuitBreaker,
    /// Transitions into closed, open, half-open.
    transitions: [Counter; 3],
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

/// The breaker's verdict for one request, to be given its outcome. Dropped without one
/// (client gone, request refused for its own fault) it records nothing.
pub struct BreakerTicket {
    group: Arc<Group>,
    admission: Admission,
}

impl BreakerTicket {
    /// None: no breaker. Err: open, fail fast.
    pub fn admit(group: &Arc<Group>) -> Result<Option<BreakerTicket>, ()> {
        let Some(b) = &group.breaker else {
            return Ok(None);
        };
        match b.admit(&group.config.name) {
            Admission::Reject => Err(()),
            admission => Ok(Some(BreakerTicket {
                group: group.clone(),
                admission,
            })),
        }
    }

    pub fn finish(self, success: bool) {
        if let Some(b) = &self.group.breaker {
            b.record(&self.group.config.name, self.admission, success);
        }
    }
}

// ---------------------------------------------------------------- per-server limit + queue

/// `max_conns_per_server` and its queue, per backend group (all workers together).
pub struct ConnLimit {
    pub max: u32,
    pub queue: Option<herd_config::traffic::ConnQueue>,
    waiting: AtomicU32,
    notify: Notify,
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

enum TryPick {
    Got(usize, InFlight),
    NoServer,
    AllFull,
}

fn try_pick(
    w: &Worker,
    group: &Group,
    limit: &Arc<ConnLimit>,
    pinned: Option<usize>,
    key: Option<u64>,
    tried: &[usize],
) -> TryPick {
    let mut exclude = [usize::MAX; crate::proxy::MAX_ATTEMPTS + MAX_FULL_SKIPS];
    exclude[..tried.len()].copy_from_slice(tried);
    let mut n = tried.len();
    loop {
        let Some(idx) = crate::proxy::pick(w, group, pinned, key, &exclude[..n]) else {
            return if n > tried.len() {
                TryPick::AllFull
            } else {
                TryPick::NoServer
            };
        };
        let server = &group.servers.0[idx];
        if server.load.try_inc_in_flight_below(limit.max) {
            return TryPick::Got(idx, InFlight::adopt(server, limit.clone()));
        }
        if n == exclude.len() {
            return TryPick::AllFull;
        }
        exclude[n] = idx;
        n += 1;
    }
}

/// Pick a server with a free slot, waiting in the group's queue when all are full.
pub async fn pick_with_slot(
    w: &Worker,
    group: &Group,
    limit: &Arc<ConnLimit>,
    pinned: Option<usize>,
    key: Option<u64>,
    tried: &[usize],
) -> Result<(usize, InFlight), SlotFailure> {
    // Nobody waiting: take a slot now if there is one (waiting requests go first).
    if limit.waiting() == 0 {
        match try_pick(w, group, limit, pinned, key, tried) {
            TryPick::Got(i, f) => return Ok((i, f)),
            TryPick::NoServer => return Err(SlotFailure::NoServer),
            TryPick::AllFull => {}
        }
    }
    let Some(queue) = &limit.queue else {
        limit.full.inc();
        return Err(SlotFailure::QueueFull);
    };
    let entered = limit
        .waiting
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < queue.max).then_some(n + 1)
        })
        .is_ok();
    if !entered {
        limit.full.inc();
        return Err(SlotFailure::QueueFull);
    }
    struct Leave<'a>(&'a ConnLimit);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _leave = Leave(limit);
    let deadline = tokio::time::Instant::now() + queue.timeout;
    loop {
        let notified = limit.notify.notified();
        tokio::pin!(notified);
        // Registered before looking, so a slot freed in between still wakes us.
        notified.as_mut().enable();
        match try_pick(w, group, limit, pinned, key, tried) {
            TryPick::Got(i, f) => return Ok((i, f)),
            TryPick::NoServer => return Err(SlotFailure::NoServer),
            TryPick::AllFull => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            limit.timeouts.inc();
            return Err(SlotFailure::QueueTimeout);
        }
        let nap = (deadline - now).min(QUEUE_RECHECK);
        let _ = tokio::time::timeout(nap, notified).await;
    }
}

// ---------------------------------------------------------------- per-IP connections

/// Per-listener traffic counters; they live in `Shared` (the listener set is fixed).
#[derive(Default)]
pub struct ListenerTrafficStats {
    /// Created on the first connection that needs it.
    per_ip: OnceLock<KeyedCounter>,
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

/// A connection's place in its IP's count, given back when the connection ends.
pub struct PerIpSlot {
    shared: Arc<Shared>,
    li: usize,
    slot: usize,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        if let Some(t) = self
            .shared
            .listener_stats
            .get(self.li)
            .and_then(|s| s.traffic.per_ip.get())
        {
            t.release(self.slot);
        }
    }
}

/// At accept: count the connection against its IP. Err = close it. Listeners that take the
/// client from a PROXY header are refused this setting by validation.
pub fn admit_connection(
    shared: &Arc<Shared>,
    li: usize,
    cfg: &Listener,
    peer: IpAddr,
) -> Result<Option<PerIpSlot>, ()> {
    let Some(max) = cfg.traffic.max_conns_per_ip else {
        return Ok(None);
    };
    let Some(stats) = shared.listener_stats.get(li) else {
        return Ok(None);
    };
    let table = stats
        .traffic
        .per_ip
        .get_or_init(|| KeyedCounter::new(PER_IP_TABLE_SLOTS));
    match table.acquire(ip_key(peer), max) {
        KeyedAcquire::Counted(slot) => Ok(Some(PerIpSlot {
            shared: shared.clone(),
            li,
            slot,
        })),
        KeyedAcquire::OverLimit => {
            stats.traffic.per_ip_rejected.inc();
            tracing::debug!(listener = %cfg.name, client = %peer, max, "connection refused: max_conns_per_ip reached");
            Err(())
        }
        KeyedAcquire::TableFull => {
            stats.traffic.per_ip_untracked.inc();
            Ok(None)
        }
    }
}

/// tcp listeners: is this client allowed? Counted when not.
pub fn tcp_permits(shared: &Shared, li: usize, client: IpAddr) -> bool {
    let snap = shared.snapshot.load();
    let ok = snap
        .config
        .listeners
        .get(li)
        .is_none_or(|l| listener_permits(l, client));
    if !ok {
        if let Some(s) = shared.listener_stats.get(li) {
            s.traffic.denied.inc();
        }
        tracing::debug!(client = %client, "tcp connection refused by the listener's allow/deny lists");
    }
    ok
}

// ---------------------------------------------------------------- metrics and status

pub fn render_metrics(e: &mut TextEncoder, shared: &Shared, snap: &Snapshot) {
    e.family(
        "herd_route_rate_limited_total",
        MetricKind::Counter,
        "Requests answered 429 by the route's rate limit.",
    );
    for l in &snap.listeners {
        for r in &l.routes {
            if let Some(g) = r.traffic.as_ref().filter(|g| g.rate.is_some()) {
                e.counter(
                    "herd_route_rate_limited_total",
                    &[("listener", &l.name), ("route", &r.label)],
                    g.rate_limited.get(),
                );
            }
        }
    }
    e.family(
        "herd_route_refused_total",
        MetricKind::Counter,
        "Requests refused by the route's rules before any server: forbidden (allow/deny, 403), outside_hours (hours, 403) or too_large (max_body_size, 413).",
    );
    for l in &snap.listeners {
        for r in &l.routes {
            if let Some(g) = &r.traffic {
                for (reason, v) in [
                    ("forbidden", &g.forbidden),
                    ("outside_hours", &g.outside_hours),
                    ("too_large", &g.too_large),
                ] {
                    e.counter(
                        "herd_route_refused_total",
                        &[
                            ("listener", &l.name),
                            ("route", &r.label),
                            ("reason", reason),
                        ],
                        v.get(),
                    );
                }
            }
        }
    }
    let listener_family =
        |e: &mut TextEncoder, name: &str, help: &str, f: &dyn Fn(&ListenerTrafficStats) -> u64| {
            e.family(name, MetricKind::Counter, help);
            for (l, st) in snap.config.listeners.iter().zip(&shared.listener_stats) {
                e.counter(name, &[("listener", &l.name)], f(&st.traffic));
            }
        };
    listener_family(
        e,
        "herd_listener_denied_total",
        "Connections (tcp) or requests (http) refused by the listener's allow/deny lists.",
        &|t| t.denied.get(),
    );
    listener_family(
        e,
        "herd_listener_header_timeouts_total",
        "Connections closed because a request head was not complete header_read_timeout after its first byte (slowloris).",
        &|t| t.header_timeouts.get(),
    );
    listener_family(
        e,
        "herd_listener_bad_host_total",
        "Requests refused with 400 for a missing, repeated, invalid or conflicting Host (RFC 9112 §3.2).",
        &|t| t.bad_host.get(),
    );
    listener_family(
        e,
        "herd_listener_per_ip_rejected_total",
        "Connections closed at accept because their IP had max_conns_per_ip open.",
        &|t| t.per_ip_rejected.get(),
    );

    let mut groups: Vec<&Arc<Group>> = snap.groups.values().collect();
    groups.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    // One family, one sample per backend that has the feature.
    let backend_family = |e: &mut TextEncoder,
                          name: &str,
                          kind: MetricKind,
                          help: &str,
                          rows: &mut dyn Iterator<Item = (&str, u64)>| {
        e.family(name, kind, help);
        for (backend, v) in rows {
            match kind {
                MetricKind::Gauge => e.gauge(name, &[("backend", backend)], v as i64),
                _ => e.counter(name, &[("backend", backend)], v),
            }
        }
    };
    let limited = || {
        groups
            .iter()
            .filter_map(|g| g.limit.as_ref().map(|l| (g.config.name.as_str(), l)))
    };
    backend_family(
        e,
        "herd_backend_queue_waiting",
        MetricKind::Gauge,
        "Requests waiting now for a server slot (max_conns_per_server).",
        &mut limited().map(|(n, l)| (n, u64::from(l.waiting()))),
    );
    backend_family(
        e,
        "herd_backend_queue_timeouts_total",
        MetricKind::Counter,
        "Requests that waited the queue's timeout without a server slot.",
        &mut limited().map(|(n, l)| (n, l.timeouts.get())),
    );
    backend_family(
        e,
        "herd_backend_queue_full_total",
        MetricKind::Counter,
        "Requests refused at once: every server at max_conns_per_server and the queue full.",
        &mut limited().map(|(n, l)| (n, l.full.get())),
    );
    let breakers = || {
        groups
            .iter()
            .filter_map(|g| g.breaker.as_ref().map(|b| (g.config.name.as_str(), b)))
    };
    backend_family(
        e,
        "herd_backend_circuit_state",
        MetricKind::Gauge,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
        &mut breakers().map(|(n, b)| (n, b.state() as u64)),
    );
    e.family(
        "herd_backend_circuit_transitions_total",
        MetricKind::Counter,
        "Circuit breaker transitions, by the state entered.",
    );
    for (name, b) in breakers() {
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            e.counter(
                "herd_backend_circuit_transitions_total",
                &[("backend", name), ("to", s.as_str())],
                b.transitions[s as usize].get(),
            );
        }
    }
    backend_family(
        e,
        "herd_backend_circuit_rejected_total",
        MetricKind::Counter,
        "Requests failed fast because the circuit breaker was open.",
        &mut breakers().map(|(n, b)| (n, b.rejected.get())),
    );
}

/// The group's traffic-control state for /status.
pub fn group_json(g: &Group) -> Value {
    json!({
        "max_conns_per_server": g.limit.as_ref().map(|l| l.max),
        "queue": g.limit.as_ref().and_then(|l| l.queue.as_ref().map(|q| json!({
            "max": q.max,
            "timeout_ms": q.timeout.as_millis() as u64,
            "waiting": l.waiting(),
            "timeouts": l.timeouts.get(),
            "full": l.full.get(),
        }))),
        "circuit_breaker": g.breaker.as_ref().map(|b| json!({
            "state": b.state().as_str(),
            "rejected": b.rejected.get(),
            "opened": b.transitions[BreakerState::Open as usize].get(),
            "consecutive_failures": b.settings.consecutive_failures,
            "error_rate": b.settings.error_rate,
            "open_for_ms": b.settings.open_for.as_millis() as u64,
            "half_open_probes": b.settings.half_open_probes,
        })),
    })
}

/// Routes' and listeners' traffic rules and counters for /status.
pub fn status_json(shared: &Shared, snap: &Snapshot) -> Value {
    let routes: Vec<Value> = snap
        .listeners
        .iter()
        .flat_map(|l| {
            l.routes.iter().filter_map(move |r| {
                r.traffic.as_ref().map(|g| {
                    let mut v = g.describe();
                    v["listener"] = json!(l.name);
                    v["route"] = json!(r.label);
                    v
                })
            })
        })
        .collect();
    let listeners: Vec<Value> = snap
        .config
        .listeners
        .iter()
        .zip(&shared.listener_stats)
        .map(|(l, st)| {
            json!({
                "listener": l.name,
                "max_conns_per_ip": l.traffic.max_conns_per_ip,
                "ips_with_connections": st.traffic.per_ip.get().map(KeyedCounter::keys),
                "per_ip_rejected": st.traffic.per_ip_rejected.get(),
                "per_ip_untracked": st.traffic.per_ip_untracked.get(),
                "denied": st.traffic.denied.get(),
                "header_read_timeout_ms": l.traffic.header_read_timeout.as_millis() as u64,
                "header_timeouts": st.traffic.header_timeouts.get(),
                "bad_host": st.traffic.bad_host.get(),
            })
        })
        .collect();
    json!({ "routes": routes, "listeners": listeners })
}
