//! `herd server` from the outside: the real binary on fixed 127.0.0.1 ports (a node's
//! address must survive restarts, peers know it), a small client for its API, watch
//! streams, and the cluster chores tests share. Everything a test starts is killed when its
//! handle drops; a test that panics keeps its data directory and prints the tail of each
//! node's stderr.

use crate::api::Api;
use crate::dirs::{free_port, TestDir};
use crate::{eventually, herd_bin};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------- the server process

/// One real `herd server` process.
pub struct ServerProc {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub addr: SocketAddr,
    pub join: Option<SocketAddr>,
    pub token: Option<String>,
    /// Raft node id from the ready line.
    pub id: u64,
    pub ready: Value,
    pub stderr_path: PathBuf,
}

impl ServerProc {
    /// Start a node on `127.0.0.1:port` with its data in `data_dir` and stderr appended to
    /// `<data_dir>.stderr.log` beside it; wait (30 s) for its ready line.
    pub fn start(
        data_dir: &Path,
        port: u16,
        join: Option<SocketAddr>,
        token: Option<&str>,
    ) -> ServerProc {
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".into());
        let parent = data_dir.parent().unwrap_or(data_dir);
        std::fs::create_dir_all(parent).unwrap();
        let mut p = ServerProc {
            child: None,
            data_dir: data_dir.to_path_buf(),
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            join,
            token: token.map(str::to_string),
            id: 0,
            ready: Value::Null,
            stderr_path: parent.join(format!("{name}.stderr.log")),
        };
        p.spawn(join);
        p
    }

    fn spawn(&mut self, join: Option<SocketAddr>) {
        assert!(
            self.child.is_none(),
            "node {} is already running",
            self.addr
        );
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let mut cmd = Command::new(herd_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string());
        if let Some(j) = join {
            cmd.arg("--join").arg(j.to_string());
        }
        if let Some(t) = &self.token {
            cmd.arg("--token").arg(t);
        }
        let mut child = cmd
            .env_remove("HERD_TOKEN")
            .env_remove("HERD_DATA_DIR")
            .env_remove("HERD_LISTEN")
            .env("HERD_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start herd server");
        let line = match crate::ready_line(&mut child, Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herd server {} did not become ready within 30 s; stderr:\n{}",
                    self.addr,
                    self.stderr()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ready line {line:?} is not JSON: {e}"));
        assert_eq!(ready["event"], "ready", "{ready}");
        assert_eq!(ready["role"], "server", "{ready}");
        assert_eq!(ready["addr"], self.addr.to_string(), "{ready}");
        self.id = ready["id"].as_u64().expect("ready line has an id");
        self.ready = ready;
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// Die like a crash: SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again with the same data dir and port (node.json remembers membership).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn(None);
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last `n` lines of stderr, for failure messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- stderr of node {} ({}), last lines:\n{}",
                self.id,
                self.addr,
                self.stderr_tail(40)
            );
        }
    }
}

/// `n` nodes: the first alone, the others `--join` it, one after the other.
pub fn start_cluster(dir: &TestDir, n: usize, token: Option<&str>) -> Vec<ServerProc> {
    let mut nodes: Vec<ServerProc> = Vec::new();
    for i in 0..n {
        let join = nodes.first().map(|f| f.addr);
        nodes.push(ServerProc::start(
            &dir.node(&format!("n{}", i + 1)),
            free_port(),
            join,
            token,
        ));
    }
    nodes
}

// ---------------------------------------------------------------- cluster helpers

/// Index (in `nodes`) of the running node whose /status says "leader", polling for up to
/// 10 s. When two claim it (an old leader not yet told), the higher term wins.
pub async fn wait_for_leader(api: &Api, nodes: &[&ServerProc]) -> usize {
    let addrs: Vec<Option<SocketAddr>> = nodes
        .iter()
        .map(|n| n.is_running().then_some(n.addr))
        .collect();
    leader_index(api, &addrs).await
}

/// The same over addresses (None: a node that is down), for in-process nodes too.
pub async fn leader_index(api: &Api, addrs: &[Option<SocketAddr>]) -> usize {
    eventually(
        "a leader among the running nodes",
        Duration::from_secs(10),
        || async {
            let mut best: Option<(u64, usize)> = None;
            for (i, a) in addrs.iter().enumerate() {
                let Some(a) = a else { continue };
                if let Ok(s) = api.status(*a).await {
                    if s["role"] == "leader" {
                        let term = s["term"].as_u64().unwrap_or(0);
                        if best.is_none_or(|(t, _)| term > t) {
                            best = Some((term, i));
                        }
                    }
                }
            }
            best.map(|(_, i)| i)
        },
    )
    .await
}

/// `n` puts of `<prefix><i:05>` = `v<i>`, from `writers` concurrent tasks, through `addr`.
/// Every put must succeed (retried on 503 while a leader is elected); returns the highest
/// revision acknowledged.
pub async fn bulk_put(api: &Api, addr: SocketAddr, prefix: &str, n: usize, writers: usize) -> u64 {
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (api, next, prefix) = (api.clone(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut max_rev = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return max_rev;
                }
                let key = format!("{prefix}{i:05}");
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match api.put(addr, &key, format!("v{i}")).await {
                        Ok(r) if r.status == 200 => {
                            max_rev = max_rev.max(r.json()["revision"].as_u64().unwrap());
                            break;
                        }
                        other if attempts < 20 => {
                            let _ = other;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => panic!("put {key} failed 20 times, last: {other:?}"),
                    }
                }
            }
        }));
    }
    let mut max_rev = 0;
    for t in tasks {
        max_rev = max_rev.max(t.await.expect("writer task"));
    }
    max_rev
}

/// One node, started alone, once it has elected itself.
pub async fn single_node(dir: &TestDir, api: &Api) -> ServerProc {
    let n = ServerProc::start(&dir.node("n1"), free_port(), None, None);
    wait_for_leader(api, &[&n]).await;
    n
}
