//! `max_conns_per_server` and its bounded wait queue, per backend group.

use herd_telemetry::Counter;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::Notify;

/// `max_conns_per_server` and its queue, per backend group (all workers together).
pub struct ConnLimit {
    pub max: u32,
    pub queue: Option<herd_config::traffic::ConnQueue>,
    pub(crate) waiting: AtomicU32,
    pub(crate) notify: Notify,
    pub timeouts: Counter,
    pub full: Counter,
}

impl ConnLimit {
    pub fn new(t: &herd_config::traffic::BackendTraffic) -> Option<ConnLimit> {
        Some(ConnLimit {
            max: t.max_conns_per_server?,
            queue: t.queue.clone(),
            waiting: AtomicU32::new(0),
            notify: Notify::new(),
            timeouts: Counter::new(),
            full: Counter::new(),
        })
    }

    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A slot was given back: the longest waiter (tokio's Notify is FIFO) tries again.
    pub fn released(&self) {
        if self.queue.is_some() {
            self.notify.notify_one();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotFailure {
    /// No usable server at all (not a matter of load).
    NoServer,
    /// Every eligible server is full and the queue is full (or there is none).
    QueueFull,
    /// Waited the queue's timeout without a slot.
    QueueTimeout,
}
