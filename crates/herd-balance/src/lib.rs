//! herd's balancing logic: which server of a backend group takes the next request.
//!
//! This crate owns the policies (smooth weighted round robin, weighted least-connections,
//! weighted random, power-of-two-choices, peak-EWMA, consistent hashing), the per-server live
//! load shared by worker threads ([`ServerLoad`]), the stable hash used for ring positions and
//! cookie server ids ([`hash64`]), and the health state machines (active rise/fall checks and
//! passive ejection from real traffic), and the traffic-control state machines: token
//! buckets ([`RateBucket`], [`RateTable`]), the [`CircuitBreaker`] and per-key connection
//! counts ([`KeyedCounter`]).
//!
//! It must stay pure and cheap on the request path:
//! - no I/O, no sockets, no threads spawned, no clock reads: time is always an argument
//!   (`now_nanos` / `now_ms`) so the data plane decides which clock and tests are exact;
//! - no locks (`Mutex`/`RwLock`): state shared between worker threads is atomics only, so a
//!   pick never waits on another thread;
//! - no allocation in [`Balancer::pick`]; everything a policy needs is precomputed in
//!   [`Balancer::new`], and a re-weight builds a new [`Balancer`] that the data plane swaps in.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod balancer;
mod breaker;
mod ewma;
mod hash;
mod health;
mod keyed;
mod load;
mod rate;
mod ring;
mod rng;
mod swrr;

pub use balancer::{Balancer, PickContext, Policy};
pub use breaker::{Admission, BreakerParams, BreakerState, CircuitBreaker, WINDOW_SLOTS};
pub use ewma::{DEFAULT_RTT_NANOS, EWMA_TAU_NANOS};
pub use hash::hash64;
pub use health::{HealthState, HealthTracker, PassiveEjector, Transition};
pub use keyed::{KeyedAcquire, KeyedCounter};
pub use load::{InFlight, Loads, ServerLoad};
pub use rate::{RateBucket, RateDecision, RateParams, RateTable, RATE_TABLE_WAYS};
pub use ring::{MAX_RING_POINTS, POINTS_PER_WEIGHT_UNIT};
pub use rng::Rng;
pub use swrr::MAX_SEQUENCE_LEN;
