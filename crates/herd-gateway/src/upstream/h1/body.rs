//! The response body of an upstream HTTP/1.1 exchange, read straight from the server's
//! connection as RFC 9112 §6.3 frames it; the connection goes back to the pool only when
//! the body ended cleanly.

use super::*;
use crate::codec::chunked;

/// A response body read straight from the server's connection.
pub struct H1Body {
    pub(super) conn: Option<H1Conn>,
    pub(super) framing: RespFraming,
    /// The connection may carry another request once this body has ended.
    pub(super) reusable: bool,
    /// The rest of the request body, still being written.
    pub(super) upload: Option<Upload>,
}

impl std::fmt::Debug for H1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Body")
            .field("framing", &self.framing)
            .finish()
    }
}

impl H1Body {
    pub(super) fn empty() -> H1Body {
        H1Body {
            conn: None,
            framing: RespFraming::Done,
            reusable: false,
            upload: None,
        }
    }

    /// The connection, once the body has ended cleanly and the connection may be reused.
    pub fn take_reusable(&mut self) -> Option<H1Conn> {
        match self.framing {
            RespFraming::Empty | RespFraming::Done | RespFraming::Length(0)
                if self.reusable && self.upload.is_none() =>
            {
                let mut conn = self.conn.take()?;
                conn.served += 1;
                Some(conn)
            }
            _ => None,
        }
    }

    /// The connection of a 101 answer, for the tunnel.
    pub fn take_upgraded(&mut self) -> Option<H1Conn> {
        match self.framing {
            RespFraming::Upgraded => {
                self.framing = RespFraming::Done;
                self.reusable = false;
                self.conn.take()
            }
            _ => None,
        }
    }

    fn poll_chunked(
        conn: &mut H1Conn,
        state: &mut Chunk,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            let remaining = match chunked::decode(&mut conn.buf, state) {
                Ok(chunked::Step::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                Ok(chunked::Step::End(trailers)) => {
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
                }
                Ok(chunked::Step::NeedMore(remaining)) => remaining,
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            let eof = || "server closed the connection in the middle of a chunked body".into();
            if let Err(e) = std::task::ready!(conn.poll_body_bytes(cx, remaining, eof)) {
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(upload) = &mut this.upload {
            match upload.poll_pump(&mut conn.io, cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {
                    if let Some(done) = this.upload.take() {
                        conn.out = done.into_buffer();
                    }
                }
                Poll::Ready(Err(UploadError::Write(e))) => {
                    // The server stopped reading; its answer may still be complete.
                    tracing::debug!(error = %e, "request body write failed mid-response");
                    this.upload = None;
                    this.reusable = false;
                }
                Poll::Ready(Err(UploadError::Body(e))) => {
                    this.upload = None;
                    this.reusable = false;
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "client request body failed: {e}"
                    )))));
                }
            }
        }
        loop {
            match &mut this.framing {
                RespFraming::Empty | RespFraming::Done | RespFraming::Upgraded => {
                    return Poll::Ready(None)
                }
                RespFraming::Length(0) => return Poll::Ready(None),
                RespFraming::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = (conn.buf.len() as u64).min(*left) as usize;
                        *left -= n as u64;
                        return Poll::Ready(Some(Ok(Frame::data(conn.buf.split_to(n).freeze()))));
                    }
                    let left = *left;
                    let eof = || {
                        format!(
                            "server closed the connection {left} bytes before the end of the body"
                        )
                    };
                    if let Err(e) = std::task::ready!(conn.poll_body_bytes(cx, left, eof)) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                RespFraming::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match conn.poll_fill(cx, READ_RESERVE_LARGE) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Poll::Ready(Ok(0)) => {
                            this.framing = RespFraming::Done;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Ok(_)) => {}
                    }
                }
                RespFraming::Chunked(state) => {
                    let polled = H1Body::poll_chunked(conn, state, cx);
                    let ended = match &polled {
                        Poll::Ready(None) => true,
                        Poll::Ready(Some(Ok(f))) => f.is_trailers(),
                        _ => false,
                    };
                    if ended {
                        this.framing = RespFraming::Done;
                    }
                    return polled;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
            || matches!(
                self.framing,
                RespFraming::Empty | RespFraming::Done | RespFraming::Length(0)
            )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            RespFraming::Empty | RespFraming::Done => SizeHint::with_exact(0),
            RespFraming::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
