//! An alert's life: a condition that starts to hold is pending; held for the rule's `for`,
//! it fires; the first pass it no longer holds (or its rule is gone), it resolves. Pure.

use super::evaluate::Observation;
use herd_api::wire::AlertRecord;
use herd_config::AlertRule;
use std::collections::BTreeMap;

type Key = (String, String);

#[derive(Default)]
pub struct Tracker {
    pending: BTreeMap<Key, u64>,
    firing: BTreeMap<Key, AlertRecord>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Fire(AlertRecord),
    Resolve(AlertRecord),
}

impl Tracker {
    /// Take over alerts another controller left firing: they stay firing, unnotified.
    pub fn adopt(&mut self, firing: Vec<AlertRecord>) {
        for a in firing {
            self.firing.insert((a.rule.clone(), a.subject.clone()), a);
        }
    }

    pub fn firing(&self) -> impl Iterator<Item = &AlertRecord> {
        self.firing.values()
    }

    pub fn step(
        &mut self,
        now_ms: u64,
        rules: &[AlertRule],
        seen: Vec<Observation>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut holding: BTreeMap<Key, Observation> = BTreeMap::new();
        for o in seen {
            holding.insert((o.rule.clone(), o.subject.clone()), o);
        }
        self.pending.retain(|k, _| holding.contains_key(k));
        let gone: Vec<Key> = self
            .firing
            .keys()
            .filter(|k| !holding.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(mut a) = self.firing.remove(&k) {
                a.status = "resolved".into();
                a.resolved_ms = Some(now_ms);
                changes.push(Change::Resolve(a));
            }
        }
        for (k, o) in holding {
            if let Some(a) = self.firing.get_mut(&k) {
                // Still firing: keep the latest value for the list and the page.
                a.value = o.value;
                a.summary = o.summary;
                continue;
            }
            let since = *self.pending.entry(k.clone()).or_insert(now_ms);
            let hold = rules
                .iter()
                .find(|r| r.name == o.rule)
                .map_or(0, |r| r.for_.as_millis() as u64);
            if now_ms.saturating_sub(since) >= hold {
                self.pending.remove(&k);
                let a = AlertRecord {
                    status: "firing".into(),
                    rule: o.rule,
                    kind: o.kind.as_str().into(),
                    subject: o.subject,
                    value: o.value,
                    threshold: o.threshold,
                    summary: o.summary,
                    since_ms: since,
                    fired_ms: now_ms,
                    resolved_ms: None,
                };
                self.firing.insert(k, a.clone());
                changes.push(Change::Fire(a));
            }
        }
        changes
    }
}
