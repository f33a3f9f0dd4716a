//! Our own HTTP/1.1 server loop for client connections, plain or TLS, for the requests
//! that make up nearly all proxied traffic: HTTP/1.1 without a body. An idle plain
//! connection holds no buffer (hyper keeps 16 KiB per connection, which was half the
//! gateway's memory per idle keep-alive connection), and a request costs no dispatcher.
//!
//! Anything else — a request body, `Expect`, `Upgrade`, HTTP/1.0, a head we cannot parse
//! or a very large one — is handed, with every byte read so far, to hyper's server for
//! the rest of the connection: one implementation of the rarer cases, and its errors
//! (400, 431) for malformed input.

use crate::codec::body::{BodyError, UpstreamBody};
use crate::codec::h1::{encode_last_chunk, parse_request, write_field, RequestHead as Next};
use crate::http::context::{count_header_timeout, ClientConn, ConnSlot, HttpTimeouts, Worker};
use crate::http::proxy;
use crate::http::respond::ProxyBody;
use crate::session::accept::serve_hyper;
use crate::upstream::stream::Prefixed;
use bytes::BytesMut;
use http::header::{self};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A head longer than this goes to hyper, which answers 431 past its own limit.
const MAX_HEAD: usize = 16 * 1024;
const READ_CHUNK: usize = 4096;
/// What an idle TLS connection holds to wait for its next request (see `read_next`).
const TLS_IDLE_READ: usize = 512;
/// Response bytes gathered before a write; a bigger data frame is written on its own.
const WRITE_GATHER: usize = 16 * 1024;

/// A client connection this loop can serve: plain TCP, or TLS over it.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits for the next request's first bytes and reads them into `buf` (empty).
    /// 0 at end of stream. Cancel-safe.
    fn read_next<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + 'a;

    /// Where a request's proxy path keeps its state (kilobytes) while it runs: inline in
    /// the connection's task, or in a box allocated per request. Inline, an idle
    /// connection's task stays that large; boxed, each request pays an allocation.
    fn hold<F: Future>(request: F) -> impl Future<Output = F::Output>;
}

impl ClientStream for TcpStream {
    fn read_next<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        read_first(self, buf)
    }

    /// Inline: a plain connection's task is then about 7 KB, well under the idle memory
    /// target, and a request saves the allocation (about 700 instructions, 2.7%).
    fn hold<F: Future>(request: F) -> impl Future<Output = F::Output> {
        request
    }
}

impl<I> ClientStream for tokio_rustls::server::TlsStream<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Through the TLS stream, with a small buffer while idle: rustls may already hold the
    /// next request, decrypted from a record that came with the last one, where the
    /// socket's readiness would not show it. Most heads fit in the small buffer; what
    /// does not stays in rustls for the head loop's next read.
    fn read_next<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        buf.reserve(TLS_IDLE_READ);
        self.read_buf(buf)
    }

    /// Boxed: rustls's state already makes an idle TLS connection the larger one, and
    /// with the proxy path inline it would pass the 16 KiB idle memory target.
    fn hold<F: Future>(request: F) -> impl Future<Output = F::Output> {
        Box::pin(request)
    }
}

