//! Per-minute aggregates of traced calls — per service, per endpoint (service + span name)
//! and per caller → callee edge — kept for an hour after the spans themselves are gone.

use herd_api::wire::{CallStats, SeriesDump, TelemetryDump};
use std::collections::{HashMap, VecDeque};

/// Minutes kept: a full hour of windows plus the minute under way.
pub const RETENTION_MINUTES: u64 = 61;
/// Distinct keys of one kind in one minute; beyond it calls count under [`OTHER`], so a
/// sender that invents a name per request cannot grow the store without bound.
pub const MAX_KEYS_PER_MINUTE: usize = 10_000;
pub const OTHER: &str = "(other)";

#[derive(Default)]
struct Minute {
    minute: u64,
    services: HashMap<String, CallStats>,
    endpoints: HashMap<(String, String), CallStats>,
    edges: HashMap<(String, String), CallStats>,
}

#[derive(Default)]
pub struct Minutes {
    kept: VecDeque<Minute>,
}

pub enum Key<'a> {
    Service(&'a str),
    Endpoint(&'a str, &'a str),
    Edge(&'a str, &'a str),
}

fn slot<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, CallStats>,
    key: K,
    other: K,
) -> &mut CallStats {
    if map.len() >= MAX_KEYS_PER_MINUTE && !map.contains_key(&key) {
        return map.entry(other).or_default();
    }
    map.entry(key).or_default()
}

impl Minutes {
    /// Counts one call ending at `end_ms` (clamped into the kept hour: a sender with a
    /// wrong clock still counts, at the edge) as of `now_ms`.
    pub fn record(&mut self, now_ms: u64, end_ms: u64, key: Key<'_>, nanos: u64, error: bool) {
        let newest = now_ms / 60_000;
        let oldest = newest.saturating_sub(RETENTION_MINUTES - 1);
        let minute = (end_ms / 60_000).clamp(oldest, newest);
        self.expire(newest);
        let pos = match self.kept.iter().position(|m| m.minute >= minute) {
            Some(i) if self.kept[i].minute == minute => i,
            Some(i) => {
                self.kept.insert(
                    i,
                    Minute {
                        minute,
                        ..Minute::default()
                    },
                );
                i
            }
            None => {
                self.kept.push_back(Minute {
                    minute,
                    ..Minute::default()
                });
                self.kept.len() - 1
            }
        };
        let m = &mut self.kept[pos];
        let s = match key {
            Key::Service(s) => slot(&mut m.services, s.to_string(), OTHER.to_string()),
            Key::Endpoint(s, n) => slot(
                &mut m.endpoints,
                (s.to_string(), n.to_string()),
                (OTHER.to_string(), OTHER.to_string()),
            ),
            Key::Edge(a, b) => slot(
                &mut m.edges,
                (a.to_string(), b.to_string()),
                (OTHER.to_string(), OTHER.to_string()),
            ),
        };
        s.record(nanos, error);
    }

    fn expire(&mut self, newest: u64) {
        let oldest = newest.saturating_sub(RETENTION_MINUTES - 1);
        while self.kept.front().is_some_and(|m| m.minute < oldest) {
            self.kept.pop_front();
        }
    }

    /// Calls per service, minute by minute, over the last `window_s` seconds.
    pub fn series(&self, now_ms: u64, window_s: u64) -> SeriesDump {
        let from_minute = now_ms.saturating_sub(window_s * 1000) / 60_000;
        SeriesDump {
            minutes: self
                .kept
                .iter()
                .filter(|m| m.minute >= from_minute)
                .map(|m| {
                    let mut services: Vec<(String, CallStats)> = m
                        .services
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    services.sort_by(|a, b| a.0.cmp(&b.0));
                    (m.minute * 60_000, services)
                })
                .collect(),
        }
    }

    /// Everything in the minutes that overlap the last `window_s` seconds.
    pub fn dump(&self, now_ms: u64, window_s: u64) -> TelemetryDump {
        let from_minute = now_ms.saturating_sub(window_s * 1000) / 60_000;
        let mut services: HashMap<&str, CallStats> = HashMap::new();
        let mut endpoints: HashMap<(&str, &str), CallStats> = HashMap::new();
        let mut edges: HashMap<(&str, &str), CallStats> = HashMap::new();
        for m in self.kept.iter().filter(|m| m.minute >= from_minute) {
            for (k, v) in &m.services {
                services.entry(k.as_str()).or_default().merge(v);
            }
            for ((s, n), v) in &m.endpoints {
                endpoints.entry((s, n)).or_default().merge(v);
            }
            for ((a, b), v) in &m.edges {
                edges.entry((a, b)).or_default().merge(v);
            }
        }
        let mut dump = TelemetryDump {
            window_s,
            services: services
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            endpoints: endpoints
                .into_iter()
                .map(|((s, n), v)| (s.to_string(), n.to_string(), v))
                .collect(),
            edges: edges
                .into_iter()
                .map(|((a, b), v)| (a.to_string(), b.to_string(), v))
                .collect(),
            covered_ms: now_ms.saturating_sub(from_minute * 60_000),
            ..TelemetryDump::default()
        };
        dump.services.sort_by(|a, b| a.0.cmp(&b.0));
        dump.endpoints
            .sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        dump.edges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        dump
    }
}
