//! Keys, ranges, transactions and watch lines.

use herd_registry_core::{b64, id64, EventKind, KeyValue, OpResult};
use serde::{Deserialize, Serialize};

/// One key as answers show it: the value in base64, the lease id as a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub key: String,
    #[serde(with = "b64::serde_bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    #[serde(with = "id64::option", default)]
    pub lease: Option<u64>,
}

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Kv {
        Kv {
            key: kv.key.clone(),
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// `GET /v1/kv/<prefix>?prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRange {
    pub revision: u64,
    pub kvs: Vec<Kv>,
    pub more: bool,
}

/// `PUT /v1/kv/<key>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutAnswer {
    pub revision: u64,
}

/// `DELETE /v1/kv/<key>`, `DELETE /v1/lease/<id>` and a catalog deregistration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAnswer {
    pub revision: u64,
    pub deleted: u64,
}

/// `POST /v1/txn`; the request is [`herd_registry_core::Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnAnswer {
    pub revision: u64,
    pub succeeded: bool,
    pub results: Vec<TxnResult>,
}

/// The result of one op of the branch that ran, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnResult {
    Put { prev_kv: Option<Kv> },
    Delete { deleted: u64 },
    Get { kvs: Vec<Kv>, more: bool },
}

impl From<&OpResult> for TxnResult {
    fn from(r: &OpResult) -> TxnResult {
        match r {
            OpResult::Put { prev_kv } => TxnResult::Put {
                prev_kv: prev_kv.as_ref().map(Kv::from),
            },
            OpResult::Delete { deleted, .. } => TxnResult::Delete { deleted: *deleted },
            OpResult::Get { kvs, more } => TxnResult::Get {
                kvs: kvs.iter().map(Kv::from).collect(),
                more: *more,
            },
        }
    }
}

/// One change of one key on a watch stream: `{"type","kv","revision"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub kv: Kv,
    pub revision: u64,
}

impl From<&herd_registry_core::Event> for Event {
    fn from(e: &herd_registry_core::Event) -> Event {
        Event {
            kind: e.kind,
            kv: Kv::from(&e.kv),
            revision: e.revision,
        }
    }
}

/// One line of `GET /v1/watch/<key>`: an event, a progress mark, or the error that ends
/// the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WatchLine {
    Error { error: String },
    Progress(Progress),
    Event(Event),
}

/// `{"type":"progress","revision":N}`: the stream is alive and has seen up to N.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(rename = "type")]
    pub kind: ProgressTag,
    pub revision: u64,
}

/// The one `type` a progress line has; an event's `put`/`delete` does not read as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressTag {
    Progress,
}

impl WatchLine {
    pub fn progress(revision: u64) -> WatchLine {
        WatchLine::Progress(Progress {
            kind: ProgressTag::Progress,
            revision,
        })
    }
}