/// Serve an HTTP/1.x connection until it ends, the gateway stops, or a request needs
/// hyper. `initial` holds bytes already read (past a PROXY header, or while sniffing for
/// HTTP/2); `timeouts` are the listener's.
pub async fn serve<S: ClientStream>(
    w: Rc<Worker>,
    li: usize,
    mut stream: S,
    initial: BytesMut,
    conn: ClientConn,
    slot: ConnSlot,
    timeouts: HttpTimeouts,
) {
    let HttpTimeouts {
        idle: idle_timeout,
        head_read,
    } = timeouts;
    let conn = Rc::new(conn);
    let mut stop = w.shared.shutdown.subscribe();
    let mut buf = initial;
    // One idle timer for the connection's life, moved on only when it fires: a timer set
    // for each wait would cost a timer-wheel insert and removal per request.
    let mut idle_since = crate::clock::now();
    let idle = tokio::time::sleep_until(idle_since + idle_timeout);
    tokio::pin!(idle);
    loop {
        if buf.is_empty() {
            // Idle between requests: no buffer while we wait, and only idle_timeout
            // bounds the wait. The head's own deadline starts with its first bytes.
            buf = BytesMut::new();
            loop {
                tokio::select! {
                    r = stream.read_next(&mut buf) => match r {
                        Ok(n) if n > 0 => break,
                        _ => return,
                    },
                    () = &mut idle => {
                        let due = idle_since + idle_timeout;
                        if due <= crate::clock::now() {
                            return;
                        }
                        idle.as_mut().reset(due);
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        let deadline = crate::clock::now() + head_read;
        let next = loop {
            if !buf.is_empty() {
                match parse_request(&mut buf) {
                    Ok(Some(next)) => break next,
                    Ok(None) if buf.len() < MAX_HEAD => {}
                    Ok(None) | Err(_) => break Next::HandOff,
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                buf.reserve(READ_CHUNK);
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => {
                    if !buf.is_empty() {
                        count_header_timeout(&w, li);
                        tracing::debug!(client = %conn.client, "closing connection: request head not complete within header_read_timeout");
                    }
                    return;
                }
            }
        };
        let (req, keep_alive) = match next {
            Next::Serve(req, keep_alive) => (req, keep_alive),
            Next::Refuse(why) => {
                let _ = write_last(&mut stream, &bad_request(why)).await;
                let _ = stream.shutdown().await;
                return;
            }
            Next::HandOff => {
                let rest = buf.to_vec();
                drop(buf);
                // Boxed: hyper's connection future is large, and inline it would size
                // every connection's task, idle ones included.
                if rest.is_empty() {
                    Box::pin(serve_hyper(w, li, stream, conn, slot)).await;
                } else {
                    Box::pin(serve_hyper(w, li, Prefixed::new(rest, stream), conn, slot)).await;
                }
                return;
            }
        };
        if let Some(stats) = w.shared.listener_stats.get(li) {
            stats.count_request(Version::HTTP_11);
        }
        let answered = S::hold(exchange(&w, li, &conn, req, &mut stream, &stop, keep_alive));
        let keep_alive = match std::pin::pin!(answered).await {
            Ok(keep_alive) => keep_alive,
            Err(e) => {
                tracing::debug!(client = %conn.client, error = %e, "client connection ended with an error");
                return;
            }
        };
        if !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
        idle_since = crate::clock::now();
    }
}

/// One request through the proxy, and its response written back. Ok(true) if the
/// connection stays open for another: the client asked for it and the gateway is not
/// stopping.
async fn exchange<S: AsyncWrite + Unpin>(
    w: &Rc<Worker>,
    li: usize,
    conn: &Rc<ClientConn>,
    req: Request<UpstreamBody>,
    stream: &mut S,
    stop: &tokio::sync::watch::Receiver<bool>,
    keep_alive: bool,
) -> io::Result<bool> {
    let head_request = req.method() == Method::HEAD;
    // Pinned in place: `.await` on the call itself would store the future twice in this
    // one's state and copy it (kilobytes) per request.
    let Ok(resp) = std::pin::pin!(proxy::handle(w.clone(), li, conn.clone(), req)).await;
    // A local answer may end the connection (a request refused for what it meant).
    let closing = resp
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| crate::codec::h1::has_token(v.as_bytes(), b"close"));
    let keep_alive = keep_alive && !closing && !*stop.borrow();
    std::pin::pin!(write_response(stream, resp, head_request, keep_alive)).await?;
    Ok(keep_alive)
}

/// Waits for the socket to be readable, then reads what is there into `buf` (empty),
/// allocating it only then: a silent connection holds no buffer. 0 at end of stream.
///
/// Readiness is not proof of data (tokio keeps a socket marked readable after a peek or
/// a read that filled the buffer), so the read may find nothing: then the buffer goes
/// back and the wait starts again. The read is one poll of `read_buf`, not `try_read`:
/// a short read clears the readiness there, so the next wait really waits instead of
/// costing a read that finds nothing. Cancel-safe: nothing is read at an await point.
pub(crate) async fn read_first(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        buf.reserve(READ_CHUNK);
        let polled = {
            let mut read = std::pin::pin!(stream.read_buf(buf));
            std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(read.as_mut(), cx))
            })
            .await
        };
        match polled {
            std::task::Poll::Ready(r) => return r,
            std::task::Poll::Pending => *buf = BytesMut::new(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length,
    Chunked,
}

/// Write a response: status line, headers (with Date, and the framing the body needs),
/// then the body, gathered so a small response is one write.
async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: Response<ProxyBody>,
    head_request: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name != header::CONNECTION && name != header::TRANSFER_ENCODING {
            write_field(&mut out, name, value);
        }
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::None
    } else if parts.headers.contains_key(header::CONTENT_LENGTH) {
        Framing::Length
    } else if let Some(n) = body.size_hint().exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        Framing::Length
    } else if head_request {
        Framing::None
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if head_request || framing == Framing::None {
        // Dropping the body settles it: an empty upstream body still returns its
        // connection to the pool.
        drop(body);
        return write_last(stream, &out).await;
    }
    // Whether any byte of this response reached the client: until then a failure of the
    // server's body can still be answered with a clean 502.
    let mut sent = false;
    while !body.is_end_stream() {
        // Gathered bytes wait only while the server keeps sending: when its next frame is
        // not ready they go out, so streams (server-sent events, long polls, progress
        // output) reach the client as they are produced, not 16 KiB at a time.
        let frame = match poll_once(&mut body) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                    out.clear();
                    sent = true;
                }
                body.frame().await
            }
        };
        let Some(frame) = frame else {
            break;
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                drop(body);
                if !sent {
                    // Nothing went out yet: say so with a status instead of a hang-up.
                    write_last(stream, &bad_gateway(&e)).await?;
                }
                // Otherwise the client sees the connection end before the body does: a
                // chunked body without its last chunk, or fewer bytes than its length.
                return Err(io::Error::other(e));
            }
        };
        match frame.into_data() {
            Ok(data) => {
                if framing == Framing::Chunked && !data.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                }
                if data.len() >= WRITE_GATHER {
                    stream.write_all(&out).await?;
                    out.clear();
                    stream.write_all(&data).await?;
                    sent = true;
                } else {
                    out.extend_from_slice(&data);
                }
                if framing == Framing::Chunked && !data.is_empty() {
                    out.extend_from_slice(b"\r\n");
                }
                if out.len() >= WRITE_GATHER {
                    stream.write_all(&out).await?;
                    out.clear();
                    sent = true;
                }
            }
            Err(frame) => {
                if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), framing) {
                    encode_last_chunk(&mut out, Some(&trailers));
                    drop(body);
                    return write_last(stream, &out).await;
                }
            }
        }
    }
    // Settle the body (pool the server connection, write the access log line) before the
    // last bytes go out: once the client has them it may send its next request, on this
    // connection or another, and the log must not show that one first.
    drop(body);
    if framing == Framing::Chunked {
        encode_last_chunk(&mut out, None);
    }
    write_last(stream, &out).await
}

