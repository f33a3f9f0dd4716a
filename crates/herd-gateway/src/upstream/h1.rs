//! Our own HTTP/1.1 client connection to a server. hyper's client runs each connection as
//! a task fed through a channel, so every request crossed tasks twice and every response
//! body chunk once more; here the request's own task writes the head, reads the answer and
//! streams the body straight from the socket (about a fifth of the gateway's user-space
//! instructions per request, measured with bench/callgrind.sh).
//!
//! What it speaks: requests with Content-Length, chunked or no body; responses framed by
//! RFC 9112 §6.3 (no body for HEAD, 1xx, 204 and 304; chunked, with trailers; Content-Length;
//! or until close); interim 1xx answers skipped; 101 hands the raw connection over for an
//! upgrade. The request body is written before the response is read: a server that answers
//! before reading all of an upload still gets its answer relayed if it sent one before
//! closing.

use crate::codec::body::{BodyError, UpstreamBody};
use crate::codec::h1::*;
use bytes::{Bytes, BytesMut};
use http::header;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::future::{poll_fn, Future as _};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

mod body;
pub use body::H1Body;

const READ_RESERVE: usize = 8 * 1024;
/// Large bodies are read in larger pieces: fewer syscalls for a 1 MiB response.
const READ_RESERVE_LARGE: usize = 64 * 1024;
/// Request body bytes gathered before a write; a bigger frame is written as it is.
const WRITE_GATHER: usize = 64 * 1024;

/// The byte stream under a connection: plain TCP, or TLS to the server.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One keep-alive connection to a server; it carries one request at a time.
pub struct H1Conn {
    io: Io,
    /// Bytes read from the server and not yet consumed.
    buf: BytesMut,
    /// The request head is built here; kept across requests so it allocates once.
    out: Vec<u8>,
    /// Responses this connection has carried to the end.
    served: u64,
}

/// Why a request got no response.
pub enum SendError {
    /// Nothing of the request reached the server (the connection was already closed):
    /// it can be sent again elsewhere.
    Unsent(Box<Request<UpstreamBody>>, io::Error),
    /// The client's request body failed (it hung up, or passed max_body_size).
    ClientBody(BodyError),
    /// A kept-alive connection closed without a byte of answer: the server most likely
    /// timed it out just as the request went out. An idempotent request may go again.
    Stale(io::Error, Option<Box<Request<UpstreamBody>>>),
    /// The server closed, reset or sent something that is not HTTP/1.x.
    Server(io::Error, Option<Box<Request<UpstreamBody>>>),
}

impl std::fmt::Debug for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unsent(_, e) => write!(f, "connection closed before the request: {e}"),
            SendError::ClientBody(e) => write!(f, "client request body failed: {e}"),
            SendError::Stale(e, _) => write!(f, "kept-alive connection: {e}"),
            SendError::Server(e, _) => write!(f, "{e}"),
        }
    }
}

