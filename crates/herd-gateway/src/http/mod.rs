//! A request's phases: the worker context it reads, admission (pick under limits, queue, breaker), the proxy loop, the response body and its completion, upgrades, gRPC errors.

pub(crate) mod admit;
pub(crate) mod context;
pub(crate) mod failure;
pub(crate) mod grpc;
pub(crate) mod proxy;
pub(crate) mod respond;
pub(crate) mod retry;
pub(crate) mod upgrade;
