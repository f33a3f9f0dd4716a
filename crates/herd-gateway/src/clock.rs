//! The gateway's one clock: every reading of time goes through here, so that tests can run
//! request phases on tokio's paused clock (`tokio::time::pause`), and so that times fit in
//! plain integers that atomics can hold. `clippy.toml` refuses `std::time::Instant`,
//! `SystemTime` and `tokio::time::Instant::now` anywhere else in the crate.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::OnceLock;
use tokio::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Now, as a tokio instant (for deadlines, sleeps and timeouts).
pub fn now() -> Instant {
    Instant::now()
}

pub fn now_nanos() -> u64 {
    base().elapsed().as_nanos() as u64
}

pub fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

/// Wall-clock time (for logs and the Date header), not for measuring durations.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Wall-clock nanoseconds, for span timestamps (OTLP counts from the epoch in ns).
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A std instant, for the one API that takes no other: hyper's `Timer`.
pub fn std_now() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// On a paused runtime the gateway's clock moves only when the test moves it: exactly.
    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_a_paused_runtime() {
        let (t0, ms0, ns0) = (now(), now_ms(), now_nanos());
        tokio::time::advance(Duration::from_millis(5_250)).await;
        assert_eq!(now() - t0, Duration::from_millis(5_250));
        assert_eq!(now_ms() - ms0, 5_250);
        assert_eq!(now_nanos() - ns0, 5_250_000_000);
        // Nothing moves while the test does not.
        let t1 = now();
        tokio::task::yield_now().await;
        assert_eq!(now(), t1);
    }
}