impl H1Conn {
    pub fn new(io: Io) -> H1Conn {
        H1Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            served: 0,
        }
    }

    /// Whether a connection that sat idle can carry a request: the server has not closed
    /// it and sent nothing unasked. Costs no syscall unless the event loop has seen the
    /// socket become readable since the last read.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match &mut self.io {
            Io::Plain(s) => match s.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            // TLS may have records to process (a TLS 1.3 session ticket) without any
            // application data: only rustls can tell whether that ends in data or a close.
            Io::Tls(s) => {
                let mut probe = [0u8; 1];
                let mut rb = ReadBuf::new(&mut probe);
                matches!(
                    Pin::new(s.as_mut()).poll_read(&mut cx, &mut rb),
                    Poll::Pending
                )
            }
        }
    }

    /// Send a request and read the response head. The request body is written while the
    /// answer is read (a server may stream its answer to an upload, or answer early), and
    /// what is left of it travels on in the response body. So does the connection, which
    /// comes back from the body (`H1Body::take_reusable`) once both have ended.
    pub async fn send(mut self, req: Request<UpstreamBody>) -> Result<Response<H1Body>, SendError> {
        let head_request = req.method() == Method::HEAD;
        let mut out = std::mem::take(&mut self.out);
        let framing = encode_head(&mut out, &req);
        let (parts, body) = req.into_parts();
        let mut upload = Upload {
            body,
            framing,
            out,
            written: 0,
            finished: framing == ReqFraming::None,
            started: false,
            took_body: false,
        };
        let mut keep_alive = framing != ReqFraming::None || upload.body.is_end_stream();
        let mut uploading = true;
        let head = poll_fn(|cx| {
            if uploading {
                match upload.poll_pump(&mut self.io, cx) {
                    Poll::Ready(Ok(())) => uploading = false,
                    Poll::Ready(Err(UploadError::Body(e))) => {
                        return Poll::Ready(Err(Failed::ClientBody(e)))
                    }
                    Poll::Ready(Err(UploadError::Write(e))) => {
                        if !upload.started {
                            return Poll::Ready(Err(Failed::Unsent(e)));
                        }
                        // The server may have answered before it stopped reading (a 413).
                        tracing::debug!(error = %e, "request write failed; reading any answer");
                        uploading = false;
                        keep_alive = false;
                    }
                    Poll::Pending => {}
                }
            }
            self.poll_head(cx).map_err(Failed::Server)
        })
        .await;
        let head = match head {
            Ok(head) => head,
            Err(Failed::Unsent(e)) => {
                return Err(SendError::Unsent(
                    Box::new(Request::from_parts(parts, upload.body)),
                    e,
                ))
            }
            Err(Failed::ClientBody(e)) => return Err(SendError::ClientBody(e)),
            Err(Failed::Server(e)) => {
                // The request goes back if it had no body to lose, so it can be resent
                // without the caller copying every request up front.
                let again = (!upload.took_body && upload.body.is_end_stream())
                    .then(|| Box::new(Request::from_parts(parts, UpstreamBody::Empty)));
                let stale = self.served > 0
                    && self.buf.is_empty()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    );
                return Err(if stale {
                    SendError::Stale(e, again)
                } else {
                    SendError::Server(e, again)
                });
            }
        };
        let status = head.status;
        let mut resp = Response::new(H1Body::empty());
        *resp.status_mut() = status;
        *resp.version_mut() = head.version;
        let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
            RespFraming::Upgraded
        } else {
            response_framing(head_request, status, &head.headers)
                .map_err(|e| SendError::Server(e, None))?
        };
        let connection = head.headers.get(header::CONNECTION).map(|v| v.as_bytes());
        let reusable = keep_alive
            && !matches!(framing, RespFraming::UntilClose | RespFraming::Upgraded)
            && match head.version {
                Version::HTTP_10 => connection.is_some_and(|v| has_token(v, b"keep-alive")),
                _ => !connection.is_some_and(|v| has_token(v, b"close")),
            };
        let mut headers = head.headers;
        if headers.contains_key(header::TRANSFER_ENCODING) {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which a proxy must
            // then remove. Forwarding it would frame the client's copy of the body by the
            // wrong length and split the response in two (response splitting).
            headers.remove(header::CONTENT_LENGTH);
        }
        *resp.headers_mut() = headers;
        let upload = if uploading {
            Some(upload)
        } else {
            self.out = upload.into_buffer();
            None
        };
        *resp.body_mut() = H1Body {
            conn: Some(self),
            framing,
            reusable,
            upload,
        };
        Ok(resp)
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>, reserve: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < reserve / 2 {
            self.buf.reserve(reserve);
        }
        let read = self.io.read_buf(&mut self.buf);
        tokio::pin!(read);
        read.poll(cx)
    }

    /// Read more of a body whose end is still to come: a close now is an error, which
    /// `eof` describes. The read is larger while much of the body remains.
    fn poll_body_bytes(
        &mut self,
        cx: &mut Context<'_>,
        remaining: u64,
        eof: impl FnOnce() -> String,
    ) -> Poll<io::Result<()>> {
        let reserve = if remaining > READ_RESERVE as u64 {
            READ_RESERVE_LARGE
        } else {
            READ_RESERVE
        };
        match std::task::ready!(self.poll_fill(cx, reserve))? {
            0 => Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, eof()))),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Read until a final response head (interim 1xx answers other than 101 skipped).
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Head>> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&mut self.buf)? {
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Poll::Ready(Ok(head));
                }
                if self.buf.len() >= MAX_HEAD {
                    return Poll::Ready(Err(bad(format!(
                        "response head longer than {MAX_HEAD} bytes"
                    ))));
                }
            }
            if std::task::ready!(self.poll_fill(cx, READ_RESERVE))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if self.buf.is_empty() {
                        "server closed the connection before answering"
                    } else {
                        "server closed the connection in the middle of the response head"
                    },
                )));
            }
        }
    }

    /// The raw stream and any bytes already read past the 101 head, for a tunnel.
    pub fn into_upgraded(self) -> (Io, Bytes) {
        (self.io, self.buf.freeze())
    }
}

enum Failed {
    Unsent(io::Error),
    ClientBody(BodyError),
    Server(io::Error),
}

enum UploadError {
    Body(BodyError),
    Write(io::Error),
}

/// A request on its way to the server: the encoded bytes not yet written, and the client's
/// body that feeds them.
struct Upload {
    body: UpstreamBody,
    framing: ReqFraming,
    out: Vec<u8>,
    written: usize,
    /// The body has ended (or there is none) and its last bytes are in `out`.
    finished: bool,
    /// Some of the request has been written or taken from the body: it cannot be resent.
    started: bool,
    /// A frame was taken from the body: only the head could be sent again.
    took_body: bool,
}

impl Upload {
    /// Write what is encoded, gathering whatever the body has ready first so the usual
    /// request goes out in one write. Ready(Ok) once everything is written.
    fn poll_pump(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        loop {
            while !self.finished && self.out.len() - self.written < WRITE_GATHER {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(None) => {
                        if self.framing == ReqFraming::Chunked {
                            encode_last_chunk(&mut self.out, None);
                        }
                        self.finished = true;
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        self.started = true;
                        self.took_body = true;
                        match frame.into_data() {
                            Ok(mut data) => encode_data(&mut self.out, &self.framing, &mut data),
                            Err(frame) => {
                                if let (Ok(t), ReqFraming::Chunked) =
                                    (frame.into_trailers(), self.framing)
                                {
                                    encode_last_chunk(&mut self.out, Some(&t));
                                    self.finished = true;
                                }
                            }
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(UploadError::Body(e))),
                }
            }
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
                // Not finished: the body is pending and will wake us.
                return if self.finished {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            match Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(UploadError::Write(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    self.started = true;
                    self.written += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Write(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The write buffer, to be kept by the connection (unless an upload grew it large).
    fn into_buffer(self) -> Vec<u8> {
        let mut out = self.out;
        out.clear();
        if out.capacity() > 16 * 1024 {
            out = Vec::new();
        }
        out
    }
}

#[cfg(test)]
mod tests;
