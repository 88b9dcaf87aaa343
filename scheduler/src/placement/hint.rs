//! What would make a workload that fits nowhere fit: the nearest change, in words
//! (`needs 500m more CPU on node x`, `no node has label zone=eu`, `node x matches
//! but is Cordoned`). Built from the same filters as placement, only on failure.

use super::filter;
use super::fit;
use super::Candidate;
use persys_proto::{NodeStatus, WorkloadSpec};
use std::cmp::Ordering;

/// At most this many nodes are named in one hint.
const MAX_NAMED: usize = 3;

/// The hint for `spec`, which no candidate passes. Looks at the filters from the last
/// to the first: if some node is Active and matches the node selector, only resources
/// are short (say how much on the nearest); else if some node matches but is not
/// Active, say which and how to bring it back; else the node selector is what no
/// node satisfies (say which labels).
pub(crate) fn hint(spec: &WorkloadSpec, candidates: &[Candidate<'_>]) -> String {
    if candidates.is_empty() {
        return "no nodes are registered: start an agent so that a node joins".into();
    }
    let matching: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| filter::selector(spec, c.node).is_ok())
        .collect();
    let usable: Vec<&Candidate<'_>> = matching
        .iter()
        .copied()
        .filter(|c| filter::status(c.node).is_ok())
        .collect();
    if !usable.is_empty() {
        return resources(spec, &usable);
    }
    if !matching.is_empty() {
        return not_active(spec, &matching);
    }
    selector(spec, candidates)
}

/// What is short on a node: (millicores, MB) beyond what `have` offers.
fn short(spec: &WorkloadSpec, have_cpu: u64, have_memory: u64) -> (u64, u64) {
    let r = &spec.resources;
    let cpu = if r.cpu > 0 {
        r.cpu.saturating_sub(have_cpu)
    } else {
        0
    };
    let memory = if r.memory > 0 {
        r.memory.saturating_sub(have_memory)
    } else {
        0
    };
    (cpu, memory)
}

/// A shortfall as a fraction of the node's capacity (to compare nodes of any size).
fn relative((cpu, memory): (u64, u64), candidate: &Candidate<'_>) -> f64 {
    let part = |short: u64, capacity: u64| {
        if short == 0 {
            0.0
        } else if capacity == 0 {
            f64::INFINITY
        } else {
            short as f64 / capacity as f64
        }
    };
    part(cpu, candidate.node.cpu_millis()) + part(memory, candidate.node.total_memory)
}

/// `500m more CPU and 128MB more memory`.
fn amounts((cpu, memory): (u64, u64), more: &str) -> String {
    let mut parts = Vec::new();
    if cpu > 0 {
        parts.push(format!("{cpu}m{more} CPU"));
    }
    if memory > 0 {
        parts.push(format!("{memory}MB{more} memory"));
    }
    parts.join(" and ")
}

/// The nearest of `among` by shortfall (smaller id on ties).
fn nearest<'a, 'n>(
    among: impl Iterator<Item = (&'a Candidate<'n>, (u64, u64))>,
) -> Option<(&'a Candidate<'n>, (u64, u64))>
where
    'n: 'a,
{
    among.min_by(|(a, sa), (b, sb)| {
        relative(*sa, a)
            .total_cmp(&relative(*sb, b))
            .then_with(|| a.node.node_id.cmp(&b.node.node_id))
    })
}

