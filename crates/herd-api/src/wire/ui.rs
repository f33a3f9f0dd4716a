//! `GET /ui/snapshot` and each `snapshot` event of `GET /ui/events`: what the page shows,
//! made of the API's own answers (each None when its call failed; `errors` says why).

use super::{AlertList, ClusterAnswer, DeploymentList, GraphAnswer, NodeList, NodeStatus};
use super::{SeriesAnswer, TopAnswer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UiSnapshot {
    pub at_ms: u64,
    pub server: Option<NodeStatus>,
    pub cluster: Option<ClusterAnswer>,
    pub deployments: Option<DeploymentList>,
    pub nodes: Option<NodeList>,
    pub alerts: Option<AlertList>,
    pub top_calls: Option<TopAnswer>,
    pub top_p99: Option<TopAnswer>,
    pub graph: Option<GraphAnswer>,
    pub series: Option<SeriesAnswer>,
    #[serde(default)]
    pub errors: Vec<String>,
}
