//! Feasibility filters: status, node selector, then resource fit. The first
//! failing filter is the node's rejection reason.

use super::fit::{self, Shortfall};
use super::Candidate;
use persys_proto::{Node, NodeStatus, WorkloadSpec};

/// Why a node cannot take a workload. Borrows from the spec: building it never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection<'a> {
    /// The node does not accept placements.
    NotActive(NodeStatus),
    /// The node lacks the selector label `key=value` (or has another value).
    Selector { key: &'a str, value: &'a str },
    /// Not enough CPU or memory left.
    Insufficient(Shortfall),
}

/// Checks every filter in order; `Ok` means the node may take the workload.
pub(crate) fn feasible<'a>(
    spec: &'a WorkloadSpec,
    candidate: &Candidate<'_>,
) -> Result<(), Rejection<'a>> {
    status(candidate.node)?;
    selector(spec, candidate.node)?;
    fit::fits(&spec.resources, fit::free(candidate)).map_err(Rejection::Insufficient)
}

/// The status filter: only `Active` nodes take placements.
pub(crate) fn status(node: &Node) -> Result<(), Rejection<'static>> {
    if node.status == NodeStatus::Active {
        Ok(())
    } else {
        Err(Rejection::NotActive(node.status))
    }
}

/// The node selector filter: the first selector label the node lacks (or has with
/// another value).
pub(crate) fn selector<'a>(spec: &'a WorkloadSpec, node: &Node) -> Result<(), Rejection<'a>> {
    for (key, value) in &spec.node_selector {
        if node.labels.get(key) != Some(value) {
            return Err(Rejection::Selector { key, value });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::{node, spec};
    use crate::placement::Allocation;

    #[test]
    fn inactive_draining_and_cordoned_nodes_are_rejected() {
        let s = spec(0, 0, &[]);
        for status in [
            NodeStatus::Inactive,
            NodeStatus::Draining,
            NodeStatus::Cordoned,
        ] {
            let mut n = node("n1", 1.0, 1024, &[]);
            n.status = status;
            let c = Candidate {
                node: &n,
                allocated: Allocation::default(),
            };
            assert_eq!(feasible(&s, &c), Err(Rejection::NotActive(status)));
        }
    }

    #[test]
    fn every_selector_label_must_match() {
        let n = node("n1", 1.0, 1024, &[("region", "eu"), ("disk", "ssd")]);
        let c = Candidate {
            node: &n,
            allocated: Allocation::default(),
        };
        assert_eq!(feasible(&spec(0, 0, &[("region", "eu")]), &c), Ok(()));
        assert_eq!(
            feasible(&spec(0, 0, &[("region", "eu"), ("disk", "ssd")]), &c),
            Ok(())
        );
        let wrong_value = spec(0, 0, &[("region", "us")]);
        assert_eq!(
            feasible(&wrong_value, &c),
            Err(Rejection::Selector {
                key: "region",
                value: "us"
            })
        );
        let missing = spec(0, 0, &[("gpu", "yes")]);
        assert_eq!(
            feasible(&missing, &c),
            Err(Rejection::Selector {
                key: "gpu",
                value: "yes"
            })
        );
    }

    #[test]
    fn selector_labels_are_case_sensitive() {
        let n = node("n1", 1.0, 1024, &[("region", "eu")]);
        let c = Candidate {
            node: &n,
            allocated: Allocation::default(),
        };
        assert!(feasible(&spec(0, 0, &[("REGION", "eu")]), &c).is_err());
    }

    #[test]
    fn allocation_already_on_the_node_counts_against_the_request() {
        let n = node("n1", 1.0, 1024, &[]);
        let c = Candidate {
            node: &n,
            allocated: Allocation {
                cpu: 600,
                memory: 0,
                workloads: 1,
            },
        };
        assert_eq!(feasible(&spec(400, 0, &[]), &c), Ok(()));
        assert_eq!(
            feasible(&spec(401, 0, &[]), &c),
            Err(Rejection::Insufficient(Shortfall::Cpu {
                need: 401,
                free: 400
            }))
        );
    }

    #[test]
    fn memory_is_checked_against_total_memory_minus_allocation() {
        let n = node("n1", 4.0, 1024, &[]);
        let c = Candidate {
            node: &n,
            allocated: Allocation {
                cpu: 0,
                memory: 1000,
                workloads: 1,
            },
        };
        assert_eq!(
            feasible(&spec(0, 25, &[]), &c),
            Err(Rejection::Insufficient(Shortfall::Memory {
                need: 25,
                free: 24
            }))
        );
    }

    #[test]
    fn status_is_checked_before_labels_and_resources() {
        let mut n = node("n1", 0.1, 1, &[]);
        n.status = NodeStatus::Inactive;
        let c = Candidate {
            node: &n,
            allocated: Allocation::default(),
        };
        assert_eq!(
            feasible(&spec(5000, 5000, &[("a", "b")]), &c),
            Err(Rejection::NotActive(NodeStatus::Inactive))
        );
    }
}
