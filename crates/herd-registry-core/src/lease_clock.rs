//! Leader-local lease deadlines.
//!
//! Like etcd, deadlines are not replicated: a keep-alive touches only the leader's memory,
//! so heartbeats from thousands of instances cost no consensus round and no fsync. The price
//! is that a new leader does not know how far each countdown had run; it restarts every lease
//! with its full TTL ([`LeaseClock::reset_all`]), which can only extend a lease, never expire
//! it early. Expiry itself goes through the log as a `LeaseRevoke` proposed by the leader.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deadline {
    ttl_ms: u64,
    deadline_ms: u64,
}

/// Deadlines of the leases the state machine holds, keyed by lease id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseClock {
    leases: BTreeMap<u64, Deadline>,
}

impl LeaseClock {
    pub fn new() -> Self {
        LeaseClock::default()
    }

    /// Starts (or restarts) the countdown of lease `id`: it expires at `now_ms + ttl_ms`.
    pub fn grant(&mut self, id: u64, ttl_ms: u64, now_ms: u64) {
        let deadline_ms = now_ms.saturating_add(ttl_ms);
        self.leases.insert(
            id,
            Deadline {
                ttl_ms,
                deadline_ms,
            },
        );
    }

    /// Renews lease `id` to its full TTL and returns that TTL, or `None` if the lease is
    /// unknown or already expired. An expired lease is not revived, because its revoke may
    /// already be on its way through the log: the holder must grant a new lease.
    pub fn keep_alive(&mut self, id: u64, now_ms: u64) -> Option<u64> {
        let d = self.leases.get_mut(&id)?;
        if now_ms >= d.deadline_ms {
            return None;
        }
        d.deadline_ms = now_ms.saturating_add(d.ttl_ms);
        Some(d.ttl_ms)
    }

    /// Milliseconds until lease `id` expires (0 once expired), or `None` if unknown.
    pub fn remaining(&self, id: u64, now_ms: u64) -> Option<u64> {
        self.leases
            .get(&id)
            .map(|d| d.deadline_ms.saturating_sub(now_ms))
    }

    /// Leases whose deadline is at or before `now_ms`, by id. They stay listed until
    /// [`LeaseClock::remove`]d (when their revoke is applied), so a lost proposal is simply
    /// proposed again on the next tick.
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.leases
            .iter()
            .filter(|(_, d)| d.deadline_ms <= now_ms)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Gives every lease its full TTL from `now_ms`: called when this node becomes leader.
    pub fn reset_all(&mut self, now_ms: u64) {
        for d in self.leases.values_mut() {
            d.deadline_ms = now_ms.saturating_add(d.ttl_ms);
        }
    }

    /// Forgets lease `id`; returns whether it was known.
    pub fn remove(&mut self, id: u64) -> bool {
        self.leases.remove(&id).is_some()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests;
