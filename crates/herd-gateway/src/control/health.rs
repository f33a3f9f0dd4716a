//! Active health checks (TCP connect or HTTP GET) and the ticker that lets passively
//! ejected servers back in after their cool-down. Runs on the control runtime, never on a
//! worker: a slow check must not delay a request.

use crate::clock;
use crate::state::backend_tls::BackendTls;
use crate::state::snapshot::{ServerState, Snapshot};
use bytes::Bytes;
use herd_balance::Transition;
use herd_config::{CheckKind, HealthCheck, ProxyProtocol};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Start one check loop per server of every group that configures checks.
pub fn spawn_checks(snap: &Snapshot) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for group in snap.groups.values() {
        let Some(check) = group.config.health.clone() else {
            continue;
        };
        let count = group.servers.0.len().max(1) as u32;
        for (i, server) in group.servers.0.iter().enumerate() {
            let check = check.clone();
            let server = server.clone();
            let backend = group.config.name.clone();
            let proxy_protocol = group.config.proxy_protocol;
            let h2 = group.config.protocol == herd_config::UpstreamProtocol::H2c;
            let tls = group.tls.clone();
            // Spread the first checks over the interval so N servers are not probed at once.
            let offset = check.interval * i as u32 / count;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut tick = tokio::time::interval(check.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let result = probe(&server, &check, proxy_protocol, h2, tls.as_deref()).await;
                    record(&backend, &server, result);
                }
            }));
        }
    }
    tasks
}

fn record(backend: &str, server: &ServerState, result: Result<(), String>) {
    if result.is_ok() {
        server.checks_passed.inc();
    } else {
        server.checks_failed.inc();
    }
    let transition = match server.tracker.lock() {
        Ok(mut t) => t.record(result.is_ok()).map(|tr| (tr, t.state())),
        Err(_) => None,
    };
    if let Some((transition, state)) = transition {
        server.set_health(state);
        server.refresh_usable(clock::now_ms());
        match transition {
            Transition::WentDown => tracing::warn!(
                backend, server = %server.addr, reason = %result.err().unwrap_or_default(),
                "server is DOWN: health check failed"
            ),
            Transition::CameUp => {
                tracing::info!(backend, server = %server.addr, "server is UP: health check passed")
            }
        }
    }
}

async fn probe(
    server: &ServerState,
    check: &HealthCheck,
    proxy_protocol: Option<ProxyProtocol>,
    h2: bool,
    tls: Option<&BackendTls>,
) -> Result<(), String> {
    let probe = probe_inner(server, check, proxy_protocol, h2, tls);
    match tokio::time::timeout(check.timeout, probe).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

async fn probe_inner(
    server: &ServerState,
    check: &HealthCheck,
    proxy_protocol: Option<ProxyProtocol>,
    h2: bool,
    tls: Option<&BackendTls>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(server.socket_addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // A server that expects PROXY headers gets one on checks too: LOCAL, "the balancer
    // speaking for itself" (HAProxy's check-send-proxy).
    if let Some(v) = proxy_protocol {
        use tokio::io::AsyncWriteExt;
        let header = crate::codec::proxy_protocol::encode(
            v.into(),
            &crate::codec::proxy_protocol::Header::Local,
        );
        stream
            .write_all(&header)
            .await
            .map_err(|e| format!("writing PROXY header: {e}"))?;
    }
    // With TLS, even a tcp check completes the handshake: a server whose certificate the
    // gateway would refuse cannot take requests.
    let Some(tls) = tls else {
        return probe_http(server, check, h2, stream, "http", None).await;
    };
    let stream = tls
        .handshake(&server.addr, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    probe_http(server, check, h2, stream, "https", tls.configured_sni()).await
}

/// The HTTP part of a check (nothing for kind = "tcp"). The Host header is the check's
/// `host`, else the backend's TLS `sni`, else the server's address.
async fn probe_http<I>(
    server: &ServerState,
    check: &HealthCheck,
    h2: bool,
    stream: I,
    scheme: &str,
    sni: Option<&str>,
) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if check.kind == CheckKind::Tcp {
        return Ok(());
    }
    let host = check
        .host
        .as_deref()
        .or(sni)
        .unwrap_or(server.addr.as_str())
        .to_string();
    if h2 {
        return probe_h2(check, stream, host, scheme).await;
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(check.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "herd-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad check request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    drop(resp);
    conn.abort();
    if check.status_ok(status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The HTTP check of an h2c backend, over HTTP/2 with prior knowledge: such servers
/// (gRPC) often refuse HTTP/1.1.
async fn probe_h2<I>(
    check: &HealthCheck,
    stream: I,
    host: String,
    scheme: &str,
) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("{scheme}://{host}{}", check.path))
        .header(http::header::USER_AGENT, "herd-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad check request: {e}"))?;
    let resp = sender.send_request(req).await;
    conn.abort();
    let status = resp.map_err(|e| format!("request: {e}"))?.status().as_u16();
    if check.status_ok(status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Re-evaluate every server's usability now and then: a passive ejection ends by time,
/// not by an event.
pub fn spawn_ticker(shared: Arc<crate::state::shared::Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let snap = shared.snapshot.load();
            let now = clock::now_ms();
            for g in snap.groups.values() {
                for s in &g.servers.0 {
                    s.refresh_usable(now);
                }
            }
        }
    })
}
