//! Per-listener traffic counters and the per-IP connection table (`max_conns_per_ip`),
//! and the key a client IP hashes to.

use herd_balance::{hash64, KeyedCounter};
use herd_telemetry::Counter;
use std::net::IpAddr;
use std::sync::OnceLock;

/// Client IPs with open connections tracked per listener with `max_conns_per_ip`: 8 bytes
/// each, 512 KiB per listener.
pub const PER_IP_TABLE_SLOTS: usize = 65_536;

/// Per-listener traffic counters; they live in `Shared` (the listener set is fixed).
#[derive(Default)]
pub struct ListenerTrafficStats {
    /// Created on the first connection that needs it.
    pub(crate) per_ip: OnceLock<KeyedCounter>,
    /// Connections closed because their IP already had max_conns_per_ip.
    pub per_ip_rejected: Counter,
    /// Connections (tcp) or requests (http) refused by the listener's allow/deny lists.
    pub denied: Counter,
    /// Connections admitted uncounted because the per-IP table was full (fail open).
    pub per_ip_untracked: Counter,
    /// http: connections closed because a request head took over header_read_timeout.
    pub header_timeouts: Counter,
    /// http: requests refused 400 for a missing, repeated, invalid or conflicting Host.
    pub bad_host: Counter,
}

/// The source_ip policy's key: an IPv4 client hashes the same over IPv4 and dual-stack.
pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash64(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash64(&v4.octets()),
            None => hash64(&v6.octets()),
        },
    }
}
