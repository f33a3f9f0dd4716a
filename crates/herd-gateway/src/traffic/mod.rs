//! Traffic control on the request path (seed 004): rate limits, per-server connection
//! limits with a bounded queue, circuit breakers, CIDR ACLs and time windows, body size
//! limits and per-IP connection limits. The state machines are herd-balance's (atomics,
//! time as an argument); this module wires them to requests and responses, one file per mechanism.
//!
//! Zero cost when unused: a route, group or listener with nothing configured carries
//! `None` and the request path checks one `Option`.

mod breaker;
mod limit;
mod per_ip;
mod route;

pub use breaker::*;
pub use limit::*;
pub use per_ip::*;
pub use route::*;

#[cfg(test)]
mod tests;
