//! A worker's own keep-alive connections to servers. One pool per worker thread, used
//! only from that thread's event loop: no locks, no atomics, no sharing (the measured
//! thread-per-core design; hyper-util's shared pool cost about a fifth of throughput).
//! HTTP/1.1 connections (our own client, upstream/h1.rs) carry one request at a time and
//! wait idle in a list per server; an HTTP/2 connection (hyper's) multiplexes, so each
//! server has one shared per worker.

use crate::clock;
use crate::codec::body::{BodyError, UpstreamBody};
use crate::state::snapshot::{Group, ServerState};
use crate::upstream::h1::{self, H1Conn, Io};
use bytes::Bytes;
use herd_config::{Backend, UpstreamProtocol};
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection to a server, ready to carry a request.
pub enum Sender {
    H1(H1Conn),
    /// The server's shared HTTP/2 connection, the authority requests get when the
    /// client named none, and the scheme (`https` over TLS).
    H2(
        http2::SendRequest<UpstreamBody>,
        http::uri::Authority,
        http::uri::Scheme,
    ),
}

/// Why a request sent on a connection got no response.
pub enum SendError {
    /// Never written (the connection had closed): the request comes back to be resent.
    Unsent(Box<http::Request<UpstreamBody>>),
    /// The client's request body failed: not the server's fault.
    ClientBody(String),
    /// A kept-alive connection closed before any answer (see h1::SendError).
    /// Carries the request back when it had no body, so it can be sent again.
    Stale(String, Option<Box<http::Request<UpstreamBody>>>),
    /// The server failed to answer; the request comes back as with `Stale`.
    Server(String, Option<Box<http::Request<UpstreamBody>>>),
}

impl Sender {
    /// Whether a connection that waited (idle in the pool, or kept for one client) can
    /// carry a request now.
    pub async fn usable(&mut self) -> bool {
        match self {
            Sender::H1(c) => c.is_usable(),
            Sender::H2(s, ..) => !s.is_closed() && s.ready().await.is_ok(),
        }
    }

    /// Send a request and wait for the response head. An HTTP/1.1 connection travels in
    /// the response body until it ends; an HTTP/2 one comes back at once.
    pub async fn send(
        self,
        req: http::Request<UpstreamBody>,
    ) -> Result<(http::Response<FromServer>, Option<Sender>), SendError> {
        match self {
            Sender::H1(conn) => match std::pin::pin!(conn.send(req)).await {
                Ok(resp) => Ok((resp.map(FromServer::H1), None)),
                Err(h1::SendError::Unsent(req, _)) => Err(SendError::Unsent(req)),
                Err(h1::SendError::ClientBody(e)) => Err(SendError::ClientBody(e.to_string())),
                Err(h1::SendError::Stale(e, again)) => Err(SendError::Stale(e.to_string(), again)),
                Err(h1::SendError::Server(e, again)) => {
                    Err(SendError::Server(e.to_string(), again))
                }
            },
            Sender::H2(mut s, authority, scheme) => {
                let req = crate::upstream::h2::upstream_request(req, &authority, &scheme);
                match s.try_send_request(req).await {
                    Ok(resp) => Ok((
                        resp.map(FromServer::Hyper),
                        Some(Sender::H2(s, authority, scheme)),
                    )),
                    Err(mut e) => match e.take_message() {
                        Some(req) => Err(SendError::Unsent(Box::new(req))),
                        None => Err(SendError::Server(e.into_error().to_string(), None)),
                    },
                }
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(_) => false,
            Sender::H2(s, ..) => s.is_closed(),
        }
    }
}

struct Idle {
    sender: Sender,
    /// When it stops being worth reusing: checked in + the backend's idle_timeout.
    expires_ms: u64,
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<u64, Vec<Idle>>>,
    /// One multiplexed HTTP/2 connection per server (h2c backends).
    h2: RefCell<HashMap<u64, Sender>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

impl Pool {
    /// A ready pooled connection to a server (`key`: its `ServerState::pool_key`), newest
    /// first (warm in the server's caches), skipping ones that closed or idled past the
    /// backend's `idle_timeout`. For an h2c backend, the server's shared HTTP/2
    /// connection while it is open.
    pub async fn checkout(&self, key: u64, backend: &Backend) -> Option<Sender> {
        if backend.protocol == UpstreamProtocol::H2c {
            let mut map = self.h2.borrow_mut();
            return match map.get(&key) {
                Some(Sender::H2(s, a, scheme)) if !s.is_closed() => {
                    Some(Sender::H2(s.clone(), a.clone(), scheme.clone()))
                }
                Some(_) => {
                    map.remove(&key);
                    None
                }
                None => None,
            };
        }
        let now = clock::now_ms();
        loop {
            let mut idle = {
                let mut map = self.idle.borrow_mut();
                let list = map.get_mut(&key)?;
                drain_expired(list, now);
                list.pop()?
            };
            if idle.sender.usable().await {
                return Some(idle.sender);
            }
        }
    }

