//! `/v1/alerts`: the rules operators store and the alerts the controller keeps.

use serde::{Deserialize, Serialize};

/// `herd/alerts/rules` → the rules' TOML text, as applied (validated first).
pub const RULES_KEY: &str = "herd/alerts/rules";
/// `herd/alerts/active/<rule>/<subject>` → [`AlertRecord`]: alerts firing now, written by
/// the controller (fenced), so any server lists them and a new controller goes on from them
/// without notifying twice.
pub const ACTIVE: &str = "herd/alerts/active/";

pub fn active_key(rule: &str, subject: &str) -> String {
    // A subject may hold '/' (service/instance): keep the key one level deep.
    format!("{ACTIVE}{rule}/{}", subject.replace('/', "%2F"))
}

/// One alert: what the webhook receives, what `GET /v1/alerts` lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// `firing` or `resolved` (a webhook sees both; the list only firing ones).
    pub status: String,
    pub rule: String,
    pub kind: String,
    /// What it is about: a service, `service/instance`, a node, or a cycle's services.
    pub subject: String,
    /// The value that crossed the threshold (a ratio, seconds, a count; 0 where none).
    pub value: f64,
    pub threshold: f64,
    /// One line for a human.
    pub summary: String,
    /// When the condition started to hold (ms since the epoch).
    pub since_ms: u64,
    /// When it fired.
    pub fired_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<u64>,
}

/// `GET /v1/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    pub alerts: Vec<AlertRecord>,
    /// Rules stored (0: none applied).
    pub rules: u64,
}

/// `PUT /v1/alerts/rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesAnswer {
    pub rules: u64,
    pub revision: u64,
}

impl AlertRecord {
    /// `HH:MM:SS` UTC of a time in ms since the epoch, for tables.
    pub fn clock(ms: u64) -> String {
        let s = ms / 1000 % 86_400;
        format!("{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
    }
}
