//! A request's phases, each its own module: the worker context it reads (`context`),
//! affinity (persistence, hash keys), header edits (`edit`), admission (`admit`: pick under
//! the limits, the queue, the breaker), the retry decision (`retry`), the proxy loop
//! (`proxy`), the response body and its completion (`respond`), answers we write
//! ourselves (`reply`, `failure`), upgrades and gRPC errors, the request's span (`trace`).

pub(crate) mod admit;
pub(crate) mod affinity;
pub(crate) mod context;
pub(crate) mod edit;
pub(crate) mod failure;
pub(crate) mod grpc;
pub(crate) mod proxy;
pub(crate) mod reply;
pub(crate) mod respond;
pub(crate) mod retry;
pub(crate) mod trace;
pub(crate) mod upgrade;
