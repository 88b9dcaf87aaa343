//! The placement of one workload explained node by node: the same pass as
//! [`super::place`] ([`super::evaluate`]), with every node's outcome kept instead of
//! only the best one, and, when nothing fits, a hint of what would.

use super::filter::Rejection;
use super::fit::{self, Shortfall};
use super::{evaluate, hint, Candidate, Strategy};
use persys_proto::{NodeVerdict, PlacementExplanation, PlacementFilter, Verdict, Workload};

/// Explain where `workload` would be placed among `candidates` now. The winner is the
/// node [`super::place`] chooses for these inputs; for a placed workload the caller
/// leaves its own reservation out of the allocations, so that its node is judged as
/// if it were free to take it again.
pub fn explain(
    workload: &Workload,
    candidates: &[Candidate<'_>],
    strategy: Strategy,
) -> PlacementExplanation {
    let spec = &workload.spec;
    let mut nodes: Vec<NodeVerdict> = Vec::with_capacity(candidates.len());
    let best = evaluate(spec, candidates, strategy, |index, outcome| {
        let candidate = &candidates[index];
        let free = fit::free(candidate);
        let (verdict, filter, reason, score) = match outcome {
            Ok(score) => (Verdict::Eligible, None, None, Some(score)),
            Err(rejection) => (
                Verdict::Rejected,
                Some(filter_of(&rejection)),
                Some(reason(&rejection)),
                None,
            ),
        };
        nodes.push(NodeVerdict {
            node_id: candidate.node.node_id.clone(),
            verdict,
            filter,
            reason,
            score,
            allocated_cpu: candidate.allocated.cpu,
            allocated_memory: candidate.allocated.memory,
            available_cpu: free.cpu,
            available_memory: free.memory,
            workloads: candidate.allocated.workloads,
        });
    });
    // `evaluate` reports every candidate once, in order: `nodes[i]` is `candidates[i]`.
    let winner = best.and_then(|b| nodes.get_mut(b.index)).map(|n| {
        n.verdict = Verdict::Winner;
        n.node_id.clone()
    });
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let hint = match winner {
        Some(_) => None,
        None => Some(hint::hint(spec, candidates)),
    };
    PlacementExplanation {
        workload_id: workload.id.clone(),
        name: spec.name.clone(),
        status: workload.status,
        node_id: workload.node_id.clone(),
        strategy: strategy.to_string(),
        request: spec.resources,
        node_selector: spec.node_selector.clone(),
        nodes,
        winner,
        hint,
    }
}

/// The filter a rejection comes from.
pub(crate) fn filter_of(rejection: &Rejection<'_>) -> PlacementFilter {
    match rejection {
        Rejection::NotActive(_) => PlacementFilter::Status,
        Rejection::Selector { .. } => PlacementFilter::NodeSelector,
        Rejection::Insufficient(_) => PlacementFilter::Resources,
    }
}

/// A rejection in words, about the node it rejected.
pub(crate) fn reason(rejection: &Rejection<'_>) -> String {
    match rejection {
        Rejection::NotActive(status) => {
            format!("node is {status} (only Active nodes take new workloads)")
        }
        Rejection::Selector { key, value } => format!("lacks label {key}={value}"),
        Rejection::Insufficient(Shortfall::Cpu { need, free }) => {
            format!("needs {need}m CPU, {free}m free")
        }
        Rejection::Insufficient(Shortfall::Memory { need, free }) => {
            format!("needs {need}MB memory, {free}MB free")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::{node, spec};
    use crate::placement::{place, Allocation};
    use persys_proto::{NodeStatus, WorkloadSpec};

    fn workload(spec: WorkloadSpec) -> Workload {
        Workload::new("w-1".into(), spec, chrono::DateTime::UNIX_EPOCH)
    }

    fn verdict<'a>(e: &'a PlacementExplanation, id: &str) -> &'a NodeVerdict {
        e.nodes
            .iter()
            .find(|n| n.node_id == id)
            .unwrap_or_else(|| panic!("no verdict for {id}"))
    }

    #[test]
    fn each_filter_rejects_with_its_name_and_reason() {
        let mut cordoned = node("a-cordoned", 8.0, 8192, &[("zone", "eu")]);
        cordoned.status = NodeStatus::Cordoned;
        let us = node("b-us", 8.0, 8192, &[("zone", "us")]);
        let small = node("c-small", 0.4, 8192, &[("zone", "eu")]);
        let low_mem = node("d-lowmem", 8.0, 100, &[("zone", "eu")]);
        let candidates: Vec<Candidate<'_>> = [&cordoned, &us, &small, &low_mem]
            .into_iter()
            .map(|node| Candidate {
                node,
                allocated: Allocation::default(),
            })
            .collect();
        let e = explain(
            &workload(spec(600, 200, &[("zone", "eu")])),
            &candidates,
            Strategy::Spread,
        );
        let expect = [
            (
                "a-cordoned",
                PlacementFilter::Status,
                "node is Cordoned (only Active nodes take new workloads)",
            ),
            ("b-us", PlacementFilter::NodeSelector, "lacks label zone=eu"),
            (
                "c-small",
                PlacementFilter::Resources,
                "needs 600m CPU, 400m free",
            ),
            (
                "d-lowmem",
                PlacementFilter::Resources,
                "needs 200MB memory, 100MB free",
            ),
        ];
        for (id, filter, reason) in expect {
            let v = verdict(&e, id);
            assert_eq!(v.verdict, Verdict::Rejected, "{id}");
            assert_eq!(v.filter, Some(filter), "{id}");
            assert_eq!(v.reason.as_deref(), Some(reason), "{id}");
            assert_eq!(v.score, None, "{id}");
        }
        assert_eq!(e.winner, None);
        assert!(e.hint.is_some(), "a workload nothing fits gets a hint");
    }

    #[test]
    fn winner_is_the_node_place_chooses_and_scores_the_best() {
        let (a, b, c) = (
            node("a", 4.0, 4096, &[]),
            node("b", 4.0, 4096, &[]),
            node("c", 1.0, 1024, &[]),
        );
        let candidates = [
            Candidate {
                node: &a,
                allocated: Allocation {
                    cpu: 3000,
                    memory: 3000,
                    workloads: 3,
                },
            },
            Candidate {
                node: &b,
                allocated: Allocation::default(),
            },
            Candidate {
                node: &c,
                allocated: Allocation {
                    cpu: 900,
                    memory: 0,
                    workloads: 1,
                },
            },
        ];
        let s = spec(500, 500, &[]);
        for strategy in [Strategy::Spread, Strategy::Binpack] {
            let e = explain(&workload(s.clone()), &candidates, strategy);
            let placed = place(&s, &candidates, strategy).expect("fits");
            assert_eq!(e.winner.as_deref(), Some(placed.node_id.as_str()));
            assert_eq!(e.hint, None);
            assert_eq!(e.strategy, strategy.as_str());
            let winner = verdict(&e, &placed.node_id);
            assert_eq!(winner.verdict, Verdict::Winner);
            assert_eq!(winner.score, Some(placed.score));
            let c = verdict(&e, "c");
            assert_eq!(c.verdict, Verdict::Rejected, "500m does not fit in 100m");
            assert_eq!(c.available_cpu, 100);
            assert_eq!(c.allocated_cpu, 900);
            for n in &e.nodes {
                if n.verdict == Verdict::Eligible {
                    assert!(n.score.expect("scored") <= placed.score);
                }
            }
        }
        // Spread picks the empty node, binpack the full one.
        let e = explain(&workload(s.clone()), &candidates, Strategy::Spread);
        assert_eq!(e.winner.as_deref(), Some("b"));
        assert_eq!(verdict(&e, "a").verdict, Verdict::Eligible);
    }

    #[test]
    fn verdicts_are_by_node_id_whatever_the_input_order() {
        let (a, b) = (node("a", 1.0, 1024, &[]), node("b", 1.0, 1024, &[]));
        let candidates = [
            Candidate {
                node: &b,
                allocated: Allocation::default(),
            },
            Candidate {
                node: &a,
                allocated: Allocation::default(),
            },
        ];
        let e = explain(&workload(spec(0, 0, &[])), &candidates, Strategy::Spread);
        let ids: Vec<&str> = e.nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(e.winner.as_deref(), Some("a"), "ties go to the smaller id");
        assert_eq!(e.nodes[0].verdict, Verdict::Winner);
        assert_eq!(e.nodes[1].verdict, Verdict::Eligible);
    }

    #[test]
    fn the_answer_names_the_workload_its_request_and_its_node() {
        let n = node("n1", 1.0, 1024, &[]);
        let mut w = workload(spec(250, 64, &[("disk", "ssd")]));
        w.node_id = Some("n1".into());
        w.status = persys_proto::WorkloadStatus::Running;
        let e = explain(
            &w,
            &[Candidate {
                node: &n,
                allocated: Allocation::default(),
            }],
            Strategy::Binpack,
        );
        assert_eq!(e.workload_id, "w-1");
        assert_eq!(e.node_id.as_deref(), Some("n1"));
        assert_eq!(e.status, persys_proto::WorkloadStatus::Running);
        assert_eq!((e.request.cpu, e.request.memory), (250, 64));
        assert_eq!(e.node_selector.get("disk").map(String::as_str), Some("ssd"));
        assert_eq!(e.strategy, "binpack");
    }

    #[test]
    fn no_nodes_is_explained_with_a_hint() {
        let e = explain(&workload(spec(0, 0, &[])), &[], Strategy::Spread);
        assert!(e.nodes.is_empty());
        assert_eq!(e.winner, None);
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("no nodes")));
    }
}
