//! Health checks, registry discovery, reload, the admin API and its authentication: they read the state, nothing on the request path imports them.

pub(crate) mod admin;
pub(crate) mod admin_auth;
pub(crate) mod discovery;
pub(crate) mod health;
pub(crate) mod reload;
