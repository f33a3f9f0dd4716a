//! L4 proxying: a tcp listener relays each connection's bytes, both ways, to one server of
//! its backend group. Phases: PROXY header in (optional) → pick (the group's balancer, as
//! for HTTP) → connect, failing over before any byte moves → PROXY header out (optional)
//! → relay until both sides close or the pair idles past the listener's idle_timeout.
//! With `sni_routes` (TLS passthrough), the ClientHello is read first and its server name
//! picks the backend; the bytes read are replayed to the server, so TLS ends there.

use crate::clock;
use crate::codec::proxy_protocol::{self, Header};
use crate::codec::sni::Scan;
use crate::http::context::{ConnSlot, Worker};
use crate::http::proxy;
use crate::http::respond::InFlight;
use crate::state::snapshot::{Group, ServerState};
use crate::upstream::stream::Metered;
use herd_config::Persistence;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Retries are bounded by config (0-10), as for HTTP.
const MAX_ATTEMPTS: usize = 11;

pub async fn serve(
    w: Rc<Worker>,
    li: usize,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    _slot: ConnSlot,
) {
    let (mut group, idle_timeout, accept_proxy, name, by_sni) = {
        let snap = w.shared.snapshot.load();
        let (Some(cfg), Some(state)) = (snap.config.listeners.get(li), snap.listeners.get(li))
        else {
            return;
        };
        let Some(group) = state.group.clone() else {
            return;
        };
        (
            group,
            cfg.idle_timeout,
            cfg.accept_proxy_protocol,
            cfg.name.clone(),
            !state.sni_routes.is_empty(),
        )
    };
    let (client, destination, mut early) = if accept_proxy {
        match crate::session::accept::accept_proxy_header(&w, li, &mut stream, peer, local).await {
            Some(x) => x,
            None => return,
        }
    } else {
        (peer, local, Vec::new())
    };
    if !crate::http::admit::tcp_permits(&w.shared, li, client.ip()) {
        return;
    }
    if by_sni {
        let sni = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream, &mut early))
            .await
        {
            Ok(Ok(Some(sni))) => sni,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(listener = %name, client = %client, error = %e, "reading the ClientHello failed");
                return;
            }
            Err(_) => {
                tracing::debug!(listener = %name, client = %client, "no complete ClientHello within {HELLO_TIMEOUT:?}; closing");
                return;
            }
        };
        if let Some(g) = sni_group(&w, li, sni.as_deref()) {
            group = g;
        }
    }

    let Some((server, mut upstream, in_flight)) = connect(&w, &group, client).await else {
        tracing::warn!(listener = %name, backend = %group.config.name, client = %client,
            "closing connection: no server of the backend could be reached");
        return;
    };
    server.tcp_connections.inc();
    if let Some(v) = group.config.proxy_protocol {
        let header = proxy_protocol::encode(
            v.into(),
            &Header::Proxied {
                source: client,
                destination,
            },
        );
        if let Err(e) = upstream.write_all(&header).await {
            tracing::debug!(server = %server.addr, error = %e, "writing the PROXY header failed");
            return;
        }
    }
    if !early.is_empty() {
        // The client's first bytes, read together with its PROXY header.
        if upstream.write_all(&early).await.is_err() {
            return;
        }
        server.tcp_bytes_sent.add(early.len() as u64);
    }
    relay(stream, upstream, &server, idle_timeout).await;
    drop(in_flight);
}

/// How long a passthrough client may take to send its whole ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Read until `buf` holds a complete ClientHello (or is known not to be one, or reaches
/// the size bound): Some(server name, if any), or None when the client closed first
/// without sending anything.
async fn read_hello(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Option<String>>> {
    use tokio::io::AsyncReadExt;
    loop {
        match crate::codec::sni::scan(buf) {
            Scan::Hello(name) => return Ok(Some(name)),
            Scan::NotHello(why) => {
                tracing::debug!(
                    reason = why,
                    "not a TLS ClientHello; using the default backend"
                );
                return Ok(Some(None));
            }
            Scan::NeedMore if buf.len() >= crate::codec::sni::MAX_BUFFERED => {
                tracing::debug!("ClientHello too large to route; using the default backend");
                return Ok(Some(None));
            }
            Scan::NeedMore => {}
        }
        let start = buf.len();
        let room = (crate::codec::sni::MAX_BUFFERED - start).min(4096);
        buf.resize(start + room, 0);
        let n = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            // Closed mid-hello: relay what came (the server sees the same truncated
            // stream), unless nothing came at all.
            return Ok((!buf.is_empty()).then_some(None));
        }
    }
}

