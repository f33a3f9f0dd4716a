//! One request through the gateway, in named phases: route → persistence → pick →
//! connection → send (with bounded failover) → response edits → completion.

use crate::clock;
use crate::codec::body::UpstreamBody;
use crate::codec::headers;
use crate::codec::proxy_protocol;
use crate::http::admit::{pick, BreakerTicket, MAX_ATTEMPTS};
use crate::http::affinity::{hash_key, sticky_lookup, sticky_response};
use crate::http::context::{ClientConn, Worker};
use crate::http::edit::prepare_request;
use crate::http::failure::Failure;
use crate::http::reply::{fail, local, redirect_https, refuse};
use crate::http::respond::{Done, InFlight, LogRecord, ProxyBody};
use crate::http::retry::{self, Allowance, Decision, SendFailure};
use crate::state::snapshot::{Group, RouteState, ServerState};
use crate::traffic::{Refusal, SlotFailure};
use crate::upstream::pool::FromServer;
use crate::upstream::pool::{self, SendError, Sender};
use herd_config::RequestView;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct View<'a>(&'a http::request::Parts);

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.0.method.as_str()
    }
    fn host(&self) -> Option<&str> {
        headers::request_host(&self.0.headers, &self.0.uri)
    }
    fn path(&self) -> &str {
        self.0.uri.path()
    }
    fn header_matches(&self, name: &str, re: &herd_config::Regex) -> bool {
        self.0
            .headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| re.is_match(s)))
    }
}

pub async fn handle(
    w: Rc<Worker>,
    listener: usize,
    conn: Rc<ClientConn>,
    req: Request<UpstreamBody>,
) -> Result<Response<ProxyBody>, Infallible> {
    let grpc = crate::http::grpc::is_grpc(req.headers());
    let Ok(mut resp) = std::pin::pin!(route_and_forward(w, listener, conn, req)).await;
    if grpc {
        crate::http::grpc::localize(&mut resp);
    }
    Ok(resp)
}

