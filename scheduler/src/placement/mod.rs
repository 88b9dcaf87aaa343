//! Placement: a pure pipeline choosing the node for a workload.
//!
//! feasibility ([`filter`]: status, node selector) → fit ([`fit`]: CPU and memory
//! against what is already allocated) → score ([`score`]: spread or binpack) → the
//! best node. No async, no I/O: the caller passes a snapshot of the nodes and
//! their allocations. When nothing fits, [`summary`] explains why. [`explain`] is the
//! same pass with every node's verdict kept (`persys why`), and [`hint`] says what
//! would make a workload fit.

mod explain;
mod filter;
mod fit;
mod hint;
mod score;
mod summary;

pub use explain::explain;
use filter::Rejection;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod testing;

use persys_proto::{Node, Resources, WorkloadSpec};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// How to choose among feasible nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Prefer the node with the most room left (the default).
    #[default]
    Spread,
    /// Prefer the node with the least room left, keeping others empty.
    Binpack,
}

impl Strategy {
    /// Flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spread => "spread",
            Self::Binpack => "binpack",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--placement` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown placement strategy {0:?} (expected spread or binpack)")]
pub struct ParseStrategyError(pub String);

impl FromStr for Strategy {
    type Err = ParseStrategyError;

    /// `spread` or `binpack`, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "spread" => Ok(Self::Spread),
            "binpack" => Ok(Self::Binpack),
            _ => Err(ParseStrategyError(s.to_owned())),
        }
    }
}

/// What is already placed on a node: the sum of the requests of the workloads
/// placed there (millicores, MB) and how many they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Millicores requested.
    pub cpu: u64,
    /// MB requested.
    pub memory: u64,
    /// Number of workloads; breaks ties between equally free nodes, so that
    /// workloads without resource requests still spread.
    pub workloads: u32,
}

impl Allocation {
    /// Adds one workload's request.
    pub fn add(&mut self, resources: &Resources) {
        self.cpu = self.cpu.saturating_add(resources.cpu);
        self.memory = self.memory.saturating_add(resources.memory);
        self.workloads = self.workloads.saturating_add(1);
    }

    /// Removes one workload's request (e.g. when it is deleted or moved).
    pub fn remove(&mut self, resources: &Resources) {
        self.cpu = self.cpu.saturating_sub(resources.cpu);
        self.memory = self.memory.saturating_sub(resources.memory);
        self.workloads = self.workloads.saturating_sub(1);
    }
}

/// A node considered for placement, with what is already allocated on it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The node.
    pub node: &'a Node,
    /// Requests of the workloads already placed on it.
    pub allocated: Allocation,
}

/// Why no node was chosen.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlacementError {
    /// Nodes exist but none passes every filter; the text says how many failed which
    /// filter, e.g. `0/3 nodes fit: 1 not Active, 1 node selector mismatch (region=eu),
    /// 1 insufficient cpu (needs 600m, most free 400m)`.
    #[error("no node fits: {0}")]
    NoNodeFits(String),
    /// There are no nodes at all.
    #[error("no nodes registered")]
    NoNodes,
}

/// The chosen node.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Id of the chosen node.
    pub node_id: String,
    /// Its index among the candidates.
    pub index: usize,
    /// Its score (higher is better; in about [0, 1]).
    pub score: f64,
}

/// Chooses the node for `spec` among `candidates`. Deterministic: the same
/// inputs in any order give the same node.
pub fn place(
    spec: &WorkloadSpec,
    candidates: &[Candidate<'_>],
    strategy: Strategy,
) -> Result<Placement, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    // No allocation on this path: the failure summary is only built when nothing fits.
    match evaluate(spec, candidates, strategy, |_, _| {}) {
        Some(best) => Ok(Placement {
            node_id: candidates[best.index].node.node_id.clone(),
            index: best.index,
            score: best.score,
        }),
        None => Err(PlacementError::NoNodeFits(summary::summarize(
            spec, candidates,
        ))),
    }
}

/// The best candidate of a pass: its index in the candidates, and its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Best {
    pub index: usize,
    pub score: f64,
}

