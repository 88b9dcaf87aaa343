//! Property tests over random clusters.

use super::testing::{node, spec};
use super::{explain, place, Allocation, Candidate, PlacementError, Strategy as Pick};
use persys_proto::{Node, NodeStatus, Verdict, Workload, WorkloadSpec};
use proptest::prelude::*;

/// A node as generated: status, capacity, labels and what is already allocated.
#[derive(Clone, Debug)]
struct GenNode {
    status: NodeStatus,
    millicores: u64,
    memory: u64,
    region: Option<&'static str>,
    disk: Option<&'static str>,
    allocated: Allocation,
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        prop_oneof![
            6 => Just(NodeStatus::Active),
            1 => Just(NodeStatus::Inactive),
            1 => Just(NodeStatus::Draining),
            1 => Just(NodeStatus::Cordoned),
        ],
        0u64..8_000,
        0u64..16_384,
        proptest::option::of(prop_oneof![Just("eu"), Just("us")]),
        proptest::option::of(prop_oneof![Just("ssd"), Just("hdd")]),
        0u64..10_000,
        0u64..20_000,
        0u32..10,
    )
        .prop_map(
            |(status, millicores, memory, region, disk, cpu, mem, n)| GenNode {
                status,
                millicores,
                memory,
                region,
                disk,
                allocated: Allocation {
                    cpu,
                    memory: mem,
                    workloads: n,
                },
            },
        )
}

fn gen_spec() -> impl Strategy<Value = WorkloadSpec> {
    (
        prop_oneof![Just(0u64), 1u64..4_000],
        prop_oneof![Just(0u64), 1u64..8_192],
        proptest::option::of(prop_oneof![Just("eu"), Just("us")]),
        proptest::option::of(prop_oneof![Just("ssd"), Just("hdd")]),
    )
        .prop_map(|(cpu, memory, region, disk)| {
            let mut selector = Vec::new();
            if let Some(r) = region {
                selector.push(("region", r));
            }
            if let Some(d) = disk {
                selector.push(("disk", d));
            }
            spec(cpu, memory, &selector)
        })
}

fn build(gen: &[GenNode]) -> Vec<Node> {
    gen.iter()
        .enumerate()
        .map(|(i, g)| {
            let mut labels = Vec::new();
            if let Some(r) = g.region {
                labels.push(("region", r));
            }
            if let Some(d) = g.disk {
                labels.push(("disk", d));
            }
            let mut n = node(
                &format!("node-{i:03}"),
                g.millicores as f64 / 1000.0,
                g.memory,
                &labels,
            );
            n.status = g.status;
            n
        })
        .collect()
}

/// Feasibility written independently of the implementation, as the oracle.
fn oracle_feasible(spec: &WorkloadSpec, node: &Node, allocated: Allocation) -> bool {
    let free_cpu = node.cpu_millis() as i128 - allocated.cpu as i128;
    let free_mem = node.total_memory as i128 - allocated.memory as i128;
    node.status == NodeStatus::Active
        && spec
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
        && (spec.resources.cpu == 0 || free_cpu >= spec.resources.cpu as i128)
        && (spec.resources.memory == 0 || free_mem >= spec.resources.memory as i128)
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![Just(Pick::Spread), Just(Pick::Binpack)]
}

