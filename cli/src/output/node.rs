//! How nodes look to people.

use super::table::{age, cores, key_values, labels, table};
use chrono::{DateTime, Utc};
use persys_proto::Node;

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

/// Index of the STATUS column of the node table.
pub const NODE_STATUS_COLUMN: usize = 1;

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

/// `node get` for people: the list row, then the details.
pub fn describe_node(node: &Node, now: DateTime<Utc>) -> String {
    let rows = node_rows(std::slice::from_ref(node), now);
    let mut text = table(&NODE_HEADERS, &rows);
    text.push('\n');
    text.push_str(&key_values(&[
        ("hostname", node.hostname.clone()),
        (
            "os",
            format!("{} {}", node.os_name, node.kernel_version)
                .trim()
                .to_string(),
        ),
        ("dns", node.domain_name.clone()),
        (
            "free",
            format!(
                "{} cores, {}MB",
                cores(node.available_cpu),
                node.available_memory
            ),
        ),
        (
            "registered",
            format!(
                "{} ({} ago)",
                node.registered_at.to_rfc3339(),
                age(now, node.registered_at)
            ),
        ),
    ]));
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use persys_proto::NodeStatus;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    /// A node with 4 cores and 8000 MB, 0.25 cores and 64 MB allocated.
    pub(crate) fn node(id: &str, status: NodeStatus, heartbeat: DateTime<Utc>) -> Node {
        Node {
            node_id: id.into(),
            hostname: "h".into(),
            ip_address: "127.0.0.1".into(),
            agent_port: 8080,
            os_name: "linux".into(),
            kernel_version: "6.1".into(),
            status,
            total_cpu: 4.0,
            total_memory: 8000,
            available_cpu: 3.0,
            available_memory: 7000,
            allocated_cpu: 250,
            allocated_memory: 64,
            labels: [("zone".to_string(), "a".to_string())].into(),
            domain_name: format!("{id}.cluster.local.dev"),
            last_heartbeat: Some(heartbeat),
            registered_at: heartbeat,
            cert_serial: None,
        }
    }

    #[test]
    fn node_rows_show_allocation_over_capacity_and_heartbeat_age() {
        let rows = node_rows(&[node("node-1", NodeStatus::Active, t(0))], t(2));
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
    fn describe_node_adds_host_dns_and_free_resources() {
        let text = describe_node(&node("node-1", NodeStatus::Active, t(0)), t(5));
        assert!(text.starts_with("NODE "), "{text}");
        assert!(
            text.contains("dns:        node-1.cluster.local.dev"),
            "{text}"
        );
        assert!(text.contains("free:       3 cores, 7000MB"), "{text}");
        assert!(text.contains("os:         linux 6.1"), "{text}");
    }
}
