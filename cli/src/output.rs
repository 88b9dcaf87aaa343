//! What the CLI prints: aligned tables and descriptions for people, pure JSON on
//! stdout for scripts (`-o json`).

use chrono::{DateTime, Utc};
use persys_proto::{Node, Workload};
use std::collections::BTreeMap;
use std::io::Write;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns or `key: value` lines, for people.
    #[default]
    Table,
    /// The server's JSON, pretty-printed, nothing else on stdout.
    Json,
}

/// Gap between table columns.
const GAP: &str = "   ";

/// Render rows under headers, each column as wide as its widest cell. The last
/// column is not padded, so lines carry no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str(GAP);
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A short age: `42s`, `5m`, `3h`, `2d`. Times in the future (clock skew) are `0s`.
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Columns of `workload list`.
pub const WORKLOAD_HEADERS: [&str; 6] = ["ID", "NAME", "IMAGE", "STATUS", "NODE", "AGE"];

/// One `workload list` row per workload.
pub fn workload_rows(workloads: &[Workload], now: DateTime<Utc>) -> Vec<Vec<String>> {
    workloads
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.spec.name.clone(),
                w.spec.image.clone(),
                w.status.to_string(),
                w.node_id.clone().unwrap_or_else(|| "-".into()),
                age(now, w.created_at),
            ]
        })
        .collect()
}

/// Columns of `node list`.
pub const NODE_HEADERS: [&str; 7] = [
    "NODE",
    "STATUS",
    "ADDRESS",
    "CPU",
    "MEMORY",
    "LABELS",
    "HEARTBEAT",
];

/// One `node list` row per node. CPU is allocated/total cores, memory allocated/total MB,
/// heartbeat the age of the last one.
pub fn node_rows(nodes: &[Node], now: DateTime<Utc>) -> Vec<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.clone(),
                n.status.to_string(),
                format!("{}:{}", n.ip_address, n.agent_port),
                format!(
                    "{}/{}",
                    cores(n.allocated_cpu as f64 / 1000.0),
                    cores(n.total_cpu)
                ),
                format!("{}/{}MB", n.allocated_memory, n.total_memory),
                labels(&n.labels),
                n.last_heartbeat
                    .map(|t| format!("{} ago", age(now, t)))
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect()
}

