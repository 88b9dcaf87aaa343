//! Scoring feasible nodes: spread keeps the most room everywhere, binpack fills
//! nodes up. Higher scores win; ties are broken deterministically.

use super::{Candidate, Strategy};
use persys_proto::Resources;
use std::cmp::Ordering;

/// Score of placing `request` on `candidate`, in about [0, 1] (higher is better).
pub(crate) fn score(request: &Resources, candidate: &Candidate<'_>, strategy: Strategy) -> f64 {
    let left = fraction_left_after(request, candidate);
    match strategy {
        Strategy::Spread => left,
        Strategy::Binpack => 1.0 - left,
    }
}

/// Average of the CPU and memory fractions still free once the request is placed.
fn fraction_left_after(request: &Resources, candidate: &Candidate<'_>) -> f64 {
    let cpu = fraction_left(
        candidate.node.cpu_millis(),
        candidate.allocated.cpu,
        request.cpu,
    );
    let memory = fraction_left(
        candidate.node.total_memory,
        candidate.allocated.memory,
        request.memory,
    );
    (cpu + memory) / 2.0
}

fn fraction_left(capacity: u64, allocated: u64, request: u64) -> f64 {
    if capacity == 0 {
        // A node that reports no capacity has nothing to offer (and no division by zero).
        return 0.0;
    }
    // u64 -> f64 is exact below 2^53, far beyond any node.
    (capacity as f64 - allocated as f64 - request as f64) / capacity as f64
}

/// Orders two scored candidates, `Greater` meaning `a` is the better choice.
/// Equal scores (typical for workloads without resource requests) fall back to
/// the number of workloads already placed (fewer for spread, more for binpack),
/// then to the node id (smaller wins), so the choice never depends on input order.
pub(crate) fn compare(
    strategy: Strategy,
    a: (f64, &Candidate<'_>),
    b: (f64, &Candidate<'_>),
) -> Ordering {
    let by_count = a.1.allocated.workloads.cmp(&b.1.allocated.workloads);
    a.0.total_cmp(&b.0)
        .then(match strategy {
            Strategy::Spread => by_count.reverse(),
            Strategy::Binpack => by_count,
        })
        .then_with(|| b.1.node.node_id.cmp(&a.1.node.node_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::node;
    use crate::placement::Allocation;

    fn res(cpu: u64, memory: u64) -> Resources {
        Resources { cpu, memory }
    }

    #[test]
    fn spread_score_is_average_free_fraction_after_placement() {
        let n = node("n", 2.0, 1000, &[]);
        let c = Candidate {
            node: &n,
            allocated: Allocation {
                cpu: 500,
                memory: 250,
                workloads: 1,
            },
        };
        // cpu: (2000-500-500)/2000 = 0.5, memory: (1000-250-250)/1000 = 0.5
        let s = score(&res(500, 250), &c, Strategy::Spread);
        assert!((s - 0.5).abs() < 1e-12, "{s}");
        let b = score(&res(500, 250), &c, Strategy::Binpack);
        assert!((b - 0.5).abs() < 1e-12, "{b}");
    }

    #[test]
    fn spread_prefers_emptier_node_binpack_fuller_node() {
        let (a, b) = (node("a", 4.0, 4096, &[]), node("b", 4.0, 4096, &[]));
        let empty = Candidate {
            node: &a,
            allocated: Allocation::default(),
        };
        let busy = Candidate {
            node: &b,
            allocated: Allocation {
                cpu: 2000,
                memory: 2048,
                workloads: 2,
            },
        };
        let r = res(100, 100);
        assert!(score(&r, &empty, Strategy::Spread) > score(&r, &busy, Strategy::Spread));
        assert!(score(&r, &empty, Strategy::Binpack) < score(&r, &busy, Strategy::Binpack));
    }

    #[test]
    fn zero_capacity_counts_as_full() {
        let n = node("n", 0.0, 0, &[]);
        let c = Candidate {
            node: &n,
            allocated: Allocation::default(),
        };
        assert_eq!(score(&res(0, 0), &c, Strategy::Spread), 0.0);
    }

    #[test]
    fn ties_go_to_fewer_workloads_for_spread_then_smaller_id() {
        let (a, b) = (node("a", 1.0, 1, &[]), node("b", 1.0, 1, &[]));
        let ca = Candidate {
            node: &a,
            allocated: Allocation {
                workloads: 3,
                ..Default::default()
            },
        };
        let cb = Candidate {
            node: &b,
            allocated: Allocation {
                workloads: 1,
                ..Default::default()
            },
        };
        assert_eq!(
            compare(Strategy::Spread, (1.0, &ca), (1.0, &cb)),
            Ordering::Less
        );
        assert_eq!(
            compare(Strategy::Binpack, (1.0, &ca), (1.0, &cb)),
            Ordering::Greater
        );
        let cb_same = Candidate {
            node: &b,
            allocated: ca.allocated,
        };
        assert_eq!(
            compare(Strategy::Spread, (1.0, &ca), (1.0, &cb_same)),
            Ordering::Greater
        );
    }
}
