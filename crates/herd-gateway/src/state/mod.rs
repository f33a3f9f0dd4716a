//! The snapshot workers read, and what it is built from: routes, groups, servers, certificates, backend TLS, persistence tables, the access-log sink, the queue of finished spans.

pub(crate) mod access_log;
pub(crate) mod backend_tls;
pub(crate) mod certs;
pub(crate) mod lock;
pub(crate) mod shared;
pub(crate) mod snapshot;
pub(crate) mod spans;
pub(crate) mod sticky;
