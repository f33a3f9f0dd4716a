//! One registry node: Raft, its storage, leases, and the operations the API offers, with
//! writes and linearizable reads forwarded to the leader when this node is not it.

use crate::raft::batch::Proposed;
use crate::raft::network::HttpClient;
use crate::raft::state_machine::SharedState;
use crate::raft::types::{Node, NodeId, Raft};
use bytes::Bytes;
use herd_registry_core::{Command, LeaseClock, Response};
use http_body_util::{BodyExt, Full};
use openraft::error::{ForwardToLeader, RaftError};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct RegistryNode {
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft,
    pub state: Arc<SharedState>,
    pub client: HttpClient,
    pub token: Option<String>,
    pub leases: Mutex<LeaseClock>,
    pub process_id: String,
    pub started: std::time::Instant,
    pub counters: Counters,
    pub committed: Arc<AtomicU64>,
    pub log: crate::raft::log_store::LogStore,
    pub ids: crate::raft::ids::IdGenerator,
    lease_seq: AtomicU64,
    batcher: crate::raft::batch::Batcher,
}

#[derive(Default)]
pub struct Counters {
    pub writes: AtomicU64,
    pub forwarded: AtomicU64,
    pub reads: AtomicU64,
    pub watchers: AtomicU64,
    pub apply_nanos: AtomicU64,
}

/// Why an operation failed, mapped to an HTTP status by the API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no leader is known right now; retry shortly")]
    NoLeader,
    #[error("leader {leader} at {addr} did not answer: {reason}")]
    Forward {
        leader: NodeId,
        addr: String,
        reason: String,
    },
    #[error("raft: {0}")]
    Raft(String),
    /// The leader answered this status and message (from its `{"error": ...}`); a
    /// follower passes both on unchanged, so a client sees what the leader said.
    #[error("{message}")]
    Remote { status: u16, message: String },
    #[error("this node could not confirm its leadership with a quorum within {0:?}; retry on another node")]
    NoQuorum(Duration),
}