/// The group of the first SNI route matching `sni`, from the current snapshot, else the
/// listener's own backend (None only if the listener is gone).
fn sni_group(w: &Worker, li: usize, sni: Option<&str>) -> Option<Arc<Group>> {
    let snap = w.shared.snapshot.load();
    let state = snap.listeners.get(li)?;
    let Some(sni) = sni else {
        return state.group.clone();
    };
    state
        .sni_routes
        .iter()
        .find(|(route, _)| route.matches(sni))
        .map(|(_, g)| g.clone())
        .or_else(|| state.group.clone())
}

/// Pick and dial a server, moving to another on a connect failure (at most `retries`
/// others): nothing has been relayed yet, so a failover is invisible to the client.
async fn connect(
    w: &Worker,
    group: &Arc<Group>,
    client: SocketAddr,
) -> Option<(Arc<ServerState>, TcpStream, InFlight)> {
    let cfg = &group.config;
    let now_ms = clock::now_ms();
    let pinned = group.source_ip.as_ref().and_then(|table| {
        let id = table.get(client.ip(), now_ms)?;
        let idx = group.servers.0.iter().position(|s| s.id == id)?;
        group.servers.0[idx].serves_pinned(now_ms).then_some(idx)
    });
    let key = matches!(cfg.policy, herd_config::Policy::SourceIp)
        .then(|| crate::traffic::ip_key(client.ip()));
    let max_attempts = (1 + cfg.retries as usize).min(MAX_ATTEMPTS);
    let mut tried = [usize::MAX; MAX_ATTEMPTS];
    for attempt in 0..max_attempts {
        let Some(idx) = crate::http::admit::pick(w, group, pinned, key, &tried[..attempt]) else {
            if attempt == 0 {
                group.no_server.inc();
            }
            return None;
        };
        tried[attempt] = idx;
        let server = &group.servers.0[idx];
        // Counted from the dial on, so least_conn sees connections being opened.
        let in_flight = InFlight::begin(server);
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(server.socket_addr))
            .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                server.passive.on_success();
                if let (Some(table), Some(Persistence::SourceIp { .. })) =
                    (&group.source_ip, &cfg.persistence)
                {
                    table.put(client.ip(), server.id, clock::now_ms());
                }
                return Some((server.clone(), stream, in_flight));
            }
            Ok(Err(e)) => {
                tracing::debug!(server = %server.addr, error = %e, "tcp connect failed");
            }
            Err(_) => {
                tracing::debug!(server = %server.addr, timeout = ?cfg.connect_timeout, "tcp connect timed out");
            }
        }
        drop(in_flight);
        proxy::passive_failure(group, server);
    }
    None
}

/// Copy both ways until both sides have closed (a half-close is passed on), or until no
/// byte has moved either way for `idle_timeout`.
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    server: &Arc<ServerState>,
    idle_timeout: Duration,
) {
    let last = Rc::new(Cell::new(clock::now_ms()));
    let mut client = Metered::new(client, server.clone(), |s| &s.tcp_bytes_sent, last.clone());
    let mut upstream = Metered::new(
        upstream,
        server.clone(),
        |s| &s.tcp_bytes_received,
        last.clone(),
    );
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let idle_ms = idle_timeout.as_millis() as u64;
    loop {
        let quiet_until = last.get().saturating_add(idle_ms);
        let now = clock::now_ms();
        if now >= quiet_until {
            tracing::debug!(server = %server.addr, ?idle_timeout, "closing idle tcp connection");
            return;
        }
        tokio::select! {
            r = &mut copy => {
                if let Err(e) = r {
                    tracing::debug!(server = %server.addr, error = %e, "tcp relay ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(quiet_until - now)) => {}
        }
    }
}
