//! A lab of network namespaces for fault tests: one namespace per registry node, joined
//! by veth pairs to a bridge in a hub namespace of its own, plus one veth from the test's
//! (root) namespace to that bridge so the test talks to every node directly over TCP.
//!
//! Addresses are one private /24 (`10.254.S.0/24`, S chosen free of the host's routes):
//! node i is `10.254.S.i`, the test is `10.254.S.254`. Nothing routes beyond that /24, so
//! traffic stays inside namespaces this lab created. Every name starts with
//! `hf<pid>x<k>` (≤ 15 bytes for interfaces); whatever an earlier, crashed run left
//! behind (its pid is gone) is removed before a new lab is built, and `Drop` removes all
//! of this lab's namespaces, links and processes even when the test panics.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Fault scenarios share the 2-core machine and timing matters to them: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static LABS: AtomicUsize = AtomicUsize::new(0);

const PREFIX: &str = "hf";
pub const PORT: u16 = 7400;

/// Runs a command; Err with its stderr when it fails.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a command that must work once the lab has been shown possible; a failure here
/// is a bug in this helper or the test, never a reason to skip.
fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("fault lab setup: {e}"))
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Why this machine cannot run the fault suite, or None when it can.
fn unsupported() -> Option<String> {
    // The effective uid, from the kernel rather than a tool that may be missing too.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or_default();
    if euid != "0" {
        return Some("not root (network namespaces and nftables need root)".into());
    }
    let mut missing = Vec::new();
    if run(&["ip", "-V"]).is_err() {
        missing.push("ip (iproute2)");
    }
    if run(&["nft", "--version"]).is_err() {
        missing.push("nft (nftables)");
    }
    if !missing.is_empty() {
        return Some(format!(
            "missing {}; install with `apt-get install -y iproute2 nftables`",
            missing.join(" and ")
        ));
    }
    let probe = format!("{PREFIX}{}probe", std::process::id());
    let made = run(&["ip", "netns", "add", &probe]);
    let _ = run(&["ip", "netns", "del", &probe]);
    match made {
        Ok(_) => None,
        // The tools exist and we are root: in CI that is a broken runner, not a reason to
        // pass quietly.
        Err(e) if ci() => panic!("CI=true, root, ip and nft present, but {e}"),
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

/// The pid embedded in one of our names (`hf<pid>x...` or `hf<pid>probe`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[digits.len()..];
    if !(tail.starts_with('x') || tail.starts_with("probe")) {
        return None;
    }
    digits.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills every process in namespace `ns`, then removes it.
fn remove_netns(ns: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run(&["kill", "-9", pid]);
        }
    }
    let _ = run(&["ip", "netns", "del", ns]);
}

/// Removes what a run that died without cleaning up left behind: namespaces and links
/// named with our prefix whose owning pid no longer exists.
fn clean_leftovers() {
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if owner_pid(name).is_some_and(|p| !alive(p)) {
                eprintln!("fault lab: removing leftover namespace {name}");
                remove_netns(name);
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show"]) {
        for line in links.lines() {
            // "12: hf123x0r@if11: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or_default();
            if owner_pid(name).is_some_and(|p| !alive(p)) {
                eprintln!("fault lab: removing leftover link {name}");
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// A third octet S for 10.254.S.0/24 that no route on this host uses.
fn free_subnet(k: usize) -> u8 {
    let routes = run(&["ip", "-4", "route", "show", "table", "all"]).unwrap_or_default();
    let start = (std::process::id() as usize + 37 * k) % 200;
    for step in 0..200 {
        let s = 20 + (start + step) % 200;
        if !routes.contains(&format!("10.254.{s}.")) {
            return s as u8;
        }
    }
    panic!("no free 10.254.S.0/24 for the fault lab; routes:\n{routes}");
}

/// One `herd server` in its own namespace.
pub struct Node {
    pub idx: usize,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub stderr_path: PathBuf,
    child: Option<Child>,
    pub stopped: bool,
    pub partitioned: bool,
}

impl Node {
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts (or restarts) the node; waits up to 30 s for its ready line.
    pub fn start(&mut self, join: Option<SocketAddr>) {
        assert!(self.child.is_none(), "node {} is already running", self.idx);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.stderr_path.display()));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, crate::herd_bin(), "server"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            // Namespaced addresses are not loopback; the lab is closed off by construction.
            .arg("--insecure");
        if let Some(j) = join {
            cmd.arg("--join").arg(j.to_string());
        }
        // `ip netns exec` execs the command in place, so the child's pid is herd's own
        // and signals reach the server itself.
        let mut child = cmd
            .env_remove("HERD_TOKEN")
            .env_remove("HERD_DATA_DIR")
            .env_remove("HERD_LISTEN")
            .env("HERD_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start herd server in {}: {e}", self.ns));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let pid = child.id();
        self.child = Some(child);
        self.stopped = false;
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "node {} ({}) printed no ready line within 30 s; stderr:\n{}",
                    self.idx,
                    self.addr,
                    self.stderr_tail(30)
                )
            });
        assert!(line.contains("\"ready\""), "node {}: {line}", self.idx);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "herd", "the pid we signal must be herd itself");
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_else(|| panic!("node {} is not running", self.idx))
    }

    /// SIGKILL and reap, like a crash or a power cut of this process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    /// SIGSTOP: the process freezes with its sockets open, like a long GC or VM pause.
    pub fn pause(&mut self) {
        must(&["kill", "-STOP", &self.pid()]);
        self.stopped = true;
    }

    pub fn resume(&mut self) {
        must(&["kill", "-CONT", &self.pid()]);
        self.stopped = false;
    }

    pub fn stderr_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The namespaces, links and nodes of one scenario.