/// The one pass of placement, shared by [`place`] and [`explain`]: each candidate, in
/// order, through the filters and, when it passes them, the scorer. `each` is shown
/// every candidate's outcome (its score, or the first filter that rejected it); the
/// best feasible candidate is returned. Since both are this pass, what `explain` shows
/// is what `place` does.
pub(crate) fn evaluate<'s>(
    spec: &'s WorkloadSpec,
    candidates: &[Candidate<'_>],
    strategy: Strategy,
    mut each: impl FnMut(usize, Result<f64, Rejection<'s>>),
) -> Option<Best> {
    let mut best: Option<(f64, usize)> = None;
    for (index, candidate) in candidates.iter().enumerate() {
        if let Err(rejection) = filter::feasible(spec, candidate) {
            each(index, Err(rejection));
            continue;
        }
        let score = score::score(&spec.resources, candidate, strategy);
        each(index, Ok(score));
        let better = match best {
            None => true,
            Some((s, i)) => {
                score::compare(strategy, (score, candidate), (s, &candidates[i]))
                    == Ordering::Greater
            }
        };
        if better {
            best = Some((score, index));
        }
    }
    best.map(|(score, index)| Best { index, score })
}

#[cfg(test)]
mod tests {
    use super::testing::{node, spec};
    use super::*;
    use persys_proto::NodeStatus;

    fn empty(node: &Node) -> Candidate<'_> {
        Candidate {
            node,
            allocated: Allocation::default(),
        }
    }

    #[test]
    fn strategy_parses_flag_values_and_rejects_others() {
        assert_eq!("spread".parse(), Ok(Strategy::Spread));
        assert_eq!("BinPack".parse(), Ok(Strategy::Binpack));
        assert_eq!(Strategy::default(), Strategy::Spread);
        let err = "random".parse::<Strategy>().expect_err("unknown");
        assert!(err.to_string().contains("random"));
        assert_eq!(Strategy::Binpack.to_string().parse(), Ok(Strategy::Binpack));
    }

    #[test]
    fn no_candidates_is_no_nodes() {
        assert_eq!(
            place(&spec(0, 0, &[]), &[], Strategy::Spread),
            Err(PlacementError::NoNodes)
        );
    }

    #[test]
    fn only_feasible_node_is_chosen_whatever_the_strategy() {
        let big = node("big", 1.0, 1024, &[("region", "us")]);
        let eu = node("eu", 0.5, 512, &[("region", "eu")]);
        let candidates = [empty(&big), empty(&eu)];
        let s = spec(100, 0, &[("region", "eu")]);
        for strategy in [Strategy::Spread, Strategy::Binpack] {
            assert_eq!(
                place(&s, &candidates, strategy).expect("fits").node_id,
                "eu"
            );
        }
    }

    #[test]
    fn spread_picks_emptiest_and_binpack_fullest_node() {
        let (a, b) = (node("a", 4.0, 4096, &[]), node("b", 4.0, 4096, &[]));
        let candidates = [
            Candidate {
                node: &a,
                allocated: Allocation {
                    cpu: 3000,
                    memory: 3000,
                    workloads: 3,
                },
            },
            empty(&b),
        ];
        let s = spec(500, 500, &[]);
        assert_eq!(
            place(&s, &candidates, Strategy::Spread)
                .expect("fits")
                .node_id,
            "b"
        );
        assert_eq!(
            place(&s, &candidates, Strategy::Binpack)
                .expect("fits")
                .node_id,
            "a"
        );
    }

    #[test]
    fn binpack_skips_a_node_the_request_no_longer_fits() {
        let (a, b) = (node("a", 1.0, 1024, &[]), node("b", 4.0, 4096, &[]));
        let candidates = [
            Candidate {
                node: &a,
                allocated: Allocation {
                    cpu: 900,
                    memory: 0,
                    workloads: 1,
                },
            },
            empty(&b),
        ];
        let placed = place(&spec(200, 0, &[]), &candidates, Strategy::Binpack).expect("fits");
        assert_eq!(placed.node_id, "b");
    }

    #[test]
    fn equal_nodes_tie_break_by_node_id_regardless_of_order() {
        let (a, b, c) = (
            node("a", 1.0, 1, &[]),
            node("b", 1.0, 1, &[]),
            node("c", 1.0, 1, &[]),
        );
        let forward = [empty(&a), empty(&b), empty(&c)];
        let backward = [empty(&c), empty(&b), empty(&a)];
        for strategy in [Strategy::Spread, Strategy::Binpack] {
            assert_eq!(
                place(&spec(0, 0, &[]), &forward, strategy)
                    .expect("fits")
                    .node_id,
                "a"
            );
            assert_eq!(
                place(&spec(0, 0, &[]), &backward, strategy)
                    .expect("fits")
                    .node_id,
                "a"
            );
        }
    }

    #[test]
    fn spread_places_requestless_workloads_on_the_node_with_fewest() {
        let (a, b) = (node("a", 1.0, 1024, &[]), node("b", 1.0, 1024, &[]));
        let candidates = [
            Candidate {
                node: &a,
                allocated: Allocation {
                    workloads: 2,
                    ..Default::default()
                },
            },
            Candidate {
                node: &b,
                allocated: Allocation {
                    workloads: 1,
                    ..Default::default()
                },
            },
        ];
        assert_eq!(
            place(&spec(0, 0, &[]), &candidates, Strategy::Spread)
                .expect("fits")
                .node_id,
            "b"
        );
    }

    #[test]
    fn nothing_feasible_gives_a_summary_naming_the_reasons() {
        let mut down = node("a", 8.0, 8192, &[]);
        down.status = NodeStatus::Draining;
        let small = node("b", 0.4, 8192, &[("region", "eu")]);
        let other = node("c", 8.0, 8192, &[("region", "us")]);
        let candidates = [empty(&down), empty(&small), empty(&other)];
        let err = place(
            &spec(600, 0, &[("region", "eu")]),
            &candidates,
            Strategy::Spread,
        )
        .expect_err("nothing fits");
        assert_eq!(
            err.to_string(),
            "no node fits: 0/3 nodes fit: 1 not Active, 1 node selector mismatch (region=eu), \
             1 insufficient cpu (needs 600m, most free 400m)"
        );
    }

    #[test]
    fn allocation_add_and_remove_track_requests_and_count() {
        let mut alloc = Allocation::default();
        let r = persys_proto::Resources {
            cpu: 250,
            memory: 128,
        };
        alloc.add(&r);
        alloc.add(&r);
        assert_eq!(
            alloc,
            Allocation {
                cpu: 500,
                memory: 256,
                workloads: 2
            }
        );
        alloc.remove(&r);
        alloc.remove(&r);
        alloc.remove(&r);
        assert_eq!(alloc, Allocation::default());
    }
}