async fn route_and_forward(
    w: Rc<Worker>,
    listener: usize,
    conn: Rc<ClientConn>,
    req: Request<UpstreamBody>,
) -> Result<Response<ProxyBody>, Infallible> {
    let client = conn.client;
    let snap = w.shared.snapshot.load_full();
    let ls = &snap.listeners[listener];
    let (mut parts, body) = req.into_parts();
    let host = headers::settle_host(&mut parts);
    let mut log = ls
        .access_log
        .as_ref()
        .map(|sink| LogRecord::new(Some(sink), &ls.name, client, &parts));
    if let Err(e) = host {
        if let Some(stats) = w.shared.listener_stats.get(listener) {
            stats.traffic.bad_host.inc();
        }
        let mut resp = local(StatusCode::BAD_REQUEST, e.message(), Done::local(log, None));
        // The request's framing is not in doubt, but its meaning is: end the connection
        // rather than read another request from a client that sends such things.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    }
    if !snap
        .config
        .listeners
        .get(listener)
        .is_none_or(|l| crate::traffic::listener_permits(l, client.ip()))
    {
        if let Some(stats) = w.shared.listener_stats.get(listener) {
            stats.traffic.denied.inc();
        }
        let denied = Refusal::Forbidden("forbidden: your address may not use this listener\n");
        return Ok(refuse(None, denied, log));
    }
    let route = {
        let view = View(&parts);
        ls.routes.iter().find(|r| r.route.matches(&view)).cloned()
    };
    let Some(route) = route else {
        let done = Done::local(log, None);
        return Ok(local(
            StatusCode::NOT_FOUND,
            "no route matches this request\n",
            done,
        ));
    };
    if let Some(ratio) = route.trace_ratio {
        let queue = &w.shared.spans;
        if let Some(t) = crate::http::trace::begin(&w, queue, &route, &mut parts.headers, ratio) {
            log.get_or_insert_with(|| LogRecord::new(None, &ls.name, client, &parts))
                .trace = Some(Box::new(t));
        }
    }
    if route.route.redirect_https && !conn.tls {
        return Ok(redirect_https(&parts, &route, log));
    }
    if let Some(guard) = &route.traffic {
        if let Err(refusal) = guard.check(&parts, client.ip()) {
            return Ok(refuse(Some(&route), refusal, log));
        }
    }
    // Pinned in place, as the request's other large futures are: see h1_server::serve.
    Ok(std::pin::pin!(forward(&w, route, &conn, parts, body, log)).await)
}

async fn forward(
    w: &Rc<Worker>,
    route: Arc<RouteState>,
    conn: &Rc<ClientConn>,
    mut parts: http::request::Parts,
    body: UpstreamBody,
    mut log: Option<LogRecord>,
) -> Response<ProxyBody> {
    let client = conn.client;
    if let Some(l) = &mut log {
        l.route = Some(route.label.clone());
    }
    let group = route.group.clone();
    let cfg = &group.config;
    let mut ticket = match BreakerTicket::admit(&group) {
        Ok(t) => t,
        Err(()) => return fail(&route, Failure::CircuitOpen, log),
    };
    let now_ms = clock::now_ms();
    let pinned = sticky_lookup(&group, &mut parts.headers, client.ip(), now_ms);
    let key = hash_key(&cfg.policy, &parts, client.ip());
    // WebSocket and other upgrades ride HTTP/1.1 servers only; h2c servers get the plain request.
    let mut upgrade = match cfg.protocol {
        herd_config::UpstreamProtocol::Http1 => crate::http::upgrade::take(&mut parts),
        herd_config::UpstreamProtocol::H2c => None,
    };
    prepare_request(&mut parts, &route, client, conn.tls);
    if let Some(u) = &upgrade {
        u.restore(&mut parts.headers);
    }

    let max_attempts = (1 + route.route.retries.unwrap_or(cfg.retries) as usize).min(MAX_ATTEMPTS);
    let timeout = route.route.timeout.unwrap_or(cfg.response_timeout);
    // A request with no body to lose can be sent again after a reset. Our HTTP/1.1 client
    // hands such a request back when it fails; hyper's HTTP/2 one does not, so keep a copy.
    let idempotent = is_idempotent(&parts.method);
    let replay = (max_attempts > 1
        && cfg.protocol == herd_config::UpstreamProtocol::H2c
        && idempotent
        && body.is_end_stream())
    .then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    let (body, too_large) = match (route.traffic.as_ref().and_then(|g| g.max_body), body) {
        (Some(max), UpstreamBody::Client(body)) => {
            let (limited, flag) = crate::codec::body::LimitedBody::new(body, max);
            (UpstreamBody::Limited(limited), Some(flag))
        }
        (_, body) => (body, None),
    };
    let mut req = Some(Request::from_parts(parts, body));
    let mut tried = [usize::MAX; MAX_ATTEMPTS];
    let mut attempts = 0;
    let mut stale = 0;
    let mut failure = Failure::NoServer;

    while attempts < max_attempts {
        let (idx, mut slot) = match &group.limit {
            None => match pick(w, &group, pinned, key, &tried[..attempts]) {
                Some(idx) => (idx, None),
                None => break,
            },
            Some(limit) => {
                // Boxed, like the connect below: a rare path whose state would otherwise
                // size every request's future, and so every idle client connection.
                match Box::pin(crate::http::admit::pick_with_slot(
                    w,
                    &group,
                    limit,
                    pinned,
                    key,
                    &tried[..attempts],
                ))
                .await
                {
                    Ok((idx, s)) => (idx, Some(s)),
                    Err(SlotFailure::NoServer) => break,
                    Err(f) => {
                        failure = Failure::Slot(f);
                        break;
                    }
                }
            }
        };
        let server = &group.servers.0[idx];
        if let Some(t) = log.as_mut().and_then(|l| l.trace.as_mut()) {
            t.picked = clock::now_nanos();
            t.attempts += 1;
        }
        // A server that gets PROXY headers learns the client from the connection, so its
        // connections belong to one client connection and never enter the shared pool.
        let private = cfg.proxy_protocol.map(|v| {
            proxy_protocol::encode(
                v.into(),
                &proxy_protocol::Header::Proxied {
                    source: client,
                    destination: conn.local,
                },
            )
        });
        let checkout = match &private {
            Some(_) => take_private(conn, server.pool_key).await,
            None => w.pool.checkout(server.pool_key, cfg).await,
        };
        let (sender, reused) = match checkout {
            Some(s) => (s, true),
            // Once per new server connection; its TLS and HTTP/2 handshake futures are
            // kilobytes, boxed so they are allocated only when dialing.
            None => {
                match Box::pin(pool::connect(&w.pool, server, &group, private.as_deref())).await {
                    Ok(s) => (s, false),
                    Err(e) => {
                        tracing::debug!(server = %server.addr, error = %e, "connect failed");
                        passive_failure(&group, server);
                        tried[attempts] = idx;
                        attempts += 1;
                        failure = Failure::Connect;
                        continue;
                    }
                }
            }
        };
        let Some(request) = req.take().or_else(|| rebuild(replay.as_ref())) else {
            break;
        };
        let in_flight = slot.take().unwrap_or_else(|| InFlight::begin(server));
        let sent_at = clock::now_nanos();
        if let Some(t) = log.as_mut().and_then(|l| l.trace.as_mut()) {
            t.sent = sent_at;
        }
        match std::pin::pin!(tokio::time::timeout(timeout, sender.send(request))).await {
            Ok(Ok((mut resp, sender))) => {
                let owner = private.is_some().then(|| conn.clone());
                // A 101 takes the server connection for the tunnel: it never returns to the pool.
                let switched = upgrade.take().and_then(|u| {
                    u.splice(&mut resp, crate::http::context::TunnelGuard::new(w.clone()))
                });
                if let Some(t) = ticket.take() {
                    t.finish(resp.status().as_u16() < 500);
                }
                let mut out = respond(
                    w, &route, in_flight, pinned, owner, client, sender, resp, sent_at, log,
                );
                if let Some(protocol) = switched {
                    crate::http::upgrade::restore(out.headers_mut(), &protocol);
                }
                return out;
            }
            Ok(Err(e)) => {
                drop(in_flight);
                if too_large
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::Relaxed))
                {
                    // The client's fault, not the server's: 413, and the breaker is not told.
                    if let Some(g) = &route.traffic {
                        g.too_large.inc();
                    }
                    return refuse(Some(&route), Refusal::TooLarge, log);
                }
                let allowance = Allowance {
                    reused,
                    idempotent,
                    retries: max_attempts > 1,
                    stale_resends: stale,
                };
                let (kind, returned, error) = match e {
                    SendError::Unsent(unsent) => (
                        SendFailure::Unsent,
                        Some(unsent),
                        "the connection closed before the request was sent".to_string(),
                    ),
                    SendError::ClientBody(error) => {
                        tracing::debug!(server = %server.addr, %error, "client request body failed");
                        (SendFailure::ClientBody, None, String::new())
                    }
                    SendError::Stale(error, again) => (
                        SendFailure::Stale {
                            returned: again.is_some(),
                        },
                        again,
                        error,
                    ),
                    SendError::Server(error, again) => (
                        SendFailure::Server {
                            returned: again.is_some(),
                        },
                        again,
                        error,
                    ),
                };
                match retry::decide(kind, allowance) {
                    Decision::ClientFault => {
                        failure = Failure::ClientBody;
                        break;
                    }
                    Decision::Resend => {
                        tracing::debug!(server = %server.addr, %error, "sending again on a fresh connection");
                        req = returned.map(|r| *r);
                        stale += 1;
                        continue;
                    }
                    Decision::NextAttempt { request_kept } => {
                        req = returned.filter(|_| request_kept).map(|r| *r);
                    }
                }
                tracing::debug!(server = %server.addr, %error, "request failed before a response");
                passive_failure(&group, server);
                tried[attempts] = idx;
                attempts += 1;
                failure = Failure::Reset;
                if req.is_none() && replay.is_none() {
                    break;
                }
            }
            Err(_) => {
                // The server may still act on it: a timeout is never retried.
                drop(in_flight);
                passive_failure(&group, server);
                failure = Failure::Timeout(timeout);
                break;
            }
        }
    }
    if let Some(t) = ticket {
        // Shedding by our own queue, or a client's broken body, says nothing about the
        // servers' health.
        if !matches!(failure, Failure::Slot(_) | Failure::ClientBody) {
            t.finish(false);
        }
    }
    fail(&route, failure, log)
}