    pub fn checkin(&self, key: u64, sender: Sender, max_idle: usize, idle_timeout: Duration) {
        // An HTTP/2 connection stays in `h2` while open; a finished stream returns nothing.
        if max_idle == 0 || matches!(sender, Sender::H2(..)) {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(key).or_default();
        if list.len() >= max_idle {
            // Keep the newest: drop the one most likely to have been closed by the server.
            list.remove(0);
        }
        list.push(Idle {
            sender,
            expires_ms: clock::now_ms().saturating_add(idle_timeout.as_millis() as u64),
        });
    }

    /// Close idle connections past their idle_timeout. Checkout skips them anyway; this
    /// gives their descriptors (and the servers' connection slots) back when a server
    /// gets no more requests, after a burst filled its pool.
    pub fn sweep(&self, now_ms: u64) {
        let mut map = self.idle.borrow_mut();
        for list in map.values_mut() {
            drain_expired(list, now_ms);
        }
        map.retain(|_, list| !list.is_empty());
    }
}

/// Entries are pushed in time order, so the expired ones sit at the front.
fn drain_expired(list: &mut Vec<Idle>, now_ms: u64) {
    let expired = list.iter().take_while(|i| i.expires_ms <= now_ms).count();
    list.drain(..expired);
}

/// Dial a server and start the connection task on this worker's event loop: HTTP/1.1, or
/// HTTP/2 with prior knowledge for h2c backends, over TLS when the backend has it (the
/// handshake shares `connect_timeout` with the TCP connect). `proxy_header` (a PROXY
/// protocol header) is written first, before any TLS, when the backend wants one; such
/// connections are private to one client connection, so only the others become the
/// server's shared HTTP/2 connection.
pub async fn connect(
    pool: &Pool,
    server: &ServerState,
    group: &Group,
    proxy_header: Option<&[u8]>,
) -> Result<Sender, ConnectError> {
    let backend = &group.config;
    let addr = server.socket_addr;
    let timeout = backend.connect_timeout;
    let started = crate::clock::now();
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    let _ = stream.set_nodelay(true);
    if let Some(header) = proxy_header {
        use tokio::io::AsyncWriteExt;
        stream.write_all(header).await?;
    }
    let shared = proxy_header.is_none();
    let h2 = backend.protocol == UpstreamProtocol::H2c;
    let Some(tls) = &group.tls else {
        if h2 {
            return connect_h2(pool, server, stream, shared, Scheme::HTTP).await;
        }
        return Ok(Sender::H1(H1Conn::new(Io::Plain(stream))));
    };
    let handshake = tls.handshake(&server.addr, stream);
    let stream = tokio::time::timeout_at(started + timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(ConnectError::Tls)?;
    if h2 {
        return connect_h2(pool, server, stream, shared, Scheme::HTTPS).await;
    }
    Ok(Sender::H1(H1Conn::new(Io::Tls(Box::new(stream)))))
}

async fn connect_h2<I>(
    pool: &Pool,
    server: &ServerState,
    io: I,
    shared: bool,
    scheme: Scheme,
) -> Result<Sender, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(crate::upstream::h2::LocalExec)
        .timer(TokioTimer::new())
        // Finds a dead server on an otherwise quiet connection.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .handshake(TokioIo::new(io))
        .await?;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    let authority = http::uri::Authority::try_from(server.addr.as_str())
        .or_else(|_| http::uri::Authority::try_from(server.socket_addr.to_string()))
        .map_err(|e| ConnectError::Io(std::io::Error::other(e)))?;
    if shared {
        pool.h2.borrow_mut().insert(
            server.pool_key,
            Sender::H2(sender.clone(), authority.clone(), scheme.clone()),
        );
    }
    Ok(Sender::H2(sender, authority, scheme))
}

/// A server's response body: from our HTTP/1.1 client, or hyper's HTTP/2 one.
pub enum FromServer {
    H1(crate::upstream::h1::H1Body),
    Hyper(Incoming),
}

impl FromServer {
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            FromServer::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            FromServer::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }
    pub(crate) fn is_end_stream(&self) -> bool {
        match self {
            FromServer::H1(b) => b.is_end_stream(),
            FromServer::Hyper(b) => b.is_end_stream(),
        }
    }
    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            FromServer::H1(b) => b.size_hint(),
            FromServer::Hyper(b) => b.size_hint(),
        }
    }
}
