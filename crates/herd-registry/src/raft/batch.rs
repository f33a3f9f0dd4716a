//! Write batching. openraft 0.9 appends one client write at a time and waits for its
//! fsync before taking the next, so proposing each write as its own entry caps a node at
//! one write per fsync however many clients wait. The batcher keeps one proposal in
//! flight and gathers every write that arrives meanwhile into the next one, a single
//! `Command::Batch` entry: one fsync (and one replication round) for all of them. Each
//! command keeps its own revision and its own answer, so clients see exactly what they
//! would have seen had the entries been consecutive.

use crate::raft::types::{Node, NodeId, Raft};
use herd_registry_core::{Command, Op, Outcome, Response};
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use tokio::sync::{mpsc, oneshot};

/// Commands in one entry at most.
const MAX_BATCH: usize = 512;
/// Approximate payload bytes in one entry: a batch stays well inside one AppendEntries
/// (log_store::MAX_APPEND_BYTES); a single larger command still goes, alone.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// What became of one proposed command.
pub enum Proposed {
    Applied(Response),
    /// This node is not the leader: the caller forwards the command itself.
    Forward(ForwardToLeader<NodeId, Node>),
    Failed(String),
}

type Waiter = (Command, oneshot::Sender<Proposed>);

pub struct Batcher {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Batcher {
    /// Starts the proposing task on the current tokio runtime.
    pub fn start(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    pub async fn propose(&self, cmd: Command) -> Proposed {
        let (tx, rx) = oneshot::channel();
        if self.tx.send((cmd, tx)).is_err() {
            return Proposed::Failed("the write batcher has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Proposed::Failed("the write batcher has stopped".into()))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let mut carried: Option<Waiter> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let mut bytes = approx_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            let size = approx_bytes(&next.0);
            if bytes + size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        propose(&raft, batch).await;
    }
}

async fn propose(raft: &Raft, mut batch: Vec<Waiter>) {
    if batch.len() == 1 {
        if let Some((cmd, tx)) = batch.pop() {
            let _ = tx.send(outcome(raft.client_write(cmd).await));
        }
        return;
    }
    let (cmds, waiters): (Vec<Command>, Vec<oneshot::Sender<Proposed>>) = batch.into_iter().unzip();
    let result = raft.client_write(Command::Batch(cmds)).await;
    match outcome(result) {
        Proposed::Applied(Response {
            outcome: Outcome::Batch { responses },
            ..
        }) if responses.len() == waiters.len() => {
            for (tx, response) in waiters.into_iter().zip(responses) {
                let _ = tx.send(Proposed::Applied(response));
            }
        }
        Proposed::Applied(other) => {
            let why = format!("a batch of {} answered {other:?}", waiters.len());
            for tx in waiters {
                let _ = tx.send(Proposed::Failed(why.clone()));
            }
        }
        Proposed::Forward(f) => {
            for tx in waiters {
                let _ = tx.send(Proposed::Forward(f.clone()));
            }
        }
        Proposed::Failed(why) => {
            for tx in waiters {
                let _ = tx.send(Proposed::Failed(why.clone()));
            }
        }
    }
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<crate::raft::types::TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, Node>>,
>;

fn outcome(result: WriteResult) -> Proposed {
    match result {
        Ok(r) => match r.data.0 {
            Some(resp) => Proposed::Applied(resp),
            None => Proposed::Failed("entry applied without an answer".into()),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Proposed::Forward(f),
        Err(e) => Proposed::Failed(e.to_string()),
    }
}

fn approx_bytes(cmd: &Command) -> usize {
    const OVERHEAD: usize = 64;
    let op_bytes = |ops: &[Op]| -> usize {
        ops.iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len() * 4 / 3 + OVERHEAD,
                Op::Delete { key, .. } | Op::Get { key, .. } => key.len() + OVERHEAD,
            })
            .sum()
    };
    match cmd {
        // Values travel base64-encoded: 4/3 of their size.
        Command::Put { key, value, .. } => key.len() + value.len() * 4 / 3 + OVERHEAD,
        Command::Delete { key, .. } => key.len() + OVERHEAD,
        Command::Txn(t) => {
            op_bytes(&t.success)
                + op_bytes(&t.failure)
                + t.compares
                    .iter()
                    .map(|c| c.key.len() + OVERHEAD)
                    .sum::<usize>()
        }
        Command::Batch(cmds) => cmds.iter().map(approx_bytes).sum(),
        _ => OVERHEAD,
    }
}
