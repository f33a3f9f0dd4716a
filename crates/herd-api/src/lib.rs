//! The registry's wire: typed requests and answers for every `/v1/` call ([`wire`]), and an
//! HTTP client for them with failover and watch streams ([`RegistryClient`]). The registry
//! reads and writes these types; the gateway, the agent and the CLI send and read them,
//! exactly as any third-party client would.
//!
//! It must not depend on the registry's server code nor on the gateway or the agent: they
//! all meet here.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod client;
mod secret;
pub mod tls;
mod tls_listener;
pub mod wire;

pub use client::{Answer, ApiError, RegistryClient, Watch, WatchItem};
pub use herd_registry_core::catalog::Instance;
pub use herd_registry_core::{b64, id64, EventKind};
pub use secret::{bearer, same_secret};
pub use tls::{TlsError, TlsFiles, TlsMaterial};
pub use tls_listener::TlsListener;
pub use wire::{Event, Kv};