/// This client connection's own upstream connection to `server`, if it has a usable one.
async fn take_private(conn: &ClientConn, server: u64) -> Option<Sender> {
    let (id, mut sender) = conn.private_upstream.borrow_mut().take()?;
    if id != server || !sender.usable().await {
        return None;
    }
    Some(sender)
}

fn rebuild(replay: Option<&(Method, Uri, HeaderMap)>) -> Option<Request<UpstreamBody>> {
    let (method, uri, headers) = replay?;
    let mut r = Request::new(UpstreamBody::Empty);
    *r.method_mut() = method.clone();
    *r.uri_mut() = uri.clone();
    *r.headers_mut() = headers.clone();
    Some(r)
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

pub(crate) fn passive_failure(group: &Group, server: &ServerState) {
    server.failures.inc();
    let now = clock::now_ms();
    if server.passive.on_failure(now) {
        server.refresh_usable(now);
        tracing::warn!(
            backend = %group.config.name,
            server = %server.addr,
            cooldown_ms = group.config.passive.cooldown.as_millis() as u64,
            "server ejected after consecutive failures"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn respond(
    w: &Rc<Worker>,
    route: &Arc<RouteState>,
    in_flight: InFlight,
    pinned: Option<usize>,
    owner: Option<Rc<ClientConn>>,
    client: SocketAddr,
    sender: Option<Sender>,
    resp: Response<FromServer>,
    sent_at: u64,
    mut log: Option<LogRecord>,
) -> Response<ProxyBody> {
    let group = &route.group;
    let Some(server) = in_flight.server().cloned() else {
        return fail(route, Failure::Reset, log);
    };
    let now = clock::now_nanos();
    let rtt = now.saturating_sub(sent_at);
    if let Some(t) = log.as_mut().and_then(|l| l.trace.as_mut()) {
        t.head = now;
    }
    let status = resp.status().as_u16();
    server.load.observe_latency(rtt, now);
    server.latency.observe_nanos(rtt);
    route.latency.observe_nanos(rtt);
    server.responses.record(status);
    route.responses.record(status);
    if status >= 500 && group.config.passive.on_5xx {
        passive_failure(group, &server);
    } else {
        server.passive.on_success();
    }

    let (mut rp, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut rp.headers);
    for name in &route.response_remove {
        rp.headers.remove(name);
    }
    for (name, value) in &route.response_add {
        rp.headers.insert(name.clone(), value.clone());
    }
    let idx = group.servers.0.iter().position(|s| Arc::ptr_eq(s, &server));
    sticky_response(
        group,
        &mut rp.headers,
        &server,
        pinned.is_some() && pinned == idx,
        client.ip(),
    );

    let done = Done {
        worker: Some(w.clone()),
        server: Some(server),
        in_flight: Some(in_flight),
        sender,
        owner,
        max_idle: group.config.max_idle_per_server,
        idle_timeout: group.config.idle_timeout,
        status,
        log,
    };
    Response::from_parts(rp, ProxyBody::upstream(body, done))
}
