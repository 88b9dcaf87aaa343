//! The human summary of why no node fits, e.g.
//! `0/3 nodes fit: 1 not Active, 1 node selector mismatch (region=eu), 1 insufficient cpu (needs 600m, most free 400m)`.
//! Only built on failure, so it may allocate freely.

use super::filter::{feasible, Rejection};
use super::fit::Shortfall;
use super::Candidate;
use persys_proto::WorkloadSpec;
use std::fmt::Write;

/// At most this many distinct selector pairs are named.
const MAX_SELECTORS_NAMED: usize = 3;

#[derive(Default)]
struct Tally<'a> {
    not_active: usize,
    selector: usize,
    selector_pairs: Vec<(&'a str, &'a str)>,
    cpu: usize,
    cpu_need: u64,
    cpu_most_free: u64,
    memory: usize,
    memory_need: u64,
    memory_most_free: u64,
    fit: usize,
}

/// Counts each candidate under its first failing filter and describes the counts.
pub(crate) fn summarize(spec: &WorkloadSpec, candidates: &[Candidate<'_>]) -> String {
    let mut t = Tally::default();
    for candidate in candidates {
        match feasible(spec, candidate) {
            Ok(()) => t.fit += 1,
            Err(Rejection::NotActive(_)) => t.not_active += 1,
            Err(Rejection::Selector { key, value }) => {
                t.selector += 1;
                if !t.selector_pairs.contains(&(key, value)) {
                    t.selector_pairs.push((key, value));
                }
            }
            Err(Rejection::Insufficient(Shortfall::Cpu { need, free })) => {
                t.cpu += 1;
                t.cpu_need = need;
                t.cpu_most_free = t.cpu_most_free.max(free);
            }
            Err(Rejection::Insufficient(Shortfall::Memory { need, free })) => {
                t.memory += 1;
                t.memory_need = need;
                t.memory_most_free = t.memory_most_free.max(free);
            }
        }
    }
    // Sorted so the text does not depend on the order the nodes came in.
    t.selector_pairs.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    if t.not_active > 0 {
        parts.push(format!("{} not Active", t.not_active));
    }
    if t.selector > 0 {
        let mut named = t
            .selector_pairs
            .iter()
            .take(MAX_SELECTORS_NAMED)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if t.selector_pairs.len() > MAX_SELECTORS_NAMED {
            named.push_str(", ...");
        }
        parts.push(format!("{} node selector mismatch ({named})", t.selector));
    }
    if t.cpu > 0 {
        parts.push(format!(
            "{} insufficient cpu (needs {}m, most free {}m)",
            t.cpu, t.cpu_need, t.cpu_most_free
        ));
    }
    if t.memory > 0 {
        parts.push(format!(
            "{} insufficient memory (needs {}MB, most free {}MB)",
            t.memory, t.memory_need, t.memory_most_free
        ));
    }
    let mut out = String::new();
    let _ = write!(out, "{}/{} nodes fit", t.fit, candidates.len());
    if !parts.is_empty() {
        out.push_str(": ");
        out.push_str(&parts.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::{node, spec};
    use crate::placement::Allocation;
    use persys_proto::NodeStatus;

    #[test]
    fn summary_counts_each_node_under_its_first_failing_filter() {
        let mut down = node("a", 8.0, 8192, &[("region", "eu")]);
        down.status = NodeStatus::Inactive;
        let us = node("b", 8.0, 8192, &[("region", "us")]);
        let small = node("c", 0.4, 8192, &[("region", "eu")]);
        let smaller = node("d", 0.2, 8192, &[("region", "eu")]);
        let candidates = [
            Candidate {
                node: &down,
                allocated: Allocation::default(),
            },
            Candidate {
                node: &us,
                allocated: Allocation::default(),
            },
            Candidate {
                node: &small,
                allocated: Allocation::default(),
            },
            Candidate {
                node: &smaller,
                allocated: Allocation::default(),
            },
        ];
        let s = spec(600, 0, &[("region", "eu")]);
        assert_eq!(
            summarize(&s, &candidates),
            "0/4 nodes fit: 1 not Active, 1 node selector mismatch (region=eu), \
             2 insufficient cpu (needs 600m, most free 400m)"
        );
    }

    #[test]
    fn summary_reports_memory_shortfall() {
        let n = node("a", 8.0, 1024, &[]);
        let candidates = [Candidate {
            node: &n,
            allocated: Allocation {
                cpu: 0,
                memory: 768,
                workloads: 2,
            },
        }];
        assert_eq!(
            summarize(&spec(0, 512, &[]), &candidates),
            "0/1 nodes fit: 1 insufficient memory (needs 512MB, most free 256MB)"
        );
    }
}
