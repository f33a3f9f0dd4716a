//! A worker's own keep-alive connections to servers. One pool per worker thread, used
//! only from that thread's event loop: no locks, no atomics, no sharing (the measured
//! design in ARCHITECTURE.md; hyper-util's shared pool cost about a fifth of throughput).

use crate::body::UpstreamBody;
use crate::clock;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

pub type Sender = SendRequest<UpstreamBody>;

struct Idle {
    sender: Sender,
    since_ms: u64,
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<u64, Vec<Idle>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

impl Pool {
    /// A ready pooled connection to `server`, newest first (warm in the server's caches),
    /// skipping ones that closed or idled past `idle_timeout`.
    pub async fn checkout(&self, server: u64, idle_timeout: Duration) -> Option<Sender> {
        let oldest_ok = clock::now_ms().saturating_sub(idle_timeout.as_millis() as u64);
        loop {
            let mut idle = {
                let mut map = self.idle.borrow_mut();
                let list = map.get_mut(&server)?;
                // Entries are pushed in time order: expired ones sit at the front.
                let expired = list.iter().take_while(|i| i.since_ms < oldest_ok).count();
                list.drain(..expired);
                list.pop()?
            };
            if idle.sender.is_closed() {
                continue;
            }
            // A connection returned at body end may not have seen its dispatcher go idle
            // yet; waiting here is short and keeps it instead of dialing a new one.
            if idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    pub fn checkin(&self, server: u64, sender: Sender, max_idle: usize) {
        if sender.is_closed() || max_idle == 0 {
            return;
        }
        let mut map = self.idle.borrow_mut();
        let list = map.entry(server).or_default();
        if list.len() >= max_idle {
            // Keep the newest: drop the one most likely to have been closed by the server.
            list.remove(0);
        }
        list.push(Idle {
            sender,
            since_ms: clock::now_ms(),
        });
    }
}

/// Dial a server and start the HTTP/1.1 connection task on this worker's event loop.
/// `proxy_header` (a PROXY protocol header) is written first when the backend wants one.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    proxy_header: Option<&[u8]>,
) -> Result<Sender, ConnectError> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    let _ = stream.set_nodelay(true);
    if let Some(header) = proxy_header {
        use tokio::io::AsyncWriteExt;
        stream.write_all(header).await?;
    }
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
