//! Cluster-unique 64-bit IDs without a consensus round: a snowflake per node, its node
//! bits being the Raft node id.

use herd_registry_core::Snowflake;
use std::sync::Mutex;

/// IDs count milliseconds from 2026-01-01T00:00:00Z: 41 bits last until about 2095.
pub const ID_EPOCH_MS: u64 = 1_767_225_600_000;

pub struct IdGenerator {
    node: u64,
    gen: Mutex<Option<Snowflake>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("node id {0} does not fit the 10 bits of a snowflake id")]
    NodeTooLarge(u64),
    #[error("{0}")]
    Clock(String),
    #[error("id generator poisoned")]
    Poisoned,
}

impl IdGenerator {
    pub fn new(node_id: u64) -> IdGenerator {
        let gen = u16::try_from(node_id)
            .ok()
            .and_then(|n| Snowflake::new(n, ID_EPOCH_MS).ok());
        IdGenerator {
            node: node_id,
            gen: Mutex::new(gen),
        }
    }

    /// `count` new ids, in increasing order.
    pub fn take(&self, count: u64, now_ms: u64) -> Result<Vec<u64>, IdError> {
        let mut guard = self.gen.lock().map_err(|_| IdError::Poisoned)?;
        let gen = guard.as_mut().ok_or(IdError::NodeTooLarge(self.node))?;
        (0..count)
            .map(|_| gen.next(now_ms).map_err(|e| IdError::Clock(e.to_string())))
            .collect()
    }
}
