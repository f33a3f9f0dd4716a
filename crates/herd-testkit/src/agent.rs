//! `herd agent` from the outside: the real process with its own data directory, name and
//! labels, pointed at a registry; killed (or stopped with SIGTERM) by the test, restarted
//! on the same directory.

use crate::herd_bin;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct AgentProc {
    child: Option<Child>,
    pub name: String,
    pub dir: PathBuf,
    /// The registry nodes it is given, comma-separated.
    pub servers: String,
    pub labels: String,
    pub ports: String,
    pub ready: Value,
    pub stderr_path: PathBuf,
    /// `--lease-ttl`, seconds.
    pub lease_ttl: String,
    /// Set in the agent's environment (and its instances').
    pub env: Vec<(String, String)>,
}

impl AgentProc {
    /// Start an agent named `name` with its data in `dir`, handing out ports from `ports`
    /// (`FIRST-LAST`), on a 2 s lease; wait (30 s) for its ready line.
    pub fn start(
        server: SocketAddr,
        dir: PathBuf,
        name: &str,
        labels: &str,
        ports: &str,
    ) -> AgentProc {
        AgentProc::start_with(&[server], dir, name, labels, ports)
    }

    /// The same, given several registry nodes (it fails over between them).
    pub fn start_with(
        servers: &[SocketAddr],
        dir: PathBuf,
        name: &str,
        labels: &str,
        ports: &str,
    ) -> AgentProc {
        AgentProc::configured(servers, dir, name, labels, ports).spawned()
    }

    /// The same on a lease of `ttl_s` seconds: long enough for a restart to find its
    /// instances still assigned.
    pub fn start_with_lease(
        server: SocketAddr,
        dir: PathBuf,
        name: &str,
        ports: &str,
        ttl_s: u32,
    ) -> AgentProc {
        let mut a = AgentProc::configured(&[server], dir, name, "", ports);
        a.lease_ttl = ttl_s.to_string();
        a.spawned()
    }

    /// The same as [`AgentProc::start`], with these variables in its environment.
    pub fn start_env(
        server: SocketAddr,
        dir: PathBuf,
        name: &str,
        ports: &str,
        env: &[(&str, &str)],
    ) -> AgentProc {
        let mut a = AgentProc::configured(&[server], dir, name, "", ports);
        a.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        a.spawned()
    }

    /// Everything but the process: a 2 s lease, nothing added to the environment.
    fn configured(
        servers: &[SocketAddr],
        dir: PathBuf,
        name: &str,
        labels: &str,
        ports: &str,
    ) -> AgentProc {
        std::fs::create_dir_all(&dir).unwrap();
        AgentProc {
            child: None,
            stderr_path: dir.join("agent.stderr.log"),
            name: name.into(),
            dir,
            servers: servers
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(","),
            labels: labels.into(),
            ports: ports.into(),
            ready: Value::Null,
            lease_ttl: "2".into(),
            env: Vec::new(),
        }
    }

    fn spawned(mut self) -> AgentProc {
        self.spawn();
        self
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let mut child = Command::new(herd_bin())
            .arg("agent")
            .arg("--server")
            .arg(&self.servers)
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--name",
                &self.name,
                "--labels",
                &self.labels,
                "--ports",
                &self.ports,
            ])
            .args(["--lease-ttl", &self.lease_ttl])
            .env_remove("HERD_TOKEN")
            .env_remove("HERD_DATA_DIR")
            .env_remove("HERD_SERVER")
            .env("HERD_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start herd agent");
        let Ok(line) = crate::ready_line(&mut child, Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "herd agent {} not ready within 30 s; stderr:\n{}",
                self.name,
                self.stderr()
            );
        };
        self.ready = serde_json::from_str(&line).expect("the ready line is JSON");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the agent dies, its instances (own process groups) keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait (30 s) for it to stop its instances and exit; its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        for _ in 0..600 {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "agent {} is running", self.name);
        self.spawn();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        // A graceful stop takes the instances with it; a test that killed the agent already
        // has nothing here.
        self.terminate();
        // Instances an agent killed with SIGKILL left behind (each its own process group).
        let ledger = std::fs::read(self.dir.join("processes.json")).unwrap_or_default();
        if let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(&ledger) {
            for pid in list.iter().filter_map(|r| r["pid"].as_u64()) {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if std::thread::panicking() {
            let text = self.stderr();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("--- agent {} stderr (last 30 lines):", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