/// Cores with at most two decimals and no trailing zeros: `4`, `0.25`, `1.5`.
fn cores(c: f64) -> String {
    let s = format!("{c:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `k=v,k=v`, or `-` when empty.
pub fn labels(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `workload get` for people: one `Key: value` line per field that has a value.
pub fn describe_workload(w: &Workload, now: DateTime<Utc>) -> String {
    let s = &w.spec;
    let mut lines: Vec<(&str, String)> = vec![
        ("ID", w.id.clone()),
        ("Name", s.name.clone()),
        ("Type", s.kind.as_str().into()),
        ("Image", s.image.clone()),
    ];
    if let Some(c) = &s.command {
        let shown = match c {
            persys_proto::Command::Shell(sh) => format!("{sh} (shell form)"),
            persys_proto::Command::Exec(v) => format!("{v:?} (exec form)"),
        };
        lines.push(("Command", shown));
    }
    lines.push(("Status", w.status.to_string()));
    if let Some(r) = w.status_reason.as_deref().filter(|r| !r.is_empty()) {
        lines.push(("Reason", r.to_string()));
    }
    if let Some(code) = w.exit_code {
        lines.push(("Exit code", code.to_string()));
    }
    lines.push(("Desired", w.desired_state.to_string()));
    lines.push(("Node", w.node_id.clone().unwrap_or_else(|| "-".into())));
    lines.push(("Generation", w.generation.to_string()));
    lines.push(("Restarts", w.restart_count.to_string()));
    lines.push(("Restart", s.restart_policy.as_str().into()));
    if s.resources.cpu > 0 || s.resources.memory > 0 {
        lines.push((
            "Resources",
            format!("cpu {}m, memory {}MB", s.resources.cpu, s.resources.memory),
        ));
    }
    for (key, list) in [("Ports", &s.ports), ("Volumes", &s.volumes)] {
        if !list.is_empty() {
            lines.push((key, list.join(", ")));
        }
    }
    if let Some(n) = &s.network {
        lines.push(("Network", n.clone()));
    }
    for (key, map) in [
        ("Env", &s.env_vars),
        ("Labels", &s.labels),
        ("Node selector", &s.node_selector),
    ] {
        if !map.is_empty() {
            lines.push((key, labels(map)));
        }
    }
    if let Some(c) = &w.container_id {
        lines.push(("Container", c.clone()));
    }
    lines.push((
        "Created",
        format!(
            "{} ({} ago)",
            w.created_at.to_rfc3339(),
            age(now, w.created_at)
        ),
    ));
    lines.push(("Updated", w.updated_at.to_rfc3339()));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .into_iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// Print JSON, pretty, followed by a newline. Write errors (a closed pipe) are ignored:
/// the reader is gone and has nobody to tell.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_text(&format!("{text}\n"));
}

/// Print text to stdout, ignoring a closed pipe (`persys workload list | head -1`).
pub fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Print a line to stderr (progress, errors), ignoring a closed stderr: unlike
/// `eprintln!`, which panics then.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use persys_proto::{NodeStatus, WorkloadRequest, WorkloadStatus};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    fn workload(id: &str, name: &str, status: WorkloadStatus, node: Option<&str>) -> Workload {
        let spec = WorkloadRequest {
            name: name.into(),
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let mut w = Workload::new(id.into(), spec, t(0));
        w.status = status;
        w.node_id = node.map(Into::into);
        w
    }

    #[test]
    fn table_aligns_columns_to_the_widest_cell() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "web".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(out, "ID        NAME\na         web\nlong-id   x\n");
    }

    #[test]
    fn table_lines_have_no_trailing_spaces() {
        let out = table(&["A", "B"], &[vec!["1".into(), String::new()]]);
        assert!(out.lines().all(|l| !l.ends_with(' ')), "{out:?}");
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(
            table(&WORKLOAD_HEADERS, &[]),
            "ID   NAME   IMAGE   STATUS   NODE   AGE\n"
        );
    }

    #[test]
    fn age_picks_the_largest_readable_unit() {
        assert_eq!(age(t(42), t(0)), "42s");
        assert_eq!(age(t(300), t(0)), "5m");
        assert_eq!(age(t(3 * 3600), t(0)), "3h");
        assert_eq!(age(t(3 * 86400), t(0)), "3d");
        assert_eq!(age(t(0), t(10)), "0s");
    }

    #[test]
    fn workload_rows_show_pending_without_node_as_dash() {
        let rows = workload_rows(
            &[
                workload("id-1", "web", WorkloadStatus::Running, Some("node-1")),
                workload("id-2", "big", WorkloadStatus::Pending, None),
            ],
            t(65),
        );
        assert_eq!(
            rows[0],
            ["id-1", "web", "busybox:local", "Running", "node-1", "65s"]
        );
        assert_eq!(rows[1][4], "-");
        assert_eq!(rows[1][3], "Pending");
    }

    #[test]
    fn node_rows_show_allocation_over_capacity_and_heartbeat_age() {
        let node = Node {
            node_id: "node-1".into(),
            hostname: "h".into(),
            ip_address: "127.0.0.1".into(),
            agent_port: 8080,
            os_name: String::new(),
            kernel_version: String::new(),
            status: NodeStatus::Active,
            total_cpu: 4.0,
            total_memory: 8000,
            available_cpu: 3.0,
            available_memory: 7000,
            allocated_cpu: 250,
            allocated_memory: 64,
            labels: [("zone".to_string(), "a".to_string())].into(),
            domain_name: String::new(),
            last_heartbeat: Some(t(0)),
            registered_at: t(0),
        };
        let rows = node_rows(&[node], t(2));
        assert_eq!(
            rows[0],
            [
                "node-1",
                "Active",
                "127.0.0.1:8080",
                "0.25/4",
                "64/8000MB",
                "zone=a",
                "2s ago"
            ]
        );
    }

    #[test]
    fn describe_shows_reason_and_exit_code_of_a_failure() {
        let mut w = workload("id-3", "job", WorkloadStatus::Failed, Some("node-2"));
        w.exit_code = Some(3);
        w.status_reason = Some("exited with code 3".into());
        let text = describe_workload(&w, t(10));
        assert!(text.contains("Status:"), "{text}");
        assert!(text.contains("Exit code:"), "{text}");
        assert!(text.lines().any(|l| l.ends_with(" 3")), "{text}");
        assert!(text.contains("exited with code 3"), "{text}");
    }
}