proptest! {
    #[test]
    fn chosen_node_is_feasible_and_never_over_capacity(
        gen in proptest::collection::vec(gen_node(), 1..30),
        spec in gen_spec(),
        strategy in pick(),
    ) {
        let nodes = build(&gen);
        let candidates: Vec<_> = nodes.iter().zip(&gen)
            .map(|(node, g)| Candidate { node, allocated: g.allocated })
            .collect();
        let any_feasible = candidates.iter().any(|c| oracle_feasible(&spec, c.node, c.allocated));
        match place(&spec, &candidates, strategy) {
            Ok(placement) => {
                prop_assert!(any_feasible);
                let chosen = candidates.iter().find(|c| c.node.node_id == placement.node_id)
                    .expect("chosen node is a candidate");
                prop_assert!(oracle_feasible(&spec, chosen.node, chosen.allocated));
                if spec.resources.cpu > 0 {
                    prop_assert!(chosen.allocated.cpu + spec.resources.cpu <= chosen.node.cpu_millis());
                }
                if spec.resources.memory > 0 {
                    prop_assert!(chosen.allocated.memory + spec.resources.memory <= chosen.node.total_memory);
                }
            }
            Err(PlacementError::NoNodeFits(summary)) => {
                prop_assert!(!any_feasible, "NoNodeFits although a node is feasible: {}", summary);
                let expected_prefix = format!("0/{} nodes fit", candidates.len());
                prop_assert!(summary.starts_with(&expected_prefix), "{}", summary);
            }
            Err(PlacementError::NoNodes) => prop_assert!(false, "NoNodes with candidates"),
        }
    }

    #[test]
    fn explain_winner_is_always_the_node_place_chooses(
        gen in proptest::collection::vec(gen_node(), 0..30),
        spec in gen_spec(),
        strategy in pick(),
    ) {
        let nodes = build(&gen);
        let candidates: Vec<_> = nodes.iter().zip(&gen)
            .map(|(node, g)| Candidate { node, allocated: g.allocated })
            .collect();
        let w = Workload::new("w".into(), spec.clone(), chrono::DateTime::UNIX_EPOCH);
        let e = explain(&w, &candidates, strategy);
        let placed = place(&spec, &candidates, strategy);
        prop_assert_eq!(e.winner.as_deref(), placed.as_ref().ok().map(|p| p.node_id.as_str()));
        prop_assert_eq!(e.nodes.len(), candidates.len());
        prop_assert_eq!(e.hint.is_some(), placed.is_err(), "a hint exactly when nothing fits");
        let winners = e.nodes.iter().filter(|n| n.verdict == Verdict::Winner).count();
        prop_assert_eq!(winners, usize::from(placed.is_ok()));
        for (n, c) in e.nodes.iter().zip({
            let mut sorted = candidates.clone();
            sorted.sort_by(|a, b| a.node.node_id.cmp(&b.node.node_id));
            sorted
        }) {
            prop_assert_eq!(&n.node_id, &c.node.node_id);
            let feasible = oracle_feasible(&spec, c.node, c.allocated);
            prop_assert_eq!(n.verdict != Verdict::Rejected, feasible, "{:?}", n);
            prop_assert_eq!(n.score.is_some(), feasible);
            prop_assert_eq!(n.filter.is_some() && n.reason.is_some(), !feasible);
            if let (Some(score), Ok(p)) = (n.score, &placed) {
                prop_assert!(score <= p.score, "{} scores {} over the winner's {}", n.node_id, score, p.score);
                if n.verdict == Verdict::Winner {
                    prop_assert_eq!(score, p.score);
                }
            }
        }
    }

    #[test]
    fn choice_does_not_depend_on_candidate_order(
        gen in proptest::collection::vec(gen_node(), 1..20),
        spec in gen_spec(),
        strategy in pick(),
        rotate in 0usize..20,
    ) {
        let nodes = build(&gen);
        let candidates: Vec<_> = nodes.iter().zip(&gen)
            .map(|(node, g)| Candidate { node, allocated: g.allocated })
            .collect();
        let mut shuffled = candidates.clone();
        shuffled.reverse();
        let len = shuffled.len();
        shuffled.rotate_left(rotate % len);
        prop_assert_eq!(
            place(&spec, &candidates, strategy).map(|p| p.node_id),
            place(&spec, &shuffled, strategy).map(|p| p.node_id)
        );
    }

    #[test]
    fn spread_balances_equal_workloads_on_equal_nodes_within_one(
        nodes_count in 1usize..12,
        workloads in 0usize..60,
        cpu in prop_oneof![Just(0u64), 1u64..200],
        memory in prop_oneof![Just(0u64), 1u64..200],
    ) {
        // Capacity for every workload on any single node: only the strategy decides.
        let nodes: Vec<Node> = (0..nodes_count)
            .map(|i| node(&format!("n{i:02}"), 16.0, 16_384, &[]))
            .collect();
        let mut allocated = vec![Allocation::default(); nodes_count];
        let s = spec(cpu, memory, &[]);
        for _ in 0..workloads {
            let candidates: Vec<_> = nodes.iter().zip(&allocated)
                .map(|(node, a)| Candidate { node, allocated: *a })
                .collect();
            let placed = place(&s, &candidates, Pick::Spread).expect("room everywhere");
            let i = nodes.iter().position(|n| n.node_id == placed.node_id).expect("known node");
            allocated[i].add(&s.resources);
        }
        let counts: Vec<u32> = allocated.iter().map(|a| a.workloads).collect();
        let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
        prop_assert!(max - min <= 1, "unbalanced: {:?}", counts);
    }

    #[test]
    fn binpack_fills_one_node_before_using_another(
        workloads in 1usize..30,
        cpu in 1u64..500,
    ) {
        let nodes: Vec<Node> = (0..4).map(|i| node(&format!("n{i}"), 64.0, 65_536, &[])).collect();
        let mut allocated = [Allocation::default(); 4];
        let s = spec(cpu, 0, &[]);
        for _ in 0..workloads {
            let candidates: Vec<_> = nodes.iter().zip(&allocated)
                .map(|(node, a)| Candidate { node, allocated: *a })
                .collect();
            let placed = place(&s, &candidates, Pick::Binpack).expect("room");
            let i = nodes.iter().position(|n| n.node_id == placed.node_id).expect("known node");
            allocated[i].add(&s.resources);
        }
        let used = allocated.iter().filter(|a| a.workloads > 0).count();
        prop_assert_eq!(used, 1);
    }
}
