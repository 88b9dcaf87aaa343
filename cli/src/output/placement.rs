//! How a placement explanation (`persys why`) looks to people: a line about the
//! workload, one row per node, then the winner or what would make it fit.

use super::table::{table_styled, Colour};
use persys_proto::{NodeVerdict, PlacementExplanation};

/// Columns of `persys why`.
pub const PLACEMENT_HEADERS: [&str; 4] = ["NODE", "VERDICT", "FILTER/REASON", "SCORE"];

/// Columns of `persys why -o wide`: the allocation figures too.
pub const PLACEMENT_WIDE_HEADERS: [&str; 7] = [
    "NODE",
    "VERDICT",
    "FILTER/REASON",
    "SCORE",
    "ALLOCATED",
    "FREE",
    "WORKLOADS",
];

/// Index of the VERDICT column in both tables.
const VERDICT_COLUMN: usize = 1;

/// `resources: needs 600m CPU, 400m free`, or `-` for a node no filter rejected.
fn filter_reason(n: &NodeVerdict) -> String {
    match (&n.filter, &n.reason) {
        (Some(f), Some(r)) => format!("{f}: {r}"),
        (Some(f), None) => f.to_string(),
        (None, Some(r)) => r.clone(),
        (None, None) => "-".into(),
    }
}

fn score(n: &NodeVerdict) -> String {
    n.score.map_or_else(|| "-".into(), |s| format!("{s:.3}"))
}

/// One row per node, in the answer's order (by node id).
pub fn placement_rows(e: &PlacementExplanation, wide: bool) -> Vec<Vec<String>> {
    e.nodes
        .iter()
        .map(|n| {
            let mut row = vec![
                n.node_id.clone(),
                n.verdict.to_string(),
                filter_reason(n),
                score(n),
            ];
            if wide {
                row.push(format!("{}m/{}MB", n.allocated_cpu, n.allocated_memory));
                row.push(format!("{}m/{}MB", n.available_cpu, n.available_memory));
                row.push(n.workloads.to_string());
            }
            row
        })
        .collect()
}

/// `500m CPU and 64MB memory`, or `no resources`.
fn request(e: &PlacementExplanation) -> String {
    let mut parts = Vec::new();
    if e.request.cpu > 0 {
        parts.push(format!("{}m CPU", e.request.cpu));
    }
    if e.request.memory > 0 {
        parts.push(format!("{}MB memory", e.request.memory));
    }
    if parts.is_empty() {
        "no resources".into()
    } else {
        parts.join(" and ")
    }
}

/// The first line: which workload, its status and node, what it asks for.
fn heading(e: &PlacementExplanation) -> String {
    let name = if e.name.is_empty() {
        e.workload_id.clone()
    } else {
        format!("{} ({})", e.name, e.workload_id)
    };
    let place = match &e.node_id {
        Some(node) => format!("{} on {node}", e.status),
        None => e.status.to_string(),
    };
    let mut line = format!("workload {name}: {place}; requests {}", request(e));
    if !e.node_selector.is_empty() {
        let selector: Vec<String> = e
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!("; node selector {}", selector.join(",")));
    }
    line.push_str(&format!("; strategy {}", e.strategy));
    line
}

/// The last line: the winner (and its score), or the hint.
fn outcome(e: &PlacementExplanation) -> String {
    match &e.winner {
        Some(winner) => {
            let score = e
                .nodes
                .iter()
                .find(|n| &n.node_id == winner)
                .and_then(|n| n.score)
                .map(|s| format!(" (score {s:.3})"))
                .unwrap_or_default();
            let mut line = format!("winner: {winner}{score}");
            if let Some(current) = e.node_id.as_ref().filter(|c| *c != winner) {
                line.push_str(&format!(
                    "; it runs on {current}, and moves only when redeployed or its node \
                     is drained or lost"
                ));
            }
            line
        }
        None => format!(
            "no node fits: {}",
            e.hint.as_deref().unwrap_or("no node passes every filter")
        ),
    }
}

fn verdict_colour(cell: &str) -> Option<Colour> {
    match cell {
        "winner" => Some(Colour::Green),
        "rejected" => Some(Colour::Red),
        _ => None,
    }
}

