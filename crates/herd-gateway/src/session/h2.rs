//! HTTP/2: towards clients, h2 chosen by ALPN on https listeners and h2c with prior
//! knowledge on plain ones; towards h2c servers, the request shape HTTP/2 wants. On plain
//! listeners the first bytes read decide: the HTTP/2 preface, or an HTTP/1.1 request for
//! our own loop, which keeps them (no peek: a syscall less per connection).
//! Every HTTP/2 stream goes through the same proxy path as an HTTP/1.1 request.

use crate::http::context::{ClientConn, ConnSlot, HttpTimeouts, Worker};
use crate::http::proxy;
use crate::upstream::h2::LocalExec;
use crate::upstream::stream::Prefixed;
use bytes::BytesMut;
use http::Version;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serve a plain (cleartext) client connection: HTTP/2 if it starts with the preface,
/// else HTTP/1.1. `rest` holds bytes already read past a PROXY header.
pub async fn serve_plain(
    w: Rc<Worker>,
    li: usize,
    mut stream: TcpStream,
    rest: Vec<u8>,
    conn: ClientConn,
    slot: ConnSlot,
) {
    let timeouts = HttpTimeouts::of(&w, li);
    let mut rest = BytesMut::from(&rest[..]);
    let sniffed = tokio::time::timeout(
        timeouts.idle,
        sniff(&mut stream, &mut rest, timeouts.head_read),
    );
    let h2 = match std::pin::pin!(sniffed).await {
        Ok(Ok(h2)) => h2,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            crate::http::context::count_header_timeout(&w, li);
            return;
        }
        // Silent past the idle timeout, or gone: what hyper's header timeout would do.
        Ok(Err(_)) | Err(_) => return,
    };
    match (h2, rest.is_empty()) {
        (false, _) => {
            let serve = crate::session::h1::serve(w, li, stream, rest, conn, slot, timeouts);
            std::pin::pin!(serve).await
        }
        // Boxed: inline, the HTTP/2 server's state would size every HTTP/1 connection.
        (true, true) => Box::pin(serve_h2(w, li, stream, conn, slot)).await,
        (true, false) => {
            let rest = rest.to_vec();
            Box::pin(serve_h2(w, li, Prefixed::new(rest, stream), conn, slot)).await
        }
    }
}

/// Does the connection start with the HTTP/2 preface? Reads into `buf` (which then goes
/// to whichever server serves the connection) until its bytes decide. The buffer is
/// allocated only once the socket is readable, so a client that connects and sends
/// nothing costs no buffer. Once bytes have come, the rest of the preface must come
/// within `head_read` (a TimedOut error): the same slowloris bound as an HTTP/1 head.
async fn sniff(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head_read: Duration,
) -> std::io::Result<bool> {
    if buf.is_empty() && crate::session::h1::read_first(stream, buf).await? == 0 {
        return Ok(false);
    }
    let deadline = crate::clock::now() + head_read;
    loop {
        let have = buf.len().min(PREFACE.len());
        if !PREFACE.starts_with(&buf[..have]) {
            return Ok(false);
        }
        if have == PREFACE.len() {
            return Ok(true);
        }
        let n = tokio::time::timeout_at(deadline, stream.read_buf(buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(false);
        }
    }
}

/// Serve an HTTP/2 client connection until it ends or the gateway shuts down (then
/// GOAWAY: streams in flight finish, no new ones start).
pub async fn serve_h2<I>(w: Rc<Worker>, li: usize, io: I, conn: ClientConn, _slot: ConnSlot)
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let peer = conn.client;
    let conn = Rc::new(conn);
    let svc_worker = w.clone();
    let svc = service_fn(move |req| {
        if let Some(stats) = svc_worker.shared.listener_stats.get(li) {
            stats.count_request(Version::HTTP_2);
        }
        proxy::handle(
            svc_worker.clone(),
            li,
            conn.clone(),
            req.map(crate::codec::body::UpstreamBody::Client),
        )
    });
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut stop = w.shared.shutdown.subscribe();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer, error = %e, "HTTP/2 client connection ended with an error");
            }
        }
        _ = stop.wait_for(|s| *s) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the verdict, every byte read stays in the buffer for the server that
    /// takes the connection.
    #[tokio::test]
    async fn sniff_tells_preface_from_http1_even_when_split() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        for (parts, want) in [
            (vec![&PREFACE[..]], true),
            (vec![&b"GET / HTTP/1.1\r\n"[..]], false),
            (vec![&PREFACE[..3], &PREFACE[3..]], true),
            (vec![&b"PR"[..], &b"X"[..]], false),
        ] {
            let sent: Vec<u8> = parts.concat();
            let client = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.set_nodelay(true).unwrap();
                for p in parts {
                    c.write_all(p).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                c
            });
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let got = sniff(&mut s, &mut buf, Duration::from_secs(10)).await;
            assert_eq!(got.unwrap(), want);
            assert_eq!(&buf[..], &sent[..]);
            drop(client.await.unwrap());
        }
    }

    /// Half a preface and then silence is a slow head: TimedOut after `head_read`.
    #[tokio::test]
    async fn sniff_bounds_a_stalled_preface() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&PREFACE[..5]).await.unwrap();
            c
        });
        let (mut s, _) = l.accept().await.unwrap();
        let _c = client.await.unwrap();
        let mut buf = BytesMut::new();
        let err = sniff(&mut s, &mut buf, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}
