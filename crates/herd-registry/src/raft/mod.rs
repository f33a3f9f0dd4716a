//! Consensus and storage: the node (writes, forwarding, read-index, leases), its openraft
//! types, the network between peers, the write-ahead log, the state machine around
//! `herd-registry-core`, and write batching. Nothing here knows the HTTP API; the API
//! calls down into it.

pub mod batch;
pub mod ids;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod types;
pub mod wal;
