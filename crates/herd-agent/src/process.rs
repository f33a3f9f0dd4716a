//! Processes the agent starts: each in its own process group (so a stop reaches its
//! children too), recorded by pid and start time (so a pid the kernel reused for another
//! program is never signalled), signalled through the group.

use std::path::{Path, PathBuf};

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or
/// None when no such process runs.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded as (`pid`, `start_time`) still runs: the pid was not
/// reused, and it is not a zombie waiting for a parent to reap it (a process this agent
/// adopted is not its child, and whoever inherited it may never reap it).
pub fn running(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut f = after.split_whitespace();
    let state = f.next().unwrap_or("");
    let started: Option<u64> = f.nth(18).and_then(|t| t.parse().ok());
    state != "Z" && started == Some(start)
}

/// User plus system CPU time `pid` has used, in clock ticks (fields 14 and 15 of
/// /proc/<pid>/stat); the process itself, not its children.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace().skip(11);
    let user: u64 = f.next()?.parse().ok()?;
    let system: u64 = f.next()?.parse().ok()?;
    Some(user + system)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), 100 when it cannot be read.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf takes an integer name and returns an integer.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

/// Signal the process group `pgid` (the leader's pid). True when it was delivered.
pub fn signal_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill(2) takes plain integers; a negative pid addresses the process group.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

pub fn signal_number(s: herd_agent_core::manifest::StopSignal) -> i32 {
    use herd_agent_core::manifest::StopSignal::*;
    match s {
        Term => libc::SIGTERM,
        Int => libc::SIGINT,
        Quit => libc::SIGQUIT,
        Hup => libc::SIGHUP,
        Usr1 => libc::SIGUSR1,
        Usr2 => libc::SIGUSR2,
    }
}

/// One process the agent started, as recorded on disk: enough to find it again, and to
/// tell whether it still runs what is assigned (the same version of the same manifest),
/// so a restarted agent can adopt it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub instance: String,
    pub pid: u32,
    pub start_time: u64,
    #[serde(default)]
    pub version: String,
    /// The assignment's manifest text, exactly.
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, u16>,
    #[serde(default)]
    pub restarts: u32,
}

/// The file of the processes this agent runs, rewritten whole on every change.
pub struct Ledger {
    path: PathBuf,
    entries: std::sync::Mutex<Vec<Recorded>>,
}

impl Ledger {
    pub fn open(dir: &Path) -> Ledger {
        let path = dir.join("processes.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ledger {
            path,
            entries: std::sync::Mutex::new(entries),
        }
    }

    /// What the previous run left: processes still running with their recorded start time.
    pub fn survivors(&self) -> Vec<Recorded> {
        self.entries()
            .into_iter()
            .filter(|r| running(r.pid, r.start_time))
            .collect()
    }

    pub fn add(&self, r: Recorded) {
        self.change(|e| {
            e.retain(|x| x.instance != r.instance);
            e.push(r);
        });
    }

    /// Every process recorded now.
    pub fn entries(&self) -> Vec<Recorded> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Forget this very process (not a newer one of the same instance).
    pub fn remove_record(&self, r: &Recorded) {
        self.change(|e| e.retain(|x| !(x.instance == r.instance && x.pid == r.pid)));
    }

    pub fn remove(&self, instance: &str) {
        self.change(|e| e.retain(|x| x.instance != instance));
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Recorded>)) {
        let Ok(mut e) = self.entries.lock() else {
            return;
        };
        f(&mut e);
        let tmp = self.path.with_extension("json.tmp");
        let ok = serde_json::to_vec(&*e)
            .ok()
            .is_some_and(|b| std::fs::write(&tmp, b).is_ok());
        if ok {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

/// Stop a process a previous run of the agent left running that is no longer wanted
/// here: the stop signal to its group, then SIGKILL after `grace`.
pub async fn stop_left(ledger: &Ledger, r: &Recorded, grace: std::time::Duration) {
    tracing::info!(instance = %r.instance, pid = r.pid, "agent: stopping an instance left by a previous run");
    signal_group(r.pid, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while running(r.pid, r.start_time) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if running(r.pid, r.start_time) {
        signal_group(r.pid, libc::SIGKILL);
    }
    ledger.remove_record(r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_start_time_reads_and_a_missing_pid_has_none() {
        let me = std::process::id();
        let t = start_time(me).expect("this process has a start time");
        assert_eq!(start_time(me), Some(t), "it does not change");
        assert!(running(me, t));
        assert!(!running(me, t + 1), "another start time is another process");
        assert_eq!(start_time(u32::MAX - 1), None);
        assert!(
            !signal_group(0, 0) && !signal_group(1, 0),
            "never the whole session or init"
        );
    }
}
