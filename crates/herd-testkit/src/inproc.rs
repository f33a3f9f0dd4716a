//! Registry nodes hosted inside the test process (each on its own thread and runtime, on
//! 127.0.0.1 with an ephemeral port), for tests that need a cluster but not separate
//! processes: no binary to spawn, a start in milliseconds. They are spoken to over HTTP
//! exactly like `herd server` processes; what needs a real process (kill -9, SIGSTOP, a
//! restart on the same data) uses `registry::ServerProc` instead.

use crate::dirs::TestDir;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// One in-process node; dropping it stops it (gracefully: Raft shut down, listener closed).
pub struct InProcNode {
    pub addr: SocketAddr,
    pub id: u64,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProcNode {
    /// A node with its data in `dir/<name>`, joining `join` when given; waits (30 s) until
    /// it serves.
    pub fn start(dir: &TestDir, name: &str, join: Option<SocketAddr>) -> InProcNode {
        let opts = herd_registry::ServerOptions {
            data_dir: dir.node(name),
            listen: "127.0.0.1:0".into(),
            join: join.map(|a| a.to_string()),
            token: None,
            read_token: None,
            insecure: false,
            trace_spans: herd_registry::DEFAULT_MAX_SPANS,
            dns: None,
            tls: None,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("inproc-{name}"))
            .spawn(move || {
                let tx = ready_tx.clone();
                let r = herd_registry::run_until(
                    opts,
                    move |ready| {
                        let _ = tx.send(Ok((ready.addr, ready.id)));
                    },
                    async move {
                        let _ = stop_rx.await;
                    },
                );
                if let Err(e) = r {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            })
            .expect("a thread for the node");
        let (addr, id) = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => panic!("in-process node {name} did not start: {e}"),
            Err(_) => panic!("in-process node {name} not ready within 30 s"),
        };
        InProcNode {
            addr,
            id,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `n` in-process nodes forming one cluster: the first bootstraps, the others join it.
pub fn inproc_cluster(dir: &TestDir, n: usize) -> Vec<InProcNode> {
    let first = InProcNode::start(dir, "n1", None);
    let via = first.addr;
    let mut nodes = vec![first];
    for i in 2..=n {
        nodes.push(InProcNode::start(dir, &format!("n{i}"), Some(via)));
    }
    nodes
}
