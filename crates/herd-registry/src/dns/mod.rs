//! The catalog over DNS (`herd server --dns ADDR`), in the manner of Consul's DNS interface:
//!
//! - `A`/`AAAA <service>.service.herd.`: one record per instance whose address is an IPv4
//!   (IPv6) literal, rotated by one on every answer (DNS round robin);
//! - `SRV <service>.service.herd.`: one SRV per instance (priority 1, the instance's weight,
//!   its port, target `<id>.<service>.instance.herd.`) with the targets' A/AAAA records in
//!   the additional section; an instance whose address is a host name gets that name as its
//!   target instead (and no additional record);
//! - `A`/`AAAA`/`SRV <id>.<service>.instance.herd.`: that one instance;
//! - a name under `herd.` that names nothing: NXDOMAIN (NOERROR with no answer when the name
//!   exists but has no record of the type asked, and for the names that exist only above
//!   others: `herd.`, `service.herd.`, `instance.herd.`, `<service>.instance.herd.`), with a
//!   synthetic SOA for negative caching (RFC 2308); `SOA herd.` answers that SOA;
//!   a name outside `herd.`: REFUSED; names are case-insensitive.
//!
//! Reads are served from this node's applied state without a read barrier (serializable): a
//! DNS answer is stale the moment a cache keeps it, clients retry, and a query must not
//! wait on (or fail with) the leader. Every record has a TTL of [`TTL_SECS`].
//!
//! Why hickory-proto alone and not hickory-server: the server crate brings an authority /
//! catalog / request-handler framework (and its own task and error plumbing) built for zone
//! files; herd needs one synthetic zone answered from memory. Parsing and building messages
//! with hickory-proto over our own tokio `UdpSocket`/`TcpListener` loop is a few dozen lines,
//! keeps the dependency tree small and leaves herd in control of limits and shutdown.

mod answer;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use answer::{Catalog, Responder};
pub(crate) use store::StoreCatalog;

use crate::raft::node::RegistryNode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this many TCP connections at once; more wait in the accept queue.
const MAX_TCP_CONNS: usize = 128;

/// The DNS sockets, bound before the node starts so that a busy port fails the start.
pub(crate) struct Sockets {
    udp: UdpSocket,
    /// TCP on the same port; None if it could not be had (UDP still works).
    tcp: Option<TcpListener>,
    pub(crate) addr: SocketAddr,
}

/// Bind UDP on `addr` and TCP on the same port (when `addr` has port 0, the port UDP got).
pub(crate) async fn bind(addr: &str) -> std::io::Result<Sockets> {
    let mut last_err = None;
    for _ in 0..5 {
        let udp = UdpSocket::bind(addr).await?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => {
                return Ok(Sockets {
                    udp,
                    tcp: Some(tcp),
                    addr: local,
                })
            }
            // The port UDP picked is taken for TCP: pick again.
            Err(e) if addr.ends_with(":0") => last_err = Some(e),
            Err(e) => {
                tracing::warn!(addr = %local, error = %e, "DNS over TCP unavailable; UDP only");
                return Ok(Sockets {
                    udp,
                    tcp: None,
                    addr: local,
                });
            }
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no port for DNS")))
}

/// Serve DNS on `sockets` until `stop` turns true.
pub(crate) fn spawn(
    node: Arc<RegistryNode>,
    sockets: Sockets,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let responder = Arc::new(Responder::new(StoreCatalog::new(node)));
    tracing::info!(addr = %sockets.addr, tcp = sockets.tcp.is_some(), "serving DNS for herd.");
    tokio::spawn(serve_udp(sockets.udp, responder.clone(), stop.clone()));
    if let Some(tcp) = sockets.tcp {
        tokio::spawn(serve_tcp(tcp, responder, stop));
    }
}

async fn serve_udp<C: Catalog + Send + Sync + 'static>(
    socket: UdpSocket,
    responder: Arc<Responder<C>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS udp receive");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        if let Some(reply) = responder.answer(packet, true) {
            if let Err(e) = socket.send_to(&reply, peer).await {
                tracing::debug!(%peer, error = %e, "DNS udp send");
            }
        }
    }
}

async fn serve_tcp<C: Catalog + Send + Sync + 'static>(
    listener: TcpListener,
    responder: Arc<Responder<C>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let responder = responder.clone();
                tokio::spawn(async move {
                    let _ = serve_tcp_conn(stream, &responder).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors and the like: do not spin.
                tracing::debug!(error = %e, "DNS tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Length-prefixed messages (RFC 1035 §4.2.2), one answer per query, until the client
/// closes, sends garbage we cannot answer, or idles for [`TCP_IDLE`].
async fn serve_tcp_conn<C: Catalog>(
    mut stream: TcpStream,
    responder: &Responder<C>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        buf.resize(len, 0);
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(reply) = responder.answer(&buf, false) else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&reply_len.to_be_bytes());
        out.extend_from_slice(&reply);
        tokio::time::timeout(TCP_IDLE, stream.write_all(&out))
            .await
            .map_err(|_| std::io::Error::other("write timed out"))??;
    }
}
