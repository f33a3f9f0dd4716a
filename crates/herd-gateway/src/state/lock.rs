//! The one std mutex of the crate (clippy.toml refuses `std::sync::Mutex` elsewhere): for
//! state taken for a few instructions and never held across an `.await` — the reload lock,
//! health and discovery task handles, discovered members, a server's health tracker, the
//! shards of the source-IP persistence table, the span queue's receiver until the exporter
//! takes it. Anything a request waits on is an ArcSwap snapshot, an atomic or a tokio
//! primitive instead. A file of its own, at the bottom of `state/`, so that every other
//! file can use it without importing another's.

#[allow(clippy::disallowed_types)]
pub type ShortMutex<T> = std::sync::Mutex<T>;