/// The body's next frame if it is ready now, without waiting.
fn poll_once(
    body: &mut ProxyBody,
) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(body).poll_frame(&mut cx)
}

/// The answer when a server's response failed before any of it reached the client (its
/// framing broke, or it closed early): the connection closes after it, since the server's
/// connection state is unknown.
fn bad_gateway(e: &BodyError) -> Vec<u8> {
    local_answer(
        "502 Bad Gateway",
        &format!("bad gateway: the server's response broke off: {e}\n"),
    )
}

/// A 400 that ends the connection, for a request this loop refuses itself.
fn bad_request(why: &str) -> Vec<u8> {
    local_answer("400 Bad Request", why)
}

/// A complete text response that closes the connection.
fn local_answer(status: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"date: ");
    with_date(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// A response's last bytes, flushed: a TLS stream may hold records back until asked (for
/// plain TCP the flush costs nothing).
async fn write_last<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await
}

thread_local! {
    /// The Date header value, formatted once a second per worker.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn with_date(f: impl FnOnce(&[u8])) {
    let now = crate::clock::unix_ms() / 1000;
    DATE.with(|cell| {
        let mut d = cell.borrow_mut();
        if d.0 != now {
            *d = (now, http_date(now));
        }
        f(&d.1)
    });
}

/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(unix: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 29];
    let text = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        std::str::from_utf8(DAYS[(days % 7) as usize]).unwrap_or("Thu"),
        day,
        std::str::from_utf8(MONTHS[(month - 1) as usize]).unwrap_or("Jan"),
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    let n = text.len().min(29);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(1_796_137_576), b"Tue, 01 Dec 2026 15:06:16 GMT");
    }

    fn parse(raw: &[u8]) -> (Result<Option<Next>, crate::codec::h1::Malformed>, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let r = parse_request(&mut buf);
        (r, buf)
    }

    #[test]
    fn bodiless_http11_requests_are_served_here() {
        let (r, rest) =
            parse(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /next");
        let Ok(Some(Next::Serve(req, keep_alive))) = r else {
            panic!("expected a request");
        };
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["host"], "x");
        assert!(!keep_alive);
        assert_eq!(
            &rest[..],
            b"GET /next",
            "a pipelined request stays in the buffer"
        );

        let (r, _) = parse(b"DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(r, Ok(Some(Next::Serve(_, true)))));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for raw in [
            &b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"[..],
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\n\r\n",
        ] {
            let (r, buf) = parse(raw);
            assert!(
                matches!(r, Ok(Some(Next::HandOff))),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(&buf[..], raw, "nothing consumed before a hand-off");
        }
        assert!(parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n").0.is_err());
        // Targets httparse takes but http::Uri does not: refused with every byte kept,
        // the head in front, for hyper to answer.
        for raw in [
            &b"GET http://a:b:c/ HTTP/1.1\r\nHost: x\r\n\r\nNEXT"[..],
            b"GET a?b HTTP/1.1\r\n\r\n",
        ] {
            let (r, buf) = parse(raw);
            assert!(r.is_err(), "{}", String::from_utf8_lossy(raw));
            assert_eq!(&buf[..], raw, "{}", String::from_utf8_lossy(raw));
        }
    }
}
