//! Builders for placement tests.

use persys_proto::{Node, NodeStatus, Resources, RestartPolicy, WorkloadSpec, WorkloadType};
use std::collections::BTreeMap;

/// An Active node with this capacity (cores, MB) and labels.
pub(crate) fn node(id: &str, cores: f64, memory_mb: u64, labels: &[(&str, &str)]) -> Node {
    Node {
        node_id: id.to_owned(),
        hostname: id.to_owned(),
        ip_address: "127.0.0.1".into(),
        agent_port: 8080,
        os_name: String::new(),
        kernel_version: String::new(),
        status: NodeStatus::Active,
        total_cpu: cores,
        total_memory: memory_mb,
        available_cpu: cores,
        available_memory: memory_mb,
        allocated_cpu: 0,
        allocated_memory: 0,
        labels: pairs(labels),
        domain_name: String::new(),
        last_heartbeat: None,
        registered_at: chrono::DateTime::UNIX_EPOCH,
        cert_serial: None,
    }
}

/// A workload requesting `cpu` millicores and `memory` MB, with a node selector.
pub(crate) fn spec(cpu: u64, memory: u64, selector: &[(&str, &str)]) -> WorkloadSpec {
    WorkloadSpec {
        name: "w".into(),
        kind: WorkloadType::DockerContainer,
        image: "busybox:local".into(),
        command: None,
        env_vars: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
        network: None,
        restart_policy: RestartPolicy::No,
        resources: Resources { cpu, memory },
        labels: BTreeMap::new(),
        node_selector: pairs(selector),
        ..Default::default()
    }
}

fn pairs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
