//! Fault-injection helpers for the registry: network namespaces (`netns`), a blocking
//! HTTP client (`http`), and the cluster chores every scenario shares. See
//! docs/RELIABILITY.md for what the suite covers and how to run it longer.

pub mod http;
pub mod netns;

/// Scenarios run on plain threads: polling blocks.
pub use crate::eventually_blocking as eventually;

use http::{request, Resp};
use netns::Lab;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// The client timeout: long enough for a forwarded write plus one fsync, short enough
/// that a request to a paused or cut-off node is counted as "unknown" and the client
/// moves on, as a real client with a deadline would.
pub const REQ: Duration = Duration::from_secs(2);

/// Scenario length multiplier from `HERD_FAULT_SECONDS` (the fault phase of each
/// scenario lasts about this many seconds; default 8).
pub fn fault_seconds() -> u64 {
    std::env::var("HERD_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(8)
}

/// A small deterministic generator (xorshift64*): the seed picks which node is hit,
/// when, and which fault, so a failing run can be replayed with `HERD_FAULT_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The lab for one scenario, or None after printing why this machine cannot run it.
/// Prints the seed and how to replay it.
pub fn lab(scenario: &str, nodes: usize) -> Option<(Lab, Rng)> {
    let lab = match Lab::new(nodes) {
        Ok(l) => l,
        Err(why) => {
            // Straight to stderr: libtest captures print!/eprint! of passing tests, and a
            // skip must be seen in a plain `cargo test`.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: {scenario}: {why}");
            return None;
        }
    };
    let seed = std::env::var("HERD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!(
        "{scenario}: lab {} seed {seed} fault phase {} s (replay: HERD_FAULT_SEED={seed} HERD_FAULT_SECONDS={})",
        lab.tag(),
        fault_seconds(),
        fault_seconds()
    );
    Some((lab, Rng::new(seed)))
}

pub fn get(addr: SocketAddr, path: &str) -> Result<Resp, String> {
    request(addr, "GET", path, b"", REQ)
}

pub fn put(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Resp, String> {
    request(addr, "PUT", path, body, REQ)
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Result<Resp, String> {
    request(addr, "POST", path, body.as_bytes(), REQ)
}

/// The node, among the running, unpaused, reachable ones `eligible` accepts, whose
/// /status says leader (the highest term wins when an old leader has not heard yet).
pub fn find_leader(lab: &Lab, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for n in &lab.nodes {
        if !n.running() || n.stopped || !eligible(n.idx) {
            continue;
        }
        let Ok(r) = request(n.addr, "GET", "/status", b"", Duration::from_millis(500)) else {
            continue;
        };
        let s = r.json();
        if s["role"] == "leader" {
            let term = s["term"].as_u64().unwrap_or(0);
            if best.is_none_or(|(t, _)| term > t) {
                best = Some((term, n.idx));
            }
        }
    }
    best.map(|(_, i)| i)
}

pub fn wait_leader(lab: &Lab, eligible: impl Fn(usize) -> bool) -> usize {
    eventually("a leader", Duration::from_secs(15), || {
        find_leader(lab, &eligible)
    })
}

/// Starts every node and waits until all are voters under one leader.
pub fn start_cluster(lab: &mut Lab) {
    lab.start_all();
    let n = lab.nodes.len();
    let first = lab.nodes[0].addr;
    eventually(&format!("{n} voters"), Duration::from_secs(30), || {
        let c = get(first, "/v1/cluster").ok()?.json();
        let members = c["members"].as_array()?;
        let voters = members
            .iter()
            .filter(|m| m["role"] == "leader" || m["role"] == "follower")
            .count();
        (members.len() == n && voters == n).then_some(())
    });
    wait_leader(lab, |_| true);
}

/// A node other than `not`, cycling with `k`.
pub fn other(lab: &Lab, not: usize, k: usize) -> usize {
    let n = lab.nodes.len();
    let i = (not + 1 + k % (n - 1)) % n;
    debug_assert_ne!(i, not);
    i
}

/// A key's value as text and its mod_revision, linearizable, from `addr`.
pub fn read_kv(addr: SocketAddr, key: &str) -> Result<Option<(String, u64)>, String> {
    let r = get(addr, &format!("/v1/kv/{key}"))?;
    match r.status {
        200 => {
            let v = r.json();
            let value = v["value"]
                .as_str()
                .and_then(http::unb64)
                .ok_or_else(|| format!("no base64 value in {}", r.text()))?;
            let rev = v["mod_revision"]
                .as_u64()
                .ok_or_else(|| format!("no mod_revision in {}", r.text()))?;
            Ok(Some((String::from_utf8_lossy(&value).into_owned(), rev)))
        }
        404 => Ok(None),
        s => Err(format!("GET {key}: {s} {}", r.text())),
    }
}

/// Every key under `prefix` (linearizable), paging with `limit`.
pub fn all_keys(addr: SocketAddr, prefix: &str) -> Result<Vec<(String, String)>, String> {
    let r = request(
        addr,
        "GET",
        &format!("/v1/kv/{prefix}?prefix"),
        b"",
        Duration::from_secs(10),
    )?;
    if r.status != 200 {
        return Err(format!("range {prefix}: {} {}", r.status, r.text()));
    }
    let v: Value = r.json();
    let kvs = v["kvs"]
        .as_array()
        .ok_or_else(|| format!("no kvs in {}", r.text()))?;
    Ok(kvs
        .iter()
        .map(|kv| {
            let key = kv["key"].as_str().unwrap_or_default().to_string();
            let value = kv["value"]
                .as_str()
                .and_then(http::unb64)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            (key, value)
        })
        .collect())
}
