//! `persys metrics` for people: capacity, allocation and workload counts.

use super::table::{cores, key_values, table};
use persys_proto::ClusterMetrics;
use std::collections::BTreeMap;

/// A percentage of `part` in `whole`, `-` when there is no whole.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{}%", (part as f64 * 100.0 / whole as f64).round())
    }
}

/// The summary: node counts by status, CPU and memory allocated of the total, workload
/// counts by status (statuses with no workload left out).
pub fn metrics_summary(m: &ClusterMetrics) -> String {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for n in &m.nodes {
        *by_status.entry(n.status.to_string()).or_default() += 1;
    }
    let node_counts = by_status
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = key_values(&[
        (
            "Nodes",
            if m.nodes.is_empty() {
                "0".into()
            } else {
                format!("{} ({node_counts})", m.nodes.len())
            },
        ),
        (
            "CPU",
            format!(
                "{} of {} cores allocated ({})",
                cores(m.allocated_cpu_millis as f64 / 1000.0),
                cores(m.total_cpu_millis as f64 / 1000.0),
                percent(m.allocated_cpu_millis, m.total_cpu_millis)
            ),
        ),
        (
            "Memory",
            format!(
                "{} of {} MB allocated ({})",
                m.allocated_memory_mb,
                m.total_memory_mb,
                percent(m.allocated_memory_mb, m.total_memory_mb)
            ),
        ),
        ("Workloads", m.total_workloads.to_string()),
    ]);
    let rows: Vec<Vec<String>> = m
        .workloads_by_status
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| vec![s.clone(), n.to_string()])
        .collect();
    if !rows.is_empty() {
        text.push('\n');
        text.push_str(&table(&["STATUS", "WORKLOADS"], &rows));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use persys_proto::NodeStatus;

    #[test]
    fn summary_shows_allocation_percentages_and_non_zero_counts() {
        let now = Utc::now();
        let m = ClusterMetrics {
            nodes: vec![
                crate::output::node::tests::node("node-1", NodeStatus::Active, now),
                crate::output::node::tests::node("node-2", NodeStatus::Cordoned, now),
            ],
            workloads_by_status: [
                ("Running".to_string(), 3),
                ("Pending".to_string(), 1),
                ("Failed".to_string(), 0),
            ]
            .into(),
            total_workloads: 4,
            total_cpu_millis: 8000,
            total_memory_mb: 16000,
            allocated_cpu_millis: 500,
            allocated_memory_mb: 128,
        };
        let text = metrics_summary(&m);
        assert!(
            text.contains("Nodes:     2 (1 Active, 1 Cordoned)"),
            "{text}"
        );
        assert!(
            text.contains("CPU:       0.5 of 8 cores allocated (6%)"),
            "{text}"
        );
        assert!(
            text.contains("Memory:    128 of 16000 MB allocated (1%)"),
            "{text}"
        );
        assert!(text.contains("Workloads: 4"), "{text}");
        assert!(text.contains("Running   3"), "{text}");
        assert!(!text.contains("Failed"), "{text}");
    }

    #[test]
    fn empty_cluster_has_no_percentages() {
        let text = metrics_summary(&ClusterMetrics::default());
        assert!(text.contains("Nodes:     0"), "{text}");
        assert!(text.contains("(-)"), "{text}");
        assert!(!text.contains("STATUS"), "{text}");
    }
}
