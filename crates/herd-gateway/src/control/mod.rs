//! Health checks, registry discovery, reload, the admin API and its authentication, the span exporter: they read the state, nothing on the request path imports them.

pub(crate) mod admin;
pub(crate) mod admin_auth;
pub(crate) mod discovery;
pub(crate) mod export;
pub(crate) mod health;
pub(crate) mod reload;
