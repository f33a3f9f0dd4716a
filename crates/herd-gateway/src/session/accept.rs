//! A client connection's first steps, before its protocol's server takes it: the PROXY
//! header a balancer in front sends, the `ClientConn` the request path reads, and hyper's
//! HTTP/1.1 server for what our own loop does not serve.

use crate::codec::proxy_protocol::{self, Header};
use crate::http::context::{
    count_header_timeout, ClientConn, ConnSlot, HttpTimeouts, Worker, PROXY_HEADER_TIMEOUT,
};
use crate::http::proxy;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The real client and destination of a connection whose listener expects a PROXY header,
/// plus the bytes read past the header. None (connection to be closed) if it is bad.
pub async fn accept_proxy_header(
    w: &Worker,
    li: usize,
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    match proxy_protocol::read_header(stream, PROXY_HEADER_TIMEOUT).await {
        Ok((
            Header::Proxied {
                source,
                destination,
            },
            rest,
        )) => Some((source, destination, rest)),
        Ok((Header::Local, rest)) => Some((peer, local, rest)),
        Err(e) => {
            if let Some(stats) = w.shared.listener_stats.get(li) {
                stats.proxy_errors.inc();
            }
            let snap = w.shared.snapshot.load();
            let name = snap.listeners.get(li).map_or("", |l| l.name.as_str());
            tracing::warn!(listener = name, client = %peer, error = %e, "closing connection: bad PROXY protocol header");
            None
        }
    }
}

/// The client connection as the proxy path sees it, and the bytes read past a PROXY
/// header when the listener expects one. None if that header is bad: close the connection.
pub(crate) async fn client_conn(
    w: &Worker,
    li: usize,
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    accept_proxy: bool,
    tls: bool,
) -> Option<(ClientConn, Vec<u8>)> {
    let (client, local, rest) = if accept_proxy {
        accept_proxy_header(w, li, stream, peer, local).await?
    } else {
        (peer, local, Vec::new())
    };
    let conn = ClientConn {
        client,
        local,
        tls,
        private_upstream: RefCell::new(None),
    };
    Some((conn, rest))
}

/// Serve an HTTP/1.x client connection (plain or TLS) until it ends or the gateway stops.
pub(crate) async fn serve_hyper<I>(
    w: Rc<Worker>,
    li: usize,
    io: I,
    conn: Rc<ClientConn>,
    _slot: ConnSlot,
) where
    // Send: hyper hands an upgraded connection over as a boxed Send stream.
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeouts = HttpTimeouts::of(&w, li);
    let peer = conn.client;
    let svc_worker = w.clone();
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        if let Some(stats) = svc_worker.shared.listener_stats.get(li) {
            stats.count_request(req.version());
        }
        proxy::handle(
            svc_worker.clone(),
            li,
            conn.clone(),
            req.map(crate::codec::body::UpstreamBody::Client),
        )
    });
    let mut builder = http1::Builder::new();
    // idle_timeout bounds each wait for a request head, header_read_timeout the head from
    // its first byte (slowloris); hyper has one timer, session/head_timeout.rs splits it in two.
    let clock = crate::session::head_timeout::HeadClock::new(timeouts.head_read);
    builder
        .timer(crate::session::head_timeout::HeadTimer::new(clock.clone()))
        .keep_alive(true);
    builder.header_read_timeout(timeouts.idle);
    let io = crate::session::head_timeout::HeadWatch::new(io, clock.clone());
    // with_upgrades: a 101 answer hands the connection to the WebSocket splice.
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stop: watch::Receiver<bool> = w.shared.shutdown.subscribe();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                if e.is_timeout() && clock.head_expired() {
                    count_header_timeout(&w, li);
                    tracing::debug!(client = %peer, "closing connection: request head not complete within header_read_timeout");
                } else {
                    tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
                }
            }
        }
        _ = stop.wait_for(|s| *s) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
