//! TLS termination for https listeners (rustls, ring provider, TLS 1.2 and 1.3).
//! Certificates are read from PEM files when a snapshot is built — at start and on every
//! reload, so a renewed certificate is picked up by a reload — and chosen per handshake by
//! SNI: exact names first, then wildcards, else the listener's first certificate. ALPN
//! offers h2 and http/1.1; the answer picks the HTTP server for the connection.

use crate::http::context::{ClientConn, ConnSlot, Worker};
use crate::session::accept::client_conn;
use crate::upstream::stream::Prefixed;
use bytes::BytesMut;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A client that has not finished its handshake by then is gone or hostile.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An https client connection: PROXY header (if the listener expects one), handshake,
/// then HTTP/2 or HTTP/1.1 as ALPN decided.
pub async fn serve(
    w: Rc<Worker>,
    li: usize,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    slot: ConnSlot,
) {
    let (tls, accept_proxy) = {
        let snap = w.shared.snapshot.load();
        (
            snap.listeners.get(li).and_then(|l| l.tls.clone()),
            snap.config
                .listeners
                .get(li)
                .is_some_and(|l| l.accept_proxy_protocol),
        )
    };
    let Some(tls) = tls else {
        return;
    };
    let Some((conn, rest)) =
        client_conn(&w, li, &mut stream, peer, local, accept_proxy, true).await
    else {
        return;
    };
    if rest.is_empty() {
        std::pin::pin!(handshake(w, li, stream, tls, conn, slot)).await;
    } else {
        // Boxed: a second connection type inline would size every https connection's task.
        Box::pin(handshake(
            w,
            li,
            Prefixed::new(rest, stream),
            tls,
            conn,
            slot,
        ))
        .await;
    }
}

async fn handshake<I>(
    w: Rc<Worker>,
    li: usize,
    io: I,
    tls: Arc<ServerConfig>,
    conn: ClientConn,
    slot: ConnSlot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io));
    let stream = match std::pin::pin!(accepted).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %conn.client, "TLS handshake timed out");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        // Boxed: inline, the HTTP/2 server's state would size every HTTP/1.1 connection.
        Box::pin(crate::session::h2::serve_h2(w, li, stream, conn, slot)).await;
    } else {
        // Our HTTP/1.1 loop, as for plain clients; it hands what it does not serve to hyper.
        let timeouts = crate::http::context::HttpTimeouts::of(&w, li);
        let serve = crate::session::h1::serve(w, li, stream, BytesMut::new(), conn, slot, timeouts);
        std::pin::pin!(serve).await;
    }
}
