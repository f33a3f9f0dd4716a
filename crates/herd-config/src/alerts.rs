//! Alert rules (SPEC §5): the TOML an operator writes, checked whole — every problem named
//! with its field and the fix — before the cluster stores it. Pure; the controller
//! evaluates the rules, the registry only stores them.

use crate::duration::parse_duration;
use crate::validate::Problem;
use crate::ConfigError;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    /// Firing and resolved alerts are POSTed here as JSON (and always logged).
    pub webhook: Option<String>,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// A service's share of failed calls over `window` is above `above` (0.0–1.0).
    ErrorRatio,
    /// A service's 99th percentile latency over `window` is above `above` (a duration).
    P99,
    /// A deployment has fewer healthy instances (Run, health passing) than its
    /// manifest's `instances.min`.
    InstancesBelowMin,
    /// An instance is Failed.
    InstanceFailed,
    /// An agent that was part of the cluster is gone (its lease expired or it left).
    NodeLost,
    /// Services call each other round (a cycle in the call graph over `window`).
    DependencyCycle,
}

impl AlertKind {
    pub const ALL: [(&'static str, AlertKind); 6] = [
        ("error_ratio", AlertKind::ErrorRatio),
        ("p99", AlertKind::P99),
        ("instances_below_min", AlertKind::InstancesBelowMin),
        ("instance_failed", AlertKind::InstanceFailed),
        ("node_lost", AlertKind::NodeLost),
        ("dependency_cycle", AlertKind::DependencyCycle),
    ];
    pub fn as_str(self) -> &'static str {
        AlertKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("", |(n, _)| n)
    }
    fn takes_service(self) -> bool {
        !matches!(self, AlertKind::NodeLost | AlertKind::DependencyCycle)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub kind: AlertKind,
    /// Only this service (kinds about services); every service when None.
    pub service: Option<String>,
    /// error_ratio: a ratio; p99: seconds; unused by the other kinds.
    pub above: f64,
    /// error_ratio, p99, dependency_cycle: how far back the calls are looked at.
    pub window: Duration,
    /// error_ratio, p99: a window with fewer calls says nothing.
    pub min_calls: u64,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    webhook: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    kind: String,
    service: Option<String>,
    above: Option<toml::Value>,
    window: Option<String>,
    min_calls: Option<u64>,
    #[serde(rename = "for")]
    for_: Option<String>,
}

pub fn parse_alert_rules(text: &str, file: &str) -> Result<AlertRules, ConfigError> {
    let mut problems = Vec::new();
    let mut fail = |field: String, reason: String| problems.push(Problem { field, reason });
    let raw: RawRules = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            return Err(ConfigError {
                file: file.to_string(),
                problems: crate::structure::every_problem(text, &e)
                    .into_iter()
                    .map(|reason| Problem {
                        field: String::new(),
                        reason,
                    })
                    .collect(),
            })
        }
    };
    if let Some(w) = &raw.webhook {
        let ok = w
            .strip_prefix("http://")
            .is_some_and(|rest| rest.split('/').next().is_some_and(|a| a.contains(':')));
        if !ok {
            fail(
                "webhook".into(),
                format!(
                    "\"{w}\" must be an http://host:port/path URL (https is not supported yet)"
                ),
            );
        }
    }
    let mut rules = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let f = format!("rules[{i}]");
        if r.name.trim().is_empty() {
            fail(
                format!("{f}.name"),
                "empty; give the rule a name alerts are known by".into(),
            );
        } else if !names.insert(r.name.clone()) {
            fail(
                format!("{f}.name"),
                format!("\"{}\" names two rules; names must be unique", r.name),
            );
        } else if r.name.contains('/') {
            fail(format!("{f}.name"), "may not contain '/'".into());
        }
        let Some(kind) = AlertKind::ALL
            .iter()
            .find(|(n, _)| *n == r.kind)
            .map(|(_, k)| *k)
        else {
            let all: Vec<&str> = AlertKind::ALL.iter().map(|(n, _)| *n).collect();
            fail(
                format!("{f}.kind"),
                format!(
                    "\"{}\" is not an alert kind; use one of {}",
                    r.kind,
                    all.join(", ")
                ),
            );
            continue;
        };
        if r.service.is_some() && !kind.takes_service() {
            fail(
                format!("{f}.service"),
                format!(
                    "a {} rule is about the whole cluster; remove service",
                    kind.as_str()
                ),
            );
        }
        let dur = |field: &str,
                   v: &Option<String>,
                   default: Duration,
                   fail: &mut dyn FnMut(String, String)| match v {
            None => default,
            Some(t) => parse_duration(t).unwrap_or_else(|e| {
                fail(format!("{f}.{field}"), e);
                default
            }),
        };
        let window = dur("window", &r.window, Duration::from_secs(60), &mut fail);
        let for_ = dur("for", &r.for_, Duration::ZERO, &mut fail);
        if window.is_zero() || window > Duration::from_secs(3600) {
            fail(
                format!("{f}.window"),
                "must be from 1s to 1h (call aggregates are kept for an hour)".into(),
            );
        }
        let above = match (kind, &r.above) {
            (AlertKind::ErrorRatio, Some(v)) => {
                match v.as_float().or(v.as_integer().map(|i| i as f64)) {
                    Some(x) if (0.0..1.0).contains(&x) => x,
                    _ => {
                        fail(format!("{f}.above"), format!("{v} is not an error ratio; write a number from 0.0 to below 1.0, e.g. 0.05 for 5%"));
                        0.0
                    }
                }
            }
            (AlertKind::P99, Some(v)) => match v.as_str().map(parse_duration) {
                Some(Ok(d)) if !d.is_zero() => d.as_secs_f64(),
                Some(Err(e)) => {
                    fail(format!("{f}.above"), e);
                    0.0
                }
                _ => {
                    fail(
                        format!("{f}.above"),
                        format!("{v} is not a latency; write a duration, e.g. \"250ms\""),
                    );
                    0.0
                }
            },
            (AlertKind::ErrorRatio | AlertKind::P99, None) => {
                fail(
                    format!("{f}.above"),
                    format!(
                        "a {} rule needs its threshold: above = {}",
                        kind.as_str(),
                        if kind == AlertKind::P99 {
                            "\"250ms\""
                        } else {
                            "0.05"
                        }
                    ),
                );
                0.0
            }
            (_, Some(_)) => {
                fail(
                    format!("{f}.above"),
                    format!("a {} rule has no threshold; remove above", kind.as_str()),
                );
                0.0
            }
            (_, None) => 0.0,
        };
        rules.push(AlertRule {
            name: r.name,
            kind,
            service: r.service,
            above,
            window,
            min_calls: r.min_calls.unwrap_or(1).max(1),
            for_,
        });
    }
    if problems.is_empty() {
        Ok(AlertRules {
            webhook: raw.webhook,
            rules,
        })
    } else {
        Err(ConfigError {
            file: file.to_string(),
            problems,
        })
    }
}