pub struct Lab {
    tag: String,
    pub nodes: Vec<Node>,
    namespaces: Vec<String>,
    root_if: String,
    pub client_ip: Ipv4Addr,
    pub dir: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// Builds `n` node namespaces (nodes not started), or says why this machine cannot.
    pub fn new(n: usize) -> Result<Lab, String> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = unsupported() {
            return Err(why);
        }
        clean_leftovers();
        let k = LABS.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{PREFIX}{}x{k}", std::process::id());
        let s = free_subnet(k);
        let dir = std::env::temp_dir().join(format!("herd-faults-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut lab = Lab {
            root_if: format!("{tag}r"),
            client_ip: Ipv4Addr::new(10, 254, s, 254),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            dir,
            tag: tag.clone(),
            _serial: serial,
        };
        // From here on every name is registered before it is created, so Drop removes
        // whatever a failing step leaves half-built.
        let hub = format!("{tag}h");
        lab.namespaces.push(hub.clone());
        must(&["ip", "netns", "add", &hub]);
        must(&["ip", "-n", &hub, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &hub, "link", "set", "br0", "up"]);

        let (root_if, hub_end) = (lab.root_if.clone(), format!("{tag}q"));
        must(&[
            "ip", "link", "add", &root_if, "type", "veth", "peer", "name", &hub_end,
        ]);
        must(&["ip", "link", "set", &hub_end, "netns", &hub]);
        must(&[
            "ip", "-n", &hub, "link", "set", &hub_end, "master", "br0", "up",
        ]);
        let client = format!("{}/24", lab.client_ip);
        must(&["ip", "addr", "add", &client, "dev", &root_if]);
        must(&["ip", "link", "set", &root_if, "up"]);

        for i in 1..=n {
            let ns = format!("{tag}n{i}");
            lab.namespaces.push(ns.clone());
            must(&["ip", "netns", "add", &ns]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            let (a, b) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
            must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            must(&["ip", "link", "set", &a, "netns", &ns, "name", "eth0"]);
            must(&["ip", "link", "set", &b, "netns", &hub]);
            must(&["ip", "-n", &hub, "link", "set", &b, "master", "br0", "up"]);
            let ip = Ipv4Addr::new(10, 254, s, i as u8);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            lab.nodes.push(Node {
                idx: i - 1,
                ns,
                ip,
                addr: SocketAddr::from((ip, PORT)),
                data_dir: lab.dir.join(format!("n{i}")),
                stderr_path: lab.dir.join(format!("n{i}.stderr.log")),
                child: None,
                stopped: false,
                partitioned: false,
            });
        }
        Ok(lab)
    }

    /// Cuts node `i` off from every other node, both directions, with nftables drop
    /// rules inside its own namespace. The test's own address stays reachable, so the
    /// test can still talk to the isolated node as a client on its side would.
    pub fn partition(&mut self, i: usize) {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.idx != i)
            .map(|n| n.ip.to_string())
            .collect();
        let set = peers.join(", ");
        let rules = format!(
            "table inet herdfault {{\n\
             chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n\
             chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        let path = self.dir.join(format!("partition-n{}.nft", i + 1));
        std::fs::write(&path, rules).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ns = self.nodes[i].ns.clone();
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "-f",
            &path.to_string_lossy(),
        ]);
        self.nodes[i].partitioned = true;
    }

    pub fn heal(&mut self, i: usize) {
        let ns = self.nodes[i].ns.clone();
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "delete",
            "table",
            "inet",
            "herdfault",
        ]);
        self.nodes[i].partitioned = false;
    }

    /// Starts node 0 alone, then the others joining it.
    pub fn start_all(&mut self) {
        let first = self.nodes[0].addr;
        for i in 0..self.nodes.len() {
            let join = (i > 0).then_some(first);
            self.nodes[i].start(join);
        }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for n in &mut self.nodes {
            n.kill9();
            if panicking {
                eprintln!(
                    "---- node {} ({}) stderr, last lines:\n{}",
                    n.idx + 1,
                    n.addr,
                    n.stderr_tail(25)
                );
            }
        }
        for ns in self.namespaces.iter().rev() {
            remove_netns(ns);
        }
        // Deleting the hub namespace deletes the root veth's peer, and with it the root
        // veth; this covers a lab that failed before the hub end was moved.
        let _ = run(&["ip", "link", "del", &self.root_if]);
        if panicking {
            eprintln!("fault lab: data kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
