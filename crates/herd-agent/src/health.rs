//! The agent's own check of an instance (the manifest's `[health]`): a TCP connect, or an
//! HTTP/1.1 GET whose status must be one of `expect_status`. Only the status line is read.

use herd_agent_core::manifest::{Health, HealthKind};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One probe: Ok when healthy, Err with what was wrong.
pub async fn probe(h: &Health, addr: SocketAddr) -> Result<(), String> {
    tokio::time::timeout(h.timeout, once(h, addr))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", h.timeout)))
}

async fn once(h: &Health, addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let HealthKind::Http {
        path,
        expect_status,
    } = &h.kind
    else {
        return Ok(());
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: herd-agent\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    if expect_status.contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}
