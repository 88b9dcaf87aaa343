//! Answer of `GET /workloads/{id}/placement`: the placement of one workload explained,
//! node by node (the filter that rejected it or its score), with the winner or, when
//! nothing fits, what would make it fit. Computed by the scheduler's placement code
//! itself (`persys why`).

use crate::status::WorkloadStatus;
use crate::workload::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The placement of one workload, explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlacementExplanation {
    /// The workload.
    pub workload_id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its current status.
    pub status: WorkloadStatus,
    /// The node it is placed on now, if any.
    #[serde(default)]
    pub node_id: Option<String>,
    /// The strategy the scores are of (`spread` or `binpack`).
    pub strategy: String,
    /// What it requests (millicores, MB; 0 = unspecified).
    pub request: Resources,
    /// The node labels it requires.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// One verdict per node, by node id.
    pub nodes: Vec<NodeVerdict>,
    /// The node placement would choose now. For a placed workload its own reservation
    /// is left out, so this is normally the node it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// When no node fits: what would make it fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// How placement judged one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdict {
    /// The node.
    pub node_id: String,
    /// Rejected, eligible, or the winner.
    pub verdict: Verdict,
    /// The first filter the node failed (only when rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<PlacementFilter>,
    /// Why that filter rejected it (only when rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its score under the strategy, higher is better, about [0, 1] (only when it
    /// passed every filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Millicores requested by the workloads placed on it.
    pub allocated_cpu: u64,
    /// MB requested by the workloads placed on it.
    pub allocated_memory: u64,
    /// Millicores left (capacity minus allocation, never negative).
    pub available_cpu: u64,
    /// MB left.
    pub available_memory: u64,
    /// Workloads placed on it.
    pub workloads: u32,
}

/// A node's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A filter refused it.
    Rejected,
    /// It passed every filter but another node scored better.
    Eligible,
    /// The node placement chooses.
    Winner,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Eligible => "eligible",
            Self::Winner => "winner",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The placement filters, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum PlacementFilter {
    /// The node must be `Active`.
    Status,
    /// The node must carry every label of the workload's node selector.
    NodeSelector,
    /// The request must fit in the CPU and memory the node has left.
    Resources,
}

impl PlacementFilter {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::NodeSelector => "nodeSelector",
            Self::Resources => "resources",
        }
    }
}

impl fmt::Display for PlacementFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_is_camel_case_and_omits_what_does_not_apply() {
        let e = PlacementExplanation {
            workload_id: "w1".into(),
            name: "web".into(),
            status: WorkloadStatus::Pending,
            node_id: None,
            strategy: "spread".into(),
            request: Resources {
                cpu: 500,
                memory: 0,
            },
            node_selector: BTreeMap::new(),
            nodes: vec![NodeVerdict {
                node_id: "n1".into(),
                verdict: Verdict::Rejected,
                filter: Some(PlacementFilter::NodeSelector),
                reason: Some("lacks label zone=eu".into()),
                score: None,
                allocated_cpu: 0,
                allocated_memory: 0,
                available_cpu: 1000,
                available_memory: 512,
                workloads: 0,
            }],
            winner: None,
            hint: Some("no node has label zone=eu".into()),
        };
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["workloadId"], "w1");
        assert_eq!(v["nodes"][0]["verdict"], "rejected");
        assert_eq!(v["nodes"][0]["filter"], "nodeSelector");
        assert_eq!(v["nodes"][0]["availableCpu"], 1000);
        assert!(v["nodes"][0].get("score").is_none());
        assert!(v.get("winner").is_none());
        assert_eq!(v["hint"], "no node has label zone=eu");
        let back: PlacementExplanation = serde_json::from_value(v).expect("parses back");
        assert_eq!(back, e);
    }
}
