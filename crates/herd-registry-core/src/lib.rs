//! The deterministic core of herd's registry: the replicated state machine that Raft feeds
//! with committed log entries, and the pure helpers built on top of its key space.
//!
//! This crate owns:
//! - the log entry format ([`Command`]) and the state machine ([`Store`]): an etcd-like key
//!   space with a global revision, per-key create/mod revision and version, leases,
//!   compare-and-swap transactions, a bounded watch history and snapshots;
//! - the leader-local lease deadlines ([`LeaseClock`]), kept out of the log like etcd does so
//!   that keep-alives cost no consensus round;
//! - the catalog key layout ([`catalog`]), the lock recipe with fencing tokens ([`lock`]) and
//!   snowflake ID generation ([`Snowflake`]).
//!
//! It must stay deterministic and pure, because every node applies the same commands and must
//! end in byte-identical state:
//! - no I/O, no sockets, no threads, no clock reads: time is always an argument (`now_ms`);
//! - no hash maps or anything else whose iteration order could differ between nodes;
//! - no panic on any input: a bad command is answered with a [`CommandError`] and changes
//!   nothing, because a panic while applying a committed entry would crash every replica.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod b64;
pub mod catalog;
mod command;
mod history;
pub mod id64;
mod lease_clock;
pub mod lock;
mod snapshot;
mod snowflake;
mod store;

pub use command::{
    Command, CommandError, Compare, CompareOp, CompareTarget, Event, EventKind, KeyValue, Op,
    OpResult, Outcome, Response, Txn, MAX_KEY_BYTES, MAX_TXN_OPS, MAX_VALUE_BYTES,
};
pub use history::{Compacted, DEFAULT_HISTORY_REVISIONS};
pub use lease_clock::LeaseClock;
pub use snapshot::{SnapshotError, SNAPSHOT_FORMAT};
pub use snowflake::{
    decode_id, Snowflake, SnowflakeError, MAX_CLOCK_REGRESSION_MS, MAX_NODE, NODE_BITS,
    SEQUENCE_BITS, TIMESTAMP_BITS,
};
pub use store::{LeaseInfo, Store};
