//! Bodies that stream through the gateway without being buffered, and the completion
//! record that fires when a response body ends: it returns the upstream connection to the
//! worker's pool (only if the body was read to the end), ends the in-flight count and
//! writes the access log line.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why a request body stopped: the client's stream failed, or it passed max_body_size.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The request body sent to a server: the client's stream (cut off at the route's
/// max_body_size when it has one), or nothing (a replayed request).
pub enum UpstreamBody {
    Client(Incoming),
    Limited(crate::traffic::LimitedBody),
    Empty,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Client(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(Into::into))),
            UpstreamBody::Limited(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Client(b) => b.is_end_stream(),
            UpstreamBody::Limited(b) => b.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Client(b) => b.size_hint(),
            UpstreamBody::Limited(b) => b.size_hint(),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A server's response body: from our HTTP/1.1 client, or hyper's HTTP/2 one.
pub enum FromServer {
    H1(crate::h1_upstream::H1Body),
    Hyper(Incoming),
}

impl FromServer {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            FromServer::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            FromServer::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            FromServer::H1(b) => b.is_end_stream(),
            FromServer::Hyper(b) => b.is_end_stream(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            FromServer::H1(b) => b.size_hint(),
            FromServer::Hyper(b) => b.size_hint(),
        }
    }
}

/// The response body sent to the client.
pub struct ProxyBody {
    inner: Inner,
    bytes: u64,
    finished: bool,
    on_done: Option<crate::proxy::Done>,
}

enum Inner {
    Upstream(FromServer),
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: FromServer, done: crate::proxy::Done) -> ProxyBody {
        ProxyBody {
            inner: Inner::Upstream(body),
            bytes: 0,
            finished: false,
            on_done: Some(done),
        }
    }
    pub fn full(data: impl Into<Bytes>, done: Option<crate::proxy::Done>) -> ProxyBody {
        let data = data.into();
        ProxyBody {
            bytes: 0,
            finished: false,
            inner: Inner::Full((!data.is_empty()).then_some(data)),
            on_done: done,
        }
    }
    /// The text of a response the gateway made itself, taken out (the body is then
    /// empty); None for a server's body.
    pub fn take_local(&mut self) -> Option<Bytes> {
        match &mut self.inner {
            Inner::Full(data) => Some(data.take().unwrap_or_default()),
            Inner::Upstream(_) => None,
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.settle(true);
    }

    /// Fire the completion record; a finished HTTP/1.1 body hands its server connection
    /// back with it, to be pooled.
    fn settle(&mut self, finished: bool) {
        let Some(mut d) = self.on_done.take() else {
            return;
        };
        if finished {
            if let Inner::Upstream(FromServer::H1(b)) = &mut self.inner {
                if let Some(conn) = b.take_reusable() {
                    d.give_back(crate::pool::Sender::H1(conn));
                }
            }
        }
        d.complete(self.bytes, finished);
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling a body that reports end-of-stream, so "finished" also
        // covers a body whose last byte arrived without a final poll.
        let finished = self.finished || self.is_end_stream();
        self.settle(finished);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Upstream(b) => b.poll(cx),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(b) => b.is_end_stream(),
            Inner::Full(d) => d.is_none(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(b) => b.size_hint(),
            Inner::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
