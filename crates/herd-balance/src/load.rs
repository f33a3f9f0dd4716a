//! Live per-server state written by every worker thread: whether the server may take new
//! requests, how many are outstanding, and its latency estimate.
//!
//! All orderings are `Relaxed`: these values are independent heuristics read by the policies,
//! and none of them publishes other memory. A pick that sees a count one request stale makes
//! the same quality of decision as one that does not.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crate::ewma::PeakEwma;

/// Per-server live load, shared by all worker threads (atomics only).
#[derive(Debug)]
pub struct ServerLoad {
    usable: AtomicBool,
    in_flight: AtomicU32,
    latency: PeakEwma,
}

impl Default for ServerLoad {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerLoad {
    /// A new server is usable, idle and has no latency sample.
    pub fn new() -> Self {
        ServerLoad {
            usable: AtomicBool::new(true),
            in_flight: AtomicU32::new(0),
            latency: PeakEwma::new(),
        }
    }

    /// May this server take new requests? The data plane folds health checks, admin state and
    /// passive ejection into this one flag so that a pick reads a single atomic per server.
    pub fn usable(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }

    pub fn set_usable(&self, v: bool) {
        self.usable.store(v, Ordering::Relaxed);
    }

    /// Requests sent to this server and not yet finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request sent to this server until the returned guard is dropped, so that every
    /// exit path (error, cancellation, panic unwinding) gives the slot back.
    pub fn begin(&self) -> InFlight<'_> {
        self.inc_in_flight();
        InFlight { load: self }
    }

    /// For callers that cannot hold a borrow (e.g. an owned `'static` future): must be paired
    /// with exactly one [`ServerLoad::dec_in_flight`].
    pub fn inc_in_flight(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Take a slot only while fewer than `max` are in flight (`max_conns_per_server`): the
    /// check and the increment are one atomic step, so two workers cannot both take the last.
    pub fn try_inc_in_flight_below(&self, max: u32) -> bool {
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v < max).then(|| v + 1)
            })
            .is_ok()
    }

    /// Saturates at 0: an unpaired decrement must not wrap to 4 billion and make the server
    /// look permanently overloaded to the least-loaded policies.
    pub fn dec_in_flight(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// Record an observed latency sample (time to response headers) for peak-EWMA.
    pub fn observe_latency(&self, rtt_nanos: u64, now_nanos: u64) {
        self.latency.observe(rtt_nanos, now_nanos);
    }

    /// Current peak-EWMA latency estimate in nanoseconds, decayed to `now_nanos` (the decay is
    /// not stored). 0 when no sample was ever observed (or after a very long idle period);
    /// the `Ewma` policy then assumes [`crate::DEFAULT_RTT_NANOS`]. Resolution is 1 µs.
    pub fn ewma_nanos(&self, now_nanos: u64) -> u64 {
        self.latency.estimate_nanos(now_nanos)
    }
}

/// Guard returned by [`ServerLoad::begin`]; dropping it ends the request.
#[must_use = "dropping the guard immediately ends the request's in-flight count"]
#[derive(Debug)]
pub struct InFlight<'a> {
    load: &'a ServerLoad,
}

impl InFlight<'_> {
    /// The server this request is counted against.
    pub fn load(&self) -> &ServerLoad {
        self.load
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.load.dec_in_flight();
    }
}

/// A backend group's server loads, indexed like the [`crate::Balancer`]'s weights.
///
/// A trait rather than `&[&ServerLoad]` so the data plane can pass its own server list as is,
/// without building a vector of references on every request.
pub trait Loads {
    fn len(&self) -> usize;
    /// Panics if `i >= self.len()`; the balancer never asks for such an index.
    fn load(&self, i: usize) -> &ServerLoad;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Loads for [ServerLoad] {
    fn len(&self) -> usize {
        <[ServerLoad]>::len(self)
    }
    fn load(&self, i: usize) -> &ServerLoad {
        &self[i]
    }
}

impl Loads for [Arc<ServerLoad>] {
    fn len(&self) -> usize {
        <[Arc<ServerLoad>]>::len(self)
    }
    fn load(&self, i: usize) -> &ServerLoad {
        &self[i]
    }
}

impl Loads for [&ServerLoad] {
    fn len(&self) -> usize {
        <[&ServerLoad]>::len(self)
    }
    fn load(&self, i: usize) -> &ServerLoad {
        self[i]
    }
}

impl<T> Loads for Vec<T>
where
    [T]: Loads,
{
    fn len(&self) -> usize {
        <[T] as Loads>::len(self)
    }
    fn load(&self, i: usize) -> &ServerLoad {
        <[T] as Loads>::load(self, i)
    }
}

impl<T, const N: usize> Loads for [T; N]
where
    [T]: Loads,
{
    fn len(&self) -> usize {
        <[T] as Loads>::len(self)
    }
    fn load(&self, i: usize) -> &ServerLoad {
        <[T] as Loads>::load(self, i)
    }
}

#[cfg(test)]
mod tests;
