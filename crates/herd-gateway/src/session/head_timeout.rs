//! Two client-side timeouts for HTTP/1 where hyper has one. hyper's `header_read_timeout`
//! starts when it begins waiting for a request head — at connection start and again as soon
//! as a keep-alive connection goes idle — so alone it bounds idle time and head time
//! together. We give hyper a timer whose sleeps know when the head's first byte arrived:
//!
//! - `idle_timeout`: from the moment the connection waits for a request head (new or idle
//!   keep-alive connection) until that head is complete, however quiet the client is;
//! - `header_read_timeout`: from the first byte of a request head until the head is
//!   complete (slowloris: a client dribbling a head to hold a connection).
//!
//! Whichever ends first closes the connection. Bytes of a next request that arrived
//! together with the previous one (pipelining) are already buffered; such a head is bounded
//! by `idle_timeout` only.
// hyper's `Timer` trait speaks std instants; the one reading of the clock here is
// `crate::clock::std_now`.
#![allow(clippy::disallowed_types)]

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioTimer;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared by a connection's reader and its timer: when the current head's first byte came.
pub struct HeadClock {
    base: Instant,
    /// Nanoseconds after `base` + 1 of the first byte read since hyper began waiting for a
    /// head; 0 = none yet.
    first_byte: AtomicU64,
    header_read: Duration,
    /// The header-read deadline (not the idle one) ended a wait: the connection is closed
    /// for a slow head, and counted as such.
    head_expired: AtomicBool,
}

impl HeadClock {
    pub fn new(header_read: Duration) -> Arc<HeadClock> {
        Arc::new(HeadClock {
            base: crate::clock::std_now(),
            first_byte: AtomicU64::new(0),
            header_read,
            head_expired: AtomicBool::new(false),
        })
    }

    /// Did a request head take longer than `header_read_timeout` from its first byte?
    pub fn head_expired(&self) -> bool {
        self.head_expired.load(Ordering::Relaxed)
    }

    fn note_bytes(&self) {
        if self.first_byte.load(Ordering::Relaxed) == 0 {
            let at = self.base.elapsed().as_nanos() as u64 + 1;
            self.first_byte.store(at, Ordering::Relaxed);
        }
    }

    /// The head deadline, once its first byte is in.
    fn head_deadline(&self) -> Option<Instant> {
        match self.first_byte.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1) + self.header_read),
        }
    }
}

/// The client connection, noting when bytes arrive.
pub struct HeadWatch<I> {
    io: I,
    clock: Arc<HeadClock>,
}

impl<I> HeadWatch<I> {
    pub fn new(io: I, clock: Arc<HeadClock>) -> HeadWatch<I> {
        HeadWatch { io, clock }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadWatch<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.note_bytes();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadWatch<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// hyper's timer for one connection: `sleep_until` is hyper starting to wait for a head.
#[derive(Clone)]
pub struct HeadTimer {
    clock: Arc<HeadClock>,
}

impl HeadTimer {
    pub fn new(clock: Arc<HeadClock>) -> HeadTimer {
        HeadTimer { clock }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.clock.first_byte.store(0, Ordering::Relaxed);
        Box::pin(HeadSleep {
            clock: self.clock.clone(),
            deadline,
            armed: false,
            head: false,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        *sleep = self.sleep_until(new_deadline);
    }
}

/// Ends at the idle deadline, or `header_read_timeout` after the head's first byte.
struct HeadSleep {
    clock: Arc<HeadClock>,
    deadline: Instant,
    armed: bool,
    /// `deadline` is the header-read one.
    head: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this right after each read of the head, so the first byte is seen here
        // in the same turn and the earlier deadline takes effect at once.
        if !self.armed {
            if let Some(at) = self.clock.head_deadline() {
                self.armed = true;
                if at < self.deadline {
                    self.deadline = at;
                    self.head = true;
                    self.sleep.as_mut().reset(at.into());
                }
            }
        }
        let done = self.sleep.as_mut().poll(cx);
        if done.is_ready() && self.head {
            self.clock.head_expired.store(true, Ordering::Relaxed);
        }
        done
    }
}

impl Sleep for HeadSleep {}