/// Every usable node lacks CPU or memory: how much more the nearest one needs, or,
/// when even an empty node is too small, that the request is too big.
fn resources(spec: &WorkloadSpec, usable: &[&Candidate<'_>]) -> String {
    let freeable = usable.iter().copied().filter_map(|c| {
        let capacity_short = short(spec, c.node.cpu_millis(), c.node.total_memory);
        (capacity_short == (0, 0)).then(|| {
            let free = fit::free(c);
            (c, short(spec, free.cpu, free.memory))
        })
    });
    if let Some((c, missing)) = nearest(freeable) {
        return format!(
            "needs {} on node {}: free that much there (stop, remove or move workloads) \
             or request less",
            amounts(missing, " more"),
            c.node.node_id
        );
    }
    let too_small = usable
        .iter()
        .copied()
        .map(|c| (c, short(spec, c.node.cpu_millis(), c.node.total_memory)));
    match nearest(too_small) {
        Some((c, missing)) => format!(
            "no matching node is big enough even when empty: the nearest, {}, has {}m CPU \
             and {}MB memory in all ({} short); request less or add a bigger node",
            c.node.node_id,
            c.node.cpu_millis(),
            c.node.total_memory,
            amounts(missing, ""),
        ),
        // Unreachable: `usable` is not empty.
        None => "no node has room for the request".into(),
    }
}

/// Nodes match the selector but none is Active: name them and how to bring them back.
fn not_active(spec: &WorkloadSpec, matching: &[&Candidate<'_>]) -> String {
    let mut nodes: Vec<&Candidate<'_>> = matching.to_vec();
    // Cordoned and Draining nodes come back with one command: name them first.
    nodes.sort_by(|a, b| {
        rank(a.node.status)
            .cmp(&rank(b.node.status))
            .then_with(|| a.node.node_id.cmp(&b.node.node_id))
    });
    let mut named: Vec<String> = nodes
        .iter()
        .take(MAX_NAMED)
        .map(|c| {
            let id = &c.node.node_id;
            match c.node.status {
                NodeStatus::Cordoned => {
                    format!("{id} is Cordoned (uncordon it: persys node uncordon {id})")
                }
                NodeStatus::Draining => format!(
                    "{id} is Draining (uncordon it to end the drain: persys node uncordon {id})"
                ),
                NodeStatus::Inactive => {
                    format!("{id} is Inactive (its agent stopped heartbeating: restart it)")
                }
                NodeStatus::Active => format!("{id} is Active"),
            }
        })
        .collect();
    if nodes.len() > MAX_NAMED {
        named.push(format!("{} more", nodes.len() - MAX_NAMED));
    }
    let prefix = if spec.node_selector.is_empty() {
        "no node is Active"
    } else {
        "no Active node matches the node selector"
    };
    format!("{prefix}: {}", named.join("; "))
}

fn rank(status: NodeStatus) -> u8 {
    match status {
        NodeStatus::Cordoned => 0,
        NodeStatus::Draining => 1,
        NodeStatus::Inactive => 2,
        NodeStatus::Active => 3,
    }
}

/// No node carries every label of the selector: the labels no node has at all, or
/// the node that comes closest and what it lacks.
fn selector(spec: &WorkloadSpec, candidates: &[Candidate<'_>]) -> String {
    let carried = |c: &Candidate<'_>, k: &String, v: &String| c.node.labels.get(k) == Some(v);
    let absent: Vec<String> = spec
        .node_selector
        .iter()
        .filter(|(k, v)| !candidates.iter().any(|c| carried(c, k, v)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !absent.is_empty() {
        let noun = if absent.len() == 1 { "label" } else { "labels" };
        return format!(
            "no node has {noun} {}: label a node (agent --labels) or change the \
             workload's nodeSelector",
            absent.join(", ")
        );
    }
    // Every label is on some node, but no node has them all.
    let lacking = |c: &Candidate<'_>| -> Vec<String> {
        spec.node_selector
            .iter()
            .filter(|(k, v)| !carried(c, k, v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    };
    let closest = candidates
        .iter()
        .map(|c| (c, lacking(c)))
        .min_by(|(a, la), (b, lb)| match la.len().cmp(&lb.len()) {
            Ordering::Equal => a.node.node_id.cmp(&b.node.node_id),
            other => other,
        });
    let all = spec
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest {
        Some((c, lacks)) => format!(
            "no node has all of the labels {all}: the closest, {}, lacks {}",
            c.node.node_id,
            lacks.join(", ")
        ),
        None => format!("no node has all of the labels {all}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::{node, spec};
    use crate::placement::Allocation;
    use persys_proto::Node;

    fn candidates<'a>(nodes: &'a [Node], allocated: &[Allocation]) -> Vec<Candidate<'a>> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, node)| Candidate {
                node,
                allocated: allocated.get(i).copied().unwrap_or_default(),
            })
            .collect()
    }

    fn used(cpu: u64, memory: u64) -> Allocation {
        Allocation {
            cpu,
            memory,
            workloads: 1,
        }
    }

    #[test]
    fn short_cpu_names_the_nearest_node_and_how_much_more() {
        let nodes = [node("a", 1.0, 1024, &[]), node("b", 1.0, 1024, &[])];
        let c = candidates(&nodes, &[used(900, 0), used(700, 0)]);
        assert_eq!(
            hint(&spec(800, 0, &[]), &c),
            "needs 500m more CPU on node b: free that much there (stop, remove or move \
             workloads) or request less"
        );
    }

    #[test]
    fn short_cpu_and_memory_are_both_named() {
        let nodes = [node("a", 2.0, 1024, &[])];
        let c = candidates(&nodes, &[used(1800, 1000)]);
        let h = hint(&spec(500, 128, &[]), &c);
        assert!(
            h.starts_with("needs 300m more CPU and 104MB more memory on node a"),
            "{h}"
        );
    }

    #[test]
    fn a_request_bigger_than_any_node_says_so() {
        let nodes = [node("a", 1.0, 1024, &[]), node("b", 2.0, 512, &[])];
        let c = candidates(&nodes, &[]);
        let h = hint(&spec(3000, 0, &[]), &c);
        assert!(
            h.starts_with("no matching node is big enough even when empty: the nearest, b,"),
            "{h}"
        );
        assert!(h.contains("1000m CPU short"), "{h}");
    }

    #[test]
    fn a_label_no_node_has_is_named() {
        let nodes = [
            node("a", 1.0, 1024, &[("zone", "us")]),
            node("b", 1.0, 1024, &[]),
        ];
        let c = candidates(&nodes, &[]);
        let h = hint(&spec(0, 0, &[("zone", "eu")]), &c);
        assert!(h.starts_with("no node has label zone=eu:"), "{h}");
    }

    #[test]
    fn labels_spread_over_nodes_name_the_closest_and_what_it_lacks() {
        let nodes = [
            node("a", 1.0, 1024, &[("zone", "eu")]),
            node("b", 1.0, 1024, &[("disk", "ssd")]),
        ];
        let c = candidates(&nodes, &[]);
        assert_eq!(
            hint(&spec(0, 0, &[("zone", "eu"), ("disk", "ssd")]), &c),
            "no node has all of the labels disk=ssd, zone=eu: the closest, a, lacks disk=ssd"
        );
    }

    #[test]
    fn matching_nodes_that_are_not_active_are_named_cordoned_first() {
        let mut down = node("a", 1.0, 1024, &[("zone", "eu")]);
        down.status = NodeStatus::Inactive;
        let mut cordoned = node("b", 1.0, 1024, &[("zone", "eu")]);
        cordoned.status = NodeStatus::Cordoned;
        let us = node("c", 8.0, 8192, &[("zone", "us")]);
        let nodes = [down, cordoned, us];
        let c = candidates(&nodes, &[]);
        assert_eq!(
            hint(&spec(0, 0, &[("zone", "eu")]), &c),
            "no Active node matches the node selector: b is Cordoned (uncordon it: persys \
             node uncordon b); a is Inactive (its agent stopped heartbeating: restart it)"
        );
    }

    #[test]
    fn without_nodes_the_hint_says_to_start_an_agent() {
        assert!(hint(&spec(0, 0, &[]), &[]).starts_with("no nodes are registered"));
    }
}
