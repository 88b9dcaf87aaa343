//! CoreDNS (skydns) records: `/skydns/<reversed domain labels>/<name>` for nodes, and
//! for workloads and services ([`workloads`]: what each workload should have,
//! [`controller`]: the leader loop that keeps etcd so).

pub mod controller;
pub mod workloads;

use persys_proto::keys;
use serde::{Deserialize, Serialize};

/// TTL of node records, seconds.
pub const TTL: u32 = 30;

/// A skydns record value (CoreDNS etcd plugin format): an A record of `host`, and with
/// `port` an SRV record too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The address.
    pub host: String,
    /// The port (SRV), when the record has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Time to live, seconds.
    pub ttl: u32,
}

/// The etcd key of `<name>.<domain>`: domain labels reversed under `/skydns/`.
/// `node_key("cluster.local.dev", "node-1")` is `/skydns/dev/local/cluster/node-1`.
pub fn node_key(domain: &str, name: &str) -> String {
    let mut key = keys::SKYDNS.trim_end_matches('/').to_string();
    for label in domain
        .trim_matches('.')
        .rsplit('.')
        .filter(|l| !l.is_empty())
    {
        key.push('/');
        key.push_str(&label.to_ascii_lowercase());
    }
    key.push('/');
    key.push_str(name);
    key
}

/// The fully qualified name of a node.
pub fn node_fqdn(domain: &str, name: &str) -> String {
    format!("{name}.{}", domain.trim_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_reverses_domain_labels() {
        assert_eq!(
            node_key("cluster.local.dev", "node-1"),
            "/skydns/dev/local/cluster/node-1"
        );
    }

    #[test]
    fn trailing_dots_and_case_are_normalised() {
        assert_eq!(node_key(".Cluster.Local.", "n"), "/skydns/local/cluster/n");
    }

    #[test]
    fn fqdn_joins_name_and_domain() {
        assert_eq!(
            node_fqdn("cluster.local.dev.", "node-1"),
            "node-1.cluster.local.dev"
        );
    }

    #[test]
    fn record_is_coredns_json() {
        let v = serde_json::to_value(DnsRecord {
            host: "10.0.0.1".into(),
            port: None,
            ttl: TTL,
        })
        .expect("json");
        assert_eq!(v, serde_json::json!({"host": "10.0.0.1", "ttl": 30}));
    }
}
