//! Global process identity.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Global process id `host:port:start_unix_ms:pid`, unique per run (a
/// restart on the same host and port gets a new start time and pid).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub host: String,
    pub port: u16,
    pub start_unix_ms: u64,
    pub pid: u32,
}

impl ProcessId {
    /// Host from the `HOSTNAME` env var, else `/proc/sys/kernel/hostname`,
    /// else `"localhost"`; start = now; pid = [`std::process::id`].
    /// Colons and whitespace in the host are replaced by `_` so the id always
    /// has exactly four `:`-separated parts.
    pub fn new(port: u16) -> ProcessId {
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        ProcessId {
            host: hostname(),
            port,
            start_unix_ms,
            pid: std::process::id(),
        }
    }

    /// 64-bit FNV-1a hash of the rendered id, e.g. to seed a per-run RNG.
    pub fn seed(&self) -> u64 {
        self.to_string()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

fn hostname() -> String {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_proc = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    [from_env, from_proc()]
        .into_iter()
        .flatten()
        .map(|h| sanitize_host(h.trim()))
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn sanitize_host(h: &str) -> String {
    h.chars()
        .map(|c| {
            if c == ':' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.host, self.port, self.start_unix_ms, self.pid
        )
    }
}

/// Error returned when a string is not `host:port:start_unix_ms:pid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseProcessIdError;

impl fmt::Display for ParseProcessIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected process id `host:port:start_unix_ms:pid`")
    }
}

impl std::error::Error for ParseProcessIdError {}

impl FromStr for ProcessId {
    type Err = ParseProcessIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let (Some(host), Some(port), Some(start), Some(pid), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ParseProcessIdError);
        };
        if host.is_empty() {
            return Err(ParseProcessIdError);
        }
        Ok(ProcessId {
            host: host.to_string(),
            port: port.parse().map_err(|_| ParseProcessIdError)?,
            start_unix_ms: start.parse().map_err(|_| ParseProcessIdError)?,
            pid: pid.parse().map_err(|_| ParseProcessIdError)?,
        })
    }
}
