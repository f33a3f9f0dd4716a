//! Admission on the request path: a server picked under the per-server connection limits
//! (queueing for a slot), and a connection counted against its client IP at accept. The
//! mechanisms are `traffic`'s; this is where they meet the snapshot and the worker.

use crate::clock;
use crate::http::context::Worker;
use crate::http::respond::InFlight;
use crate::state::shared::{PerIpSlot, Shared};
use crate::state::snapshot::Group;
use crate::traffic::ip_key;
use crate::traffic::*;
use herd_balance::{Admission, PickContext};
use herd_balance::{KeyedAcquire, KeyedCounter};
use herd_config::Listener;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a queued request looks again even without a wake-up (a reload starts a new
/// queue; slots freed by requests of the old snapshot wake the old one).
const QUEUE_RECHECK: Duration = Duration::from_millis(100);
/// Servers skipped as full in one pick: beyond this the group counts as full.
const MAX_FULL_SKIPS: usize = 64;

enum TryPick {
    Got(usize, InFlight),
    NoServer,
    AllFull,
}

fn try_pick(
    w: &Worker,
    group: &Group,
    limit: &Arc<ConnLimit>,
    pinned: Option<usize>,
    key: Option<u64>,
    tried: &[usize],
) -> TryPick {
    let mut exclude = [usize::MAX; MAX_ATTEMPTS + MAX_FULL_SKIPS];
    exclude[..tried.len()].copy_from_slice(tried);
    let mut n = tried.len();
    loop {
        let Some(idx) = pick(w, group, pinned, key, &exclude[..n]) else {
            return if n > tried.len() {
                TryPick::AllFull
            } else {
                TryPick::NoServer
            };
        };
        let server = &group.servers.0[idx];
        if server.load.try_inc_in_flight_below(limit.max) {
            return TryPick::Got(idx, InFlight::adopt(server, limit.clone()));
        }
        if n == exclude.len() {
            return TryPick::AllFull;
        }
        exclude[n] = idx;
        n += 1;
    }
}

/// Pick a server with a free slot, waiting in the group's queue when all are full.
pub async fn pick_with_slot(
    w: &Worker,
    group: &Group,
    limit: &Arc<ConnLimit>,
    pinned: Option<usize>,
    key: Option<u64>,
    tried: &[usize],
) -> Result<(usize, InFlight), SlotFailure> {
    // Nobody waiting: take a slot now if there is one (waiting requests go first).
    if limit.waiting() == 0 {
        match try_pick(w, group, limit, pinned, key, tried) {
            TryPick::Got(i, f) => return Ok((i, f)),
            TryPick::NoServer => return Err(SlotFailure::NoServer),
            TryPick::AllFull => {}
        }
    }
    let Some(queue) = &limit.queue else {
        limit.full.inc();
        return Err(SlotFailure::QueueFull);
    };
    let entered = limit
        .waiting
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < queue.max).then_some(n + 1)
        })
        .is_ok();
    if !entered {
        limit.full.inc();
        return Err(SlotFailure::QueueFull);
    }
    struct Leave<'a>(&'a ConnLimit);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _leave = Leave(limit);
    let deadline = crate::clock::now() + queue.timeout;
    loop {
        let notified = limit.notify.notified();
        tokio::pin!(notified);
        // Registered before looking, so a slot freed in between still wakes us.
        notified.as_mut().enable();
        match try_pick(w, group, limit, pinned, key, tried) {
            TryPick::Got(i, f) => return Ok((i, f)),
            TryPick::NoServer => return Err(SlotFailure::NoServer),
            TryPick::AllFull => {}
        }
        let now = crate::clock::now();
        if now >= deadline {
            limit.timeouts.inc();
            return Err(SlotFailure::QueueTimeout);
        }
        let nap = (deadline - now).min(QUEUE_RECHECK);
        let _ = tokio::time::timeout(nap, notified).await;
    }
}

/// At accept: count the connection against its IP. Err = close it. Listeners that take the
/// client from a PROXY header are refused this setting by validation.
pub fn admit_connection(
    shared: &Arc<Shared>,
    li: usize,
    cfg: &Listener,
    peer: IpAddr,
) -> Result<Option<PerIpSlot>, ()> {
    let Some(max) = cfg.traffic.max_conns_per_ip else {
        return Ok(None);
    };
    let Some(stats) = shared.listener_stats.get(li) else {
        return Ok(None);
    };
    let table = stats
        .traffic
        .per_ip
        .get_or_init(|| KeyedCounter::new(PER_IP_TABLE_SLOTS));
    match table.acquire(ip_key(peer), max) {
        KeyedAcquire::Counted(slot) => Ok(Some(PerIpSlot {
            shared: shared.clone(),
            li,
            slot,
        })),
        KeyedAcquire::OverLimit => {
            stats.traffic.per_ip_rejected.inc();
            tracing::debug!(listener = %cfg.name, client = %peer, max, "connection refused: max_conns_per_ip reached");
            Err(())
        }
        KeyedAcquire::TableFull => {
            stats.traffic.per_ip_untracked.inc();
            Ok(None)
        }
    }
}

/// tcp listeners: is this client allowed? Counted when not.
pub fn tcp_permits(shared: &Shared, li: usize, client: IpAddr) -> bool {
    let snap = shared.snapshot.load();
    let ok = snap
        .config
        .listeners
        .get(li)
        .is_none_or(|l| listener_permits(l, client));
    if !ok {
        if let Some(s) = shared.listener_stats.get(li) {
            s.traffic.denied.inc();
        }
        tracing::debug!(client = %client, "tcp connection refused by the listener's allow/deny lists");
    }
    ok
}

/// Retries are bounded by config (0-10), so attempts fit in a fixed array: no allocation.
pub(crate) const MAX_ATTEMPTS: usize = 11;

pub(crate) fn pick(
    w: &Worker,
    group: &Group,
    pinned: Option<usize>,
    key: Option<u64>,
    tried: &[usize],
) -> Option<usize> {
    if let Some(p) = pinned {
        if !tried.contains(&p) {
            return Some(p);
        }
    }
    let balancer = group.balancer.load();
    let mut rng = w.rng.borrow_mut();
    let mut ctx = PickContext {
        key,
        rng: &mut rng,
        now_nanos: clock::now_nanos(),
        exclude: tried,
    };
    balancer.pick(&group.servers, &mut ctx)
}

/// The breaker's verdict for one request, to be given its outcome. Dropped without one
/// (client gone, request refused for its own fault) it records nothing.
pub struct BreakerTicket {
    pub(crate) group: Arc<Group>,
    pub(crate) admission: Admission,
}

impl BreakerTicket {
    /// None: no breaker. Err: open, fail fast.
    pub fn admit(group: &Arc<Group>) -> Result<Option<BreakerTicket>, ()> {
        let Some(b) = &group.breaker else {
            return Ok(None);
        };
        match b.admit(&group.config.name) {
            Admission::Reject => Err(()),
            admission => Ok(Some(BreakerTicket {
                group: group.clone(),
                admission,
            })),
        }
    }

    pub fn finish(self, success: bool) {
        if let Some(b) = &self.group.breaker {
            b.record(&self.group.config.name, self.admission, success);
        }
    }
}
