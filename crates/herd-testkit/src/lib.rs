//! herd's test harness, for tests only (a dev-dependency, never part of the binary): the
//! real `herd` binary started as a user would, real HTTP backends and raw TCP servers on
//! 127.0.0.1 with ephemeral ports, clients that speak to them over the network, scratch
//! directories, polling with a deadline, and the network-namespace lab of the fault suite.
//!
//! It owns no product logic. It sees herd from the outside — processes, sockets, HTTP —
//! so a bug in the product cannot hide in a shared helper; the one exception is `inproc`,
//! which hosts registry nodes in the test process (still spoken to only over HTTP).

pub mod agent;
pub mod api;
pub mod backend;
pub mod browser;
pub mod chaos;
pub mod dirs;
pub mod faults;
pub mod gateway;
pub mod http;
pub mod inproc;
pub mod raw_server;
pub mod registry;
pub mod serve;
pub mod traced;
pub mod webhook;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a test file of the gateway or registry suite takes with one `use`.
pub mod prelude {
    pub use crate::agent::*;
    pub use crate::api::*;
    pub use crate::backend::*;
    pub use crate::dirs::*;
    pub use crate::gateway::*;
    pub use crate::http::*;
    pub use crate::inproc::*;
    pub use crate::registry::*;
    pub use crate::traced::*;
    pub use crate::webhook::*;
    pub use crate::{eventually, herd_bin};
}

/// The `herd` binary under test: `HERD_BIN` if set, else the one cargo built beside the
/// test executable (`target/<profile>/herd`, the test being `target/<profile>/deps/x`).
pub fn herd_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("HERD_BIN") {
            return p;
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(PathBuf::from)
            .expect("the test executable lives in target/<profile>/deps");
        let bin = profile_dir.join("herd");
        assert!(
            bin.exists(),
            "no herd binary at {} (cargo builds it for the herd crate's tests; or set HERD_BIN)",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

/// The first line a started process prints on stdout (herd's ready line), waiting at most
/// `within`; the rest of stdout is drained on a thread, so an access log there never
/// blocks the process.
pub fn ready_line(
    child: &mut std::process::Child,
    within: Duration,
) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    rx.recv_timeout(within)
}

/// Poll `check` every 25 ms until it returns Some; panic naming `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The same, for tests on plain threads (the fault suite).
pub fn eventually_blocking<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
