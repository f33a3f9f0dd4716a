//! One monotonic clock for the process, in plain integers, so that atomics can hold times.

use std::sync::OnceLock;
use std::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

pub fn now_nanos() -> u64 {
    base().elapsed().as_nanos() as u64
}

pub fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
