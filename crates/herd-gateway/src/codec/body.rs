//! Request bodies on their way to a server, streamed without being buffered: the client's
//! own, cut off past `max_body_size`, or none.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why a request body stopped: the client's stream failed, or it passed max_body_size.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The request body sent to a server: the client's stream (cut off at the route's
/// max_body_size when it has one), or nothing (a replayed request).
pub enum UpstreamBody {
    Client(Incoming),
    Limited(LimitedBody),
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

// ---------------------------------------------------------------- request body limit

/// The client's request body, cut off once it passes the limit: the upstream request
/// fails (its connection is dropped, the server never sees a complete body) and `exceeded`
/// tells the proxy to answer 413 if no response has gone out yet.
pub struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64) -> (LimitedBody, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let body = LimitedBody {
            inner,
            remaining: limit,
            exceeded: flag.clone(),
        };
        (body, flag)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body exceeds max_body_size")]
pub struct BodyTooLarge;

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = crate::codec::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(d) = frame.data_ref() {
                let n = d.len() as u64;
                if n > self.remaining {
                    self.exceeded.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                }
                self.remaining -= n;
            }
        }
        polled.map(|o| o.map(|r| r.map_err(Into::into)))
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