/// How long a leader waits for a quorum to confirm it before refusing a lease operation:
/// a few heartbeats, and below the one-second timeouts clients typically use.
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(800);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RegistryNode {
    pub fn new(
        id: NodeId,
        addr: String,
        raft: Raft,
        state: Arc<SharedState>,
        peers: crate::raft::network::Network,
        process_id: String,
        log: crate::raft::log_store::LogStore,
    ) -> RegistryNode {
        let crate::raft::network::Network { client, token } = peers;
        RegistryNode {
            id,
            addr,
            state,
            client,
            token,
            leases: Mutex::new(LeaseClock::new()),
            process_id,
            started: std::time::Instant::now(),
            counters: Counters::default(),
            committed: log.committed.clone(),
            log,
            ids: crate::raft::ids::IdGenerator::new(id),
            lease_seq: AtomicU64::new(0),
            batcher: crate::raft::batch::Batcher::start(raft.clone()),
            raft,
        }
    }

    /// Propose a command; on a follower, send it to the leader.
    pub async fn write(&self, cmd: Command) -> Result<Response, NodeError> {
        let started = std::time::Instant::now();
        if let Some(refused) = self.precheck(&cmd) {
            return Ok(refused);
        }
        let lease_grant = match &cmd {
            Command::LeaseGrant { id, ttl_ms } => Some((*id, *ttl_ms)),
            Command::LeaseRevoke { id } => {
                if let Ok(mut l) = self.leases.lock() {
                    l.remove(*id);
                }
                None
            }
            _ => None,
        };
        let resp = match self.batcher.propose(cmd.clone()).await {
            Proposed::Applied(resp) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                resp
            }
            Proposed::Forward(f) => {
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                return self.forward(&f, "/raft/write", &cmd).await;
            }
            Proposed::Failed(e) => return Err(NodeError::Raft(e)),
        };
        self.counters
            .apply_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if let (Some((id, ttl)), None) = (lease_grant, resp.error()) {
            if let Ok(mut l) = self.leases.lock() {
                l.grant(id, ttl, now_ms());
            }
        }
        Ok(resp)
    }

    /// A command bound to be refused, answered without entering the log. Shapes are checked
    /// on every node; lease existence only on a leader that has applied an entry of its own
    /// term (so everything committed before it), since a lagging store would refuse a lease
    /// that exists.
    fn precheck(&self, cmd: &Command) -> Option<Response> {
        let caught_up = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.current_leader == Some(self.id)
                && m.last_applied
                    .is_some_and(|l| l.leader_id.term == m.current_term)
        };
        let applied = self.state.applied.read().ok()?;
        let refusal = if caught_up {
            applied.store.precheck(cmd)
        } else {
            cmd.check_shape()
        };
        refusal.err().map(|e| Response {
            revision: applied.store.revision(),
            outcome: herd_registry_core::Outcome::Rejected(e),
        })
    }

    async fn forward<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        f: &ForwardToLeader<NodeId, Node>,
        path: &str,
        body: &Req,
    ) -> Result<Resp, NodeError> {
        let (leader, addr) = match (&f.leader_id, &f.leader_node) {
            (Some(id), Some(node)) if *id != self.id => (*id, node.addr.clone()),
            _ => return Err(NodeError::NoLeader),
        };
        self.post(leader, &addr, path, body).await
    }

    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        leader: NodeId,
        addr: &str,
        path: &str,
        body: &Req,
    ) -> Result<Resp, NodeError> {
        let err = |reason: String| NodeError::Forward {
            leader,
            addr: addr.to_string(),
            reason,
        };
        let bytes = serde_json::to_vec(body).map_err(|e| err(e.to_string()))?;
        let mut b = http::Request::post(self.client.url(addr, path))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| err("timed out after 10s".into()))?
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(NodeError::Remote {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("bad answer: {e}")))
    }

    /// Read-index: returns once this node has applied everything the leader had committed
    /// when the read began, so a read served here after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let index = match self.raft.ensure_linearizable().await {
            Ok(log_id) => log_id.map_or(0, |l| l.index),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                let index: u64 = self.forward(&f, "/raft/read-index", &()).await?;
                index
            }
            Err(e) => return Err(NodeError::Raft(e.to_string())),
        };
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let applied = metrics.borrow().last_applied.map_or(0, |l| l.index);
            if applied >= index {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(NodeError::Raft(format!(
                        "not caught up to index {index} within 5s"
                    )))
                }
            }
        }
    }

    /// The leader's commit index after confirming leadership (for followers' read-index).
    pub async fn leader_read_index(&self) -> Result<u64, NodeError> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// A lease id unique across the cluster without coordination: node id in the high
    /// bits, a per-node sequence below, the clock to survive restarts.
    pub fn next_lease_id(&self) -> u64 {
        let seq = self.lease_seq.fetch_add(1, Ordering::Relaxed) & 0xFFFF;
        let ms = now_ms() & 0xFF_FFFF_FFFF; // 40 bits
                                            // Not `| 1` to avoid 0: that mapped sequence numbers 2k and 2k+1 to one id, so two
                                            // grants in the same millisecond collided. 0 ("no lease") needs node 0 at a clock
                                            // reading of 0 with sequence 0.
        (((self.id & 0xFF) << 56) | (ms << 16) | seq).max(1)
    }

    /// Confirms with a quorum, now, that this node is still the leader (one heartbeat
    /// round, no log entry). A leader that was paused or cut off still believes it leads
    /// and its lease clock is stale; only a confirmed leader may renew or expire leases.
    pub async fn confirm_leader(&self) -> Result<(), NodeError> {
        match tokio::time::timeout(CONFIRM_TIMEOUT, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                _,
            )))) => Err(NodeError::NoLeader),
            Ok(Err(e)) => Err(NodeError::Raft(e.to_string())),
            Err(_) => Err(NodeError::NoQuorum(CONFIRM_TIMEOUT)),
        }
    }

    /// Propose on this node only: a command that must not outlive this node's leadership
    /// (an expiry decided from this leader's clock) is dropped, never forwarded, when the
    /// node turns out not to lead.
    async fn propose_as_leader(&self, cmd: Command) -> Result<Response, NodeError> {
        match self.batcher.propose(cmd).await {
            Proposed::Applied(resp) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                Ok(resp)
            }
            Proposed::Forward(_) => Err(NodeError::NoLeader),
            Proposed::Failed(e) => Err(NodeError::Raft(e)),
        }
    }

    /// Renews lease `id` on the leader's clock once its leadership is confirmed; `None` when
    /// the lease is unknown or already expired.
    pub async fn keep_alive(&self, id: u64) -> Result<Option<u64>, NodeError> {
        if self.is_leader() {
            self.confirm_leader().await?;
            let known = self
                .state
                .applied
                .read()
                .map(|a| a.store.lease(id).map(|l| l.ttl_ms))
                .unwrap_or(None);
            let Some(ttl) = known else {
                return Ok(None);
            };
            let mut clock = self
                .leases
                .lock()
                .map_err(|_| NodeError::Raft("lease clock poisoned".into()))?;
            return Ok(match clock.keep_alive(id, now_ms()) {
                Some(_) => Some(ttl),
                // Known to the store but not to this leader's clock yet (leadership just
                // moved): start its deadline now.
                None if !clock.contains(id) => {
                    clock.grant(id, ttl, now_ms());
                    Some(ttl)
                }
                // Expired here; its revoke is on the way. Never bring it back.
                None => None,
            });
        }
        let (leader, addr) = self.leader().ok_or(NodeError::NoLeader)?;
        self.post(leader, &addr, &format!("/raft/keepalive/{id}"), &())
            .await
    }

    /// The applied store's revision, key count and lease count, as /status and /metrics
    /// show them.
    pub fn store_counts(&self) -> (u64, usize, usize) {
        self.state
            .applied
            .read()
            .map(|a| (a.store.revision(), a.store.len(), a.store.leases().len()))
            .unwrap_or_default()
    }

    /// This node's Raft role, as /status and /metrics name it.
    pub fn role(&self) -> &'static str {
        match self.raft.metrics().borrow().state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Shutdown => "shutdown",
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.addr))
    }

    pub fn members(&self) -> BTreeMap<NodeId, (String, bool)> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, (n.addr.clone(), voters.contains(id))))
            .collect()
    }
}

