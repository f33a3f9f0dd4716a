//! The `/v1/` wire: one serde type per request body and per answer, shared by the registry
//! (which reads requests and writes answers with them) and by every client (the CLI, the
//! gateway, the agent). A field added here is added to both sides at once.
//!
//! 64-bit ids (leases, snowflake ids) are JSON strings in answers and are read from a
//! string or a number in requests; see [`herd_registry_core::id64`].

pub mod alerts;
mod catalog;
mod cluster;
mod coord;
mod deploy;
mod kv;
mod lease;
mod telemetry;
mod ui;

pub use alerts::{AlertList, AlertRecord, RulesAnswer};
pub use catalog::{InstanceList, RegisterAnswer, RegisterRequest, ServiceList};
pub use cluster::{
    ClusterAnswer, IdsAnswer, JoinAnswer, JoinRequest, Member, NodeStatus, RemoveAnswer,
};
pub use coord::{
    CampaignRequest, Leader, LeaderAnswer, LeaderLine, LockAnswer, LockReleaseAnswer, LockRequest,
    LockStatus, ProclaimAnswer, ProclaimRequest, ResignAnswer,
};
pub use deploy::{
    keys, Assignment, ChangeAnswer, DeploymentList, DeploymentRecord, DeploymentStatus,
    InstanceReport, NodeList, NodeReport, RevisionRecord, RollbackAnswer, RollbackRequest,
    RollbackStep, ScaleRequest, ServiceVersion,
};
pub use kv::{DeleteAnswer, Event, Kv, KvRange, PutAnswer, TxnAnswer, TxnResult, WatchLine};
pub use lease::{KeepAliveAnswer, LeaseAnswer, LeaseGrantRequest, LeaseInfo, RevokeAnswer};
pub use telemetry::{
    CallStats, Coverage, GraphAnswer, GraphEdge, GraphNode, LatencyAnswer, LatencyBucket,
    LatencyDigest, SeriesAnswer, SeriesDump, ServiceSeries, TelemetryDump, TopAnswer, TopRow,
    TraceAnswer, TraceSpan, TraceSummary, TracesAnswer,
};
pub use ui::UiSnapshot;

pub use herd_registry_core::catalog::Instance;
pub use herd_registry_core::{EventKind, Txn};

use serde::{Deserialize, Serialize};

/// Every error answer: `{"error": "..."}`; a failed compare-and-swap also names the key's
/// current `mod_revision`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            mod_revision: None,
        }
    }
}

/// Seconds on the wire, milliseconds inside.
pub fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_registry_core::KeyValue;

    /// The exact bytes of the answers whose shape carries an id, so a change of the wire is
    /// a change of this test.
    #[test]
    fn answers_write_64_bit_ids_as_strings_and_the_rest_as_numbers() {
        let big = (1u64 << 56) | 12345;
        let kv = KeyValue {
            key: "a".into(),
            value: b"hi".to_vec(),
            create_revision: 3,
            mod_revision: 4,
            version: 2,
            lease: Some(big),
        };
        assert_eq!(
            serde_json::to_string(&Kv::from(&kv)).unwrap(),
            r#"{"key":"a","value":"aGk=","create_revision":3,"mod_revision":4,"version":2,"lease":"72057594037940281"}"#
        );
        let grant = LeaseAnswer {
            id: big,
            ttl_s: seconds(1500),
            revision: 0,
        };
        assert_eq!(
            serde_json::to_string(&grant).unwrap(),
            r#"{"id":"72057594037940281","ttl_s":1.5,"revision":0}"#
        );
        let ids = IdsAnswer {
            ids: vec![big, big + 1],
            node: 1,
        };
        assert_eq!(
            serde_json::to_string(&ids).unwrap(),
            r#"{"ids":["72057594037940281","72057594037940282"],"node":1}"#
        );
        assert_eq!(
            serde_json::to_string(&WatchLine::progress(9)).unwrap(),
            r#"{"type":"progress","revision":9}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("no")).unwrap(),
            r#"{"error":"no"}"#
        );
    }

    #[test]
    fn requests_take_a_lease_as_string_or_number_and_refuse_unknown_fields() {
        let a: RegisterRequest =
            serde_json::from_str(r#"{"address":"10.0.0.1","port":80,"lease":"72057594037940281"}"#)
                .unwrap();
        let b: RegisterRequest =
            serde_json::from_str(r#"{"address":"10.0.0.1","port":80,"lease":72057594037940281}"#)
                .unwrap();
        assert_eq!(a.lease, Some(72057594037940281));
        assert_eq!(a, b);
        let e = serde_json::from_str::<RegisterRequest>(r#"{"address":"x","port":1,"ttl":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `ttl`"), "{e}");
        let t: Txn = serde_json::from_str(
            r#"{"compares":[],"success":[{"put":{"key":"k","value":"","lease":"72057594037940281"}}],"failure":[]}"#,
        )
        .unwrap();
        assert_eq!(
            t.success[0],
            herd_registry_core::Op::Put {
                key: "k".into(),
                value: vec![],
                lease: Some(72057594037940281)
            }
        );
        // What the CLI sends is what the registry reads back.
        let c = CampaignRequest {
            value: "v".into(),
            lease: Some(1 << 60),
            ttl_s: None,
            timeout_s: Some(2.0),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            r#"{"value":"v","lease":"1152921504606846976","timeout_s":2.0}"#
        );
        assert_eq!(serde_json::from_str::<CampaignRequest>(&text).unwrap(), c);
    }
}
