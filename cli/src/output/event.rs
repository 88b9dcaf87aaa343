//! `persys events` for people: one aligned line per event.

use super::table::{paint, status_colour};
use chrono::{DateTime, SecondsFormat, Utc};
use persys_proto::ClusterEvent;

/// Header of the event lines (fixed widths, since lines are printed as they come).
pub fn event_header() -> String {
    line_of(
        "TIME",
        &[
            "KIND".into(),
            "NAME".into(),
            "STATUS".into(),
            "DETAIL".into(),
        ],
        false,
    )
}

/// The cells of one event: kind, name (`name/short id` for workloads), status, detail.
/// `name_of` gives the name of a deleted workload, whose event carries only its id.
pub fn event_cells(ev: &ClusterEvent, name_of: &dyn Fn(&str) -> Option<String>) -> [String; 4] {
    match ev {
        ClusterEvent::Workload { workload: w } => {
            let mut detail = match &w.node_id {
                Some(n) => format!("node {n}, generation {}", w.generation),
                None => "not placed".to_string(),
            };
            if let Some(r) = super::workload::reason(w) {
                detail.push_str("; ");
                detail.push_str(&r);
            }
            [
                "workload".into(),
                format!("{}/{}", w.spec.name, short_id(&w.id)),
                w.status.to_string(),
                detail,
            ]
        }
        ClusterEvent::WorkloadDeleted { id } => [
            "workload".into(),
            match name_of(id) {
                Some(name) => format!("{name}/{}", short_id(id)),
                None => short_id(id).to_string(),
            },
            "Deleted".into(),
            String::new(),
        ],
        ClusterEvent::Node { node: n } => [
            "node".into(),
            n.node_id.clone(),
            n.status.to_string(),
            format!("{}:{}", n.ip_address, n.agent_port),
        ],
    }
}

/// One event line: receive time, then the cells, the status coloured if asked.
pub fn event_line(at: DateTime<Utc>, cells: &[String; 4], colour: bool) -> String {
    line_of(
        &at.to_rfc3339_opts(SecondsFormat::Secs, true),
        cells,
        colour,
    )
}

fn line_of(time: &str, [kind, name, status, detail]: &[String; 4], colour: bool) -> String {
    // Widths fit the longest kind and status names; long names just push the line.
    let status_cell = format!("{status:<17}");
    let status_cell = match status_colour(status).filter(|_| colour) {
        Some(c) => status_cell.replacen(status.as_str(), &paint(c, status), 1),
        None => status_cell,
    };
    let line = format!("{time:<20}   {kind:<8}   {name:<30}   {status_cell}   {detail}");
    line.trim_end().to_string()
}

/// The first 8 characters of an id (a UUID's first group).
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use persys_proto::{NodeStatus, WorkloadStatus};

    fn t() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0)
            .single()
            .expect("valid time")
    }

    fn no_names(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn workload_event_shows_name_short_id_status_and_node() {
        let mut w = crate::output::workload::tests::workload(
            "0b3e4c1a-1111-4222-8333-444455556666",
            "web",
            WorkloadStatus::Running,
            Some("node-1"),
        );
        w.generation = 2;
        let ev = ClusterEvent::Workload {
            workload: std::sync::Arc::new(w),
        };
        let cells = event_cells(&ev, &no_names);
        assert_eq!(
            cells,
            [
                "workload",
                "web/0b3e4c1a",
                "Running",
                "node node-1, generation 2"
            ]
        );
        let line = event_line(t(), &cells, false);
        assert!(
            line.starts_with("2023-11-14T22:13:20Z   workload   web/0b3e4c1a "),
            "{line}"
        );
        assert!(
            line.ends_with("Running             node node-1, generation 2"),
            "{line}"
        );
    }

    #[test]
    fn deleted_workload_is_named_from_what_was_seen_before() {
        let ev = ClusterEvent::WorkloadDeleted {
            id: "0b3e4c1a-1111-4222-8333-444455556666".into(),
        };
        let named = event_cells(&ev, &|_| Some("web".into()));
        assert_eq!(named[1], "web/0b3e4c1a");
        assert_eq!(named[2], "Deleted");
        assert_eq!(event_cells(&ev, &no_names)[1], "0b3e4c1a");
    }

    #[test]
    fn node_event_shows_status_and_address() {
        let ev = ClusterEvent::Node {
            node: std::sync::Arc::new(crate::output::node::tests::node(
                "node-2",
                NodeStatus::Inactive,
                t(),
            )),
        };
        assert_eq!(
            event_cells(&ev, &no_names),
            ["node", "node-2", "Inactive", "127.0.0.1:8080"]
        );
    }

    #[test]
    fn coloured_status_keeps_the_detail_column_in_place() {
        let cells: [String; 4] = ["node".into(), "n".into(), "Active".into(), "d".into()];
        let plain = event_line(t(), &cells, false);
        let coloured = event_line(t(), &cells, true);
        assert_eq!(crate::dev::child::strip_ansi(&coloured), plain);
        assert!(coloured.contains("\x1b[32mActive\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn header_has_the_same_columns() {
        let h = event_header();
        assert!(
            h.starts_with("TIME                   KIND       NAME"),
            "{h}"
        );
        assert!(h.ends_with("STATUS              DETAIL"), "{h}");
    }
}
