//! Connections to servers: our HTTP/1.1 client, HTTP/2 through hyper, the per-worker pool, metered streams.

pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod pool;
pub(crate) mod stream;