/// The whole text of `persys why`.
pub fn explain_placement(e: &PlacementExplanation, wide: bool, colour: bool) -> String {
    let mut text = heading(e);
    text.push_str("\n\n");
    if e.nodes.is_empty() {
        text.push_str("no nodes are registered\n");
    } else {
        let rows = placement_rows(e, wide);
        let headers: &[&str] = if wide {
            &PLACEMENT_WIDE_HEADERS
        } else {
            &PLACEMENT_HEADERS
        };
        text.push_str(&table_styled(headers, &rows, &|col, cell| {
            (colour && col == VERDICT_COLUMN)
                .then(|| verdict_colour(cell))
                .flatten()
        }));
    }
    text.push('\n');
    text.push_str(&outcome(e));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::{PlacementFilter, Resources, Verdict, WorkloadStatus};

    fn node(id: &str, verdict: Verdict) -> NodeVerdict {
        NodeVerdict {
            node_id: id.into(),
            verdict,
            filter: None,
            reason: None,
            score: None,
            allocated_cpu: 800,
            allocated_memory: 64,
            available_cpu: 200,
            available_memory: 960,
            workloads: 1,
        }
    }

    fn explanation(nodes: Vec<NodeVerdict>) -> PlacementExplanation {
        PlacementExplanation {
            workload_id: "w-1".into(),
            name: "web".into(),
            status: WorkloadStatus::Pending,
            node_id: None,
            strategy: "spread".into(),
            request: Resources {
                cpu: 500,
                memory: 0,
            },
            node_selector: [("zone".to_string(), "eu".to_string())].into(),
            nodes,
            winner: None,
            hint: None,
        }
    }

    #[test]
    fn pending_shows_each_rejection_then_the_hint() {
        let mut eu = node("eu-1", Verdict::Rejected);
        eu.filter = Some(PlacementFilter::Resources);
        eu.reason = Some("needs 500m CPU, 200m free".into());
        let mut us = node("us-1", Verdict::Rejected);
        us.filter = Some(PlacementFilter::NodeSelector);
        us.reason = Some("lacks label zone=eu".into());
        let mut e = explanation(vec![eu, us]);
        e.hint = Some("needs 300m more CPU on node eu-1".into());
        let text = explain_placement(&e, false, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "workload web (w-1): Pending; requests 500m CPU; node selector zone=eu; strategy spread"
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["NODE", "VERDICT", "FILTER/REASON", "SCORE"]
        );
        assert!(lines[3].starts_with("eu-1"), "{text}");
        assert!(
            lines[3].contains("rejected   resources: needs 500m CPU, 200m free"),
            "{text}"
        );
        assert!(lines[3].trim_end().ends_with('-'), "no score: {text}");
        assert!(
            lines[4].contains("nodeSelector: lacks label zone=eu"),
            "{text}"
        );
        assert_eq!(
            lines.last().copied(),
            Some("no node fits: needs 300m more CPU on node eu-1")
        );
    }

    #[test]
    fn a_placed_workload_shows_scores_and_the_winner() {
        let mut a = node("a", Verdict::Winner);
        a.score = Some(0.75);
        let mut b = node("b", Verdict::Eligible);
        b.score = Some(0.5);
        let mut e = explanation(vec![a, b]);
        e.status = WorkloadStatus::Running;
        e.node_id = Some("a".into());
        e.winner = Some("a".into());
        let text = explain_placement(&e, false, false);
        assert!(
            text.starts_with("workload web (w-1): Running on a;"),
            "{text}"
        );
        let row_b = text.lines().find(|l| l.starts_with("b ")).expect("row b");
        assert_eq!(
            row_b.split_whitespace().collect::<Vec<_>>(),
            ["b", "eligible", "-", "0.500"]
        );
        assert_eq!(text.lines().last(), Some("winner: a (score 0.750)"));
        // Elsewhere now: said so.
        e.winner = Some("b".into());
        assert!(explain_placement(&e, false, false).contains("it runs on a"));
    }

    #[test]
    fn wide_adds_allocation_figures_and_colour_marks_verdicts() {
        let mut a = node("a", Verdict::Winner);
        a.score = Some(1.0);
        let mut e = explanation(vec![a]);
        e.winner = Some("a".into());
        let text = explain_placement(&e, true, false);
        let row = text.lines().find(|l| l.starts_with("a ")).expect("row");
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["a", "winner", "-", "1.000", "800m/64MB", "200m/960MB", "1"]
        );
        assert!(explain_placement(&e, false, true).contains("\x1b[32mwinner"));
    }
}