/// The leader's lease duty: expire leases whose owners stopped heartbeating, and give
/// every lease a full TTL each time this node starts a term as leader (so a leader change
/// never expires a lease early). An expiry is proposed only after a quorum confirms this
/// node still leads, and only on this node: a leader that was paused or cut off longer than
/// a TTL wakes with every deadline past, and must not revoke leases the new leader has
/// been renewing meanwhile.
pub fn spawn_lease_keeper(node: Arc<RegistryNode>) {
    tokio::spawn(async move {
        let mut led_term: Option<u64> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (leader, term) = {
                let m = node.raft.metrics();
                let m = m.borrow();
                (m.current_leader == Some(node.id), m.current_term)
            };
            if !leader {
                led_term = None;
                continue;
            }
            if led_term != Some(term) {
                reset_lease_clock(&node);
                led_term = Some(term);
                tracing::info!(node = node.id, term, "leading; lease deadlines reset");
            }
            let expired = node
                .leases
                .lock()
                .map(|c| c.expired(now_ms()))
                .unwrap_or_default();
            if expired.is_empty() {
                continue;
            }
            if let Err(e) = node.confirm_leader().await {
                tracing::warn!(
                    node = node.id,
                    error = %e,
                    leases = expired.len(),
                    "leases look expired but leadership is not confirmed; not revoking"
                );
                continue;
            }
            // Confirmed in the same term we reset in: the deadlines are this term's own.
            if node.raft.metrics().borrow().current_term != term {
                continue;
            }
            for id in expired {
                // An expired lease stays on the clock (keep-alives of it fail) until its
                // revoke is applied, so a lost proposal is proposed again on the next tick.
                match node.propose_as_leader(Command::LeaseRevoke { id }).await {
                    Ok(_) => {
                        if let Ok(mut c) = node.leases.lock() {
                            c.remove(id);
                        }
                        tracing::info!(lease = id, "lease expired and revoked")
                    }
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "could not revoke expired lease")
                    }
                }
            }
        }
    });
}

fn reset_lease_clock(node: &RegistryNode) {
    let leases = node
        .state
        .applied
        .read()
        .map(|a| a.store.leases())
        .unwrap_or_default();
    if let Ok(mut clock) = node.leases.lock() {
        let now = now_ms();
        *clock = LeaseClock::new();
        for l in leases {
            clock.grant(l.id, l.ttl_ms, now);
        }
    }
}
