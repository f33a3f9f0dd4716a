//! Session persistence state that is not carried by the client: the source-IP table.
//! Cookie modes need no table — the client carries the server id.

use crate::state::lock::ShortMutex as Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

const SHARDS: usize = 16;

/// Client IP → (server id, expiry). Sharded so that worker threads rarely meet on one
/// lock; the critical section is a hash lookup. Only groups that configure
/// `persistence.mode = "source_ip"` have one.
pub struct SourceIpTable {
    timeout_ms: u64,
    shards: Vec<Mutex<HashMap<IpAddr, (u64, u64)>>>,
}

impl SourceIpTable {
    pub fn new(timeout: Duration) -> SourceIpTable {
        SourceIpTable {
            timeout_ms: timeout.as_millis() as u64,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, (u64, u64)>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => (u128::from(*v6) as usize) ^ ((u128::from(*v6) >> 64) as usize),
        };
        &self.shards[h % SHARDS]
    }

    /// The server this client is pinned to, if the pin has not expired.
    pub fn get(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        let shard = self.shard(&ip).lock().ok()?;
        match shard.get(&ip) {
            Some(&(server, expires)) if expires > now_ms => Some(server),
            _ => None,
        }
    }

    /// Pin (or re-pin) a client; each use extends the pin by the timeout.
    pub fn put(&self, ip: IpAddr, server: u64, now_ms: u64) {
        if let Ok(mut shard) = self.shard(&ip).lock() {
            // Sweep expired entries now and then so the table is bounded by active clients.
            if shard.len() > 1024 && shard.len().is_power_of_two() {
                shard.retain(|_, (_, exp)| *exp > now_ms);
            }
            shard.insert(ip, (server, now_ms + self.timeout_ms));
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_expire_after_timeout_and_refresh_on_use() {
        let t = SourceIpTable::new(Duration::from_secs(10));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.get(ip, 0), None);
        t.put(ip, 7, 1_000);
        assert_eq!(t.get(ip, 10_999), Some(7));
        assert_eq!(t.get(ip, 11_000), None);
        t.put(ip, 9, 11_000);
        assert_eq!(t.get(ip, 20_000), Some(9));
        assert_eq!(t.len(), 1);
    }
}
