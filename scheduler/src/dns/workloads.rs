//! The skydns records one workload should have. Pure.
//!
//! A workload that serves (runs, and is healthy when it has a health check) on a node
//! with an address has `<name>.<domain>` → the node's address. A replica of a service
//! also has `<service>.<domain>`: one entry per published host port (A and SRV), or
//! one address-only entry when it publishes none. Entries sit under the name, one key
//! per workload (`.../<name>/<workload id>`), so names shared by several workloads
//! answer all of them, and a workload's entries go with it.

use super::{node_key, DnsRecord, TTL};
use crate::services::replicas::serving;
use persys_proto::ports::PortMapping;
use persys_proto::{DesiredState, Node, Workload};

/// `(etcd key, record)` pairs `w` should have, given its node.
pub fn records_of(domain: &str, w: &Workload, node: Option<&Node>) -> Vec<(String, DnsRecord)> {
    let Some(node) = node.filter(|n| !n.ip_address.is_empty()) else {
        return Vec::new();
    };
    if w.desired_state != DesiredState::Running || serving(w).is_none() {
        return Vec::new();
    }
    entries(domain, w, &node.ip_address)
}

/// The keys `w` has when it serves (a spec never changes, so these are also the keys
/// to remove once it stops).
pub fn keys_of(domain: &str, w: &Workload) -> Vec<String> {
    entries(domain, w, "").into_iter().map(|(k, _)| k).collect()
}

fn entries(domain: &str, w: &Workload, host: &str) -> Vec<(String, DnsRecord)> {
    let host = host.to_string();
    let mut out = vec![(
        format!("{}/{}", node_key(domain, &dns_label(&w.spec.name)), w.id),
        DnsRecord {
            host: host.clone(),
            port: None,
            ttl: TTL,
        },
    )];
    if let Some(service) = &w.service_id {
        let base = node_key(domain, service);
        let ports: Vec<u16> = w
            .spec
            .ports
            .iter()
            .filter_map(|p| PortMapping::parse(p).ok())
            .filter_map(|p| p.host_port)
            .collect();
        if ports.is_empty() {
            out.push((
                format!("{base}/{}", w.id),
                DnsRecord {
                    host,
                    port: None,
                    ttl: TTL,
                },
            ));
        } else {
            for port in ports {
                out.push((
                    format!("{base}/{}-{port}", w.id),
                    DnsRecord {
                        host: host.clone(),
                        port: Some(port),
                        ttl: TTL,
                    },
                ));
            }
        }
    }
    out
}

/// A workload name as a DNS label: lower case, anything else than letters, digits and
/// '-' made '-'.
pub fn dns_label(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::{Health, WorkloadRequest, WorkloadStatus};

    fn node() -> Node {
        serde_json::from_value(serde_json::json!({
            "nodeId": "n1", "hostname": "h", "ipAddress": "10.0.0.7", "agentPort": 8080,
            "status": "Active", "totalCpu": 2.0, "totalMemory": 2048, "availableCpu": 2.0,
            "availableMemory": 2048, "allocatedCpu": 0, "allocatedMemory": 0,
            "registeredAt": "2026-01-01T00:00:00Z", "lastHeartbeat": "2026-01-01T00:00:00Z"
        }))
        .expect("node")
    }

    fn replica(ports: &[&str], health_check: bool, health: Option<Health>) -> Workload {
        let mut req: WorkloadRequest = serde_json::from_value(serde_json::json!({
            "name": "web_0", "image": "busybox:local",
            "ports": ports,
        }))
        .expect("request");
        if health_check {
            req.health_check =
                serde_json::from_value(serde_json::json!({"tcp": {"port": 80}})).ok();
        }
        let mut w = Workload::new(
            "w1".into(),
            req.validate().expect("valid"),
            chrono::Utc::now(),
        );
        w.status = WorkloadStatus::Running;
        w.node_id = Some("n1".into());
        w.service_id = Some("web".into());
        w.health = health;
        w
    }

    #[test]
    fn a_serving_replica_has_its_name_and_its_service_with_each_port() {
        let w = replica(&["8080:80", "127.0.0.1:9090:90/udp", "443"], false, None);
        let got = records_of("cluster.local", &w, Some(&node()));
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/skydns/local/cluster/web-0/w1",
                "/skydns/local/cluster/web/w1-8080",
                "/skydns/local/cluster/web/w1-9090",
            ]
        );
        assert!(got.iter().all(|(_, r)| r.host == "10.0.0.7"));
        let keys: Vec<String> = got.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys_of("cluster.local", &w),
            keys,
            "the keys to remove are the same"
        );
        assert_eq!(got[1].1.port, Some(8080));
    }

    #[test]
    fn an_unhealthy_or_stopped_workload_has_none() {
        let n = node();
        assert!(records_of("d", &replica(&[], true, Some(Health::Unhealthy)), Some(&n)).is_empty());
        assert!(records_of("d", &replica(&[], true, Some(Health::Starting)), Some(&n)).is_empty());
        assert_eq!(
            records_of("d", &replica(&[], true, Some(Health::Healthy)), Some(&n)).len(),
            2
        );
        let mut stopped = replica(&[], false, None);
        stopped.status = WorkloadStatus::Exited;
        assert!(records_of("d", &stopped, Some(&n)).is_empty());
        assert!(records_of("d", &replica(&[], false, None), None).is_empty());
    }
}
