//! The watch history: the events of the most recent revisions, so that a watcher that lost
//! its stream resumes from the revision after the last event it saw, with no gap and no
//! duplicate. What is dropped is announced by `compacted_revision`, never silently skipped.

use serde::{Deserialize, Serialize};

use crate::command::Event;

/// How many revisions of events a [`crate::Store`] keeps unless told otherwise.
pub const DEFAULT_HISTORY_REVISIONS: u64 = 10_000;

/// The history no longer holds the requested revision: the watcher must re-read the current
/// state (a range at the current revision) and watch from the revision after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("history compacted up to revision {compacted_revision}; resume from {} or later", .compacted_revision + 1)]
pub struct Compacted {
    pub compacted_revision: u64,
}

/// Invariant: `events` holds every event of revisions `compacted_revision + 1 ..= revision`
/// of the owning store, in order, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct History {
    /// Revisions kept; 0 keeps none.
    limit: u64,
    compacted_revision: u64,
    /// Persistent, like the store's maps: a snapshot's copy shares it.
    events: imbl::Vector<Event>,
}

impl History {
    pub(crate) fn new(limit: u64) -> Self {
        History {
            limit,
            compacted_revision: 0,
            events: imbl::Vector::new(),
        }
    }

    /// Rebuilds from a snapshot; the caller has checked the invariant.
    pub(crate) fn from_parts(limit: u64, compacted_revision: u64, events: Vec<Event>) -> Self {
        History {
            limit,
            compacted_revision,
            events: events.into_iter().collect(),
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn compacted_revision(&self) -> u64 {
        self.compacted_revision
    }

    pub(crate) fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Records the events of the new store revision `revision` and drops whole revisions
    /// beyond the limit, oldest first.
    pub(crate) fn record(&mut self, events: &[Event], revision: u64) {
        self.events.extend(events.iter().cloned());
        if revision.saturating_sub(self.compacted_revision) > self.limit {
            self.compact_to(revision - self.limit);
        }
    }

    /// Drops every event at or below `revision`.
    pub(crate) fn compact_to(&mut self, revision: u64) {
        while self.events.front().is_some_and(|e| e.revision <= revision) {
            self.events.pop_front();
        }
        self.compacted_revision = self.compacted_revision.max(revision);
    }

    /// Events at or after `from_revision` whose key is `key` (or starts with it when
    /// `prefix`). `from_revision` 0 means 1: the beginning of time.
    pub(crate) fn since(
        &self,
        from_revision: u64,
        key: &str,
        prefix: bool,
    ) -> Result<Vec<Event>, Compacted> {
        let from = from_revision.max(1);
        if from <= self.compacted_revision {
            return Err(Compacted {
                compacted_revision: self.compacted_revision,
            });
        }
        // The first event at `from` or later: events are in revision order.
        let (mut lo, mut hi) = (0, self.events.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.events[mid].revision < from {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let matches = |k: &str| if prefix { k.starts_with(key) } else { k == key };
        Ok(self
            .events
            .skip(lo)
            .iter()
            .filter(|e| matches(&e.kv.key))
            .cloned()
            .collect())
    }
}
