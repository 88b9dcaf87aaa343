//! DNS records in etcd, in the format of CoreDNS's etcd plugin (skydns): the name
//! `<name>.<domain>` is the key `/skydns/<labels of the name, reversed>`, and every
//! record at or below that key answers for it. The scheduler writes them
//! (`persys_scheduler::dns`); `persys-dns` (and CoreDNS) serve them.

use crate::keys;
use serde::{Deserialize, Serialize};

/// The cluster domain when none is given (`--cluster-domain`, `--domain`).
pub const DEFAULT_DOMAIN: &str = "cluster.local.dev";

/// TTL of the records the scheduler writes, seconds.
pub const TTL: u32 = 30;

/// A skydns record value (CoreDNS etcd plugin format): an A (or AAAA) record of
/// `host`, and with `port` an SRV record too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The address.
    pub host: String,
    /// The port (SRV), when the record has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Time to live, seconds.
    #[serde(default)]
    pub ttl: u32,
}

/// The etcd key of `<name>.<domain>`: domain labels reversed under `/skydns/`.
/// `node_key("cluster.local.dev", "node-1")` is `/skydns/dev/local/cluster/node-1`.
pub fn node_key(domain: &str, name: &str) -> String {
    let mut key = zone_key(domain);
    key.push('/');
    key.push_str(name);
    key
}

/// The etcd key of a domain itself, without a trailing `/`:
/// `zone_key("cluster.local.dev")` is `/skydns/dev/local/cluster`. Labels are lower
/// case; empty labels (leading, trailing or doubled dots) are dropped.
pub fn zone_key(domain: &str) -> String {
    let mut key = keys::SKYDNS.trim_end_matches('/').to_string();
    for label in domain
        .trim_matches('.')
        .rsplit('.')
        .filter(|l| !l.is_empty())
    {
        key.push('/');
        key.push_str(&label.to_ascii_lowercase());
    }
    key
}

/// The fully qualified name of a node.
pub fn node_fqdn(domain: &str, name: &str) -> String {
    format!("{name}.{}", domain.trim_matches('.'))
}

/// The DNS name of an etcd key under `prefix` (the inverse of [`node_key`] for
/// `prefix` = [`keys::SKYDNS`]): `name_of_key("/skydns/", "/skydns/dev/local/cluster/node-1")`
/// is `node-1.cluster.local.dev`. Lower case, without a trailing dot. `None` for a
/// key outside `prefix`, with nothing after it, or with an empty label (`a//b`).
pub fn name_of_key(prefix: &str, key: &str) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.split('/').any(str::is_empty) {
        return None;
    }
    let labels: Vec<String> = rest.rsplit('/').map(|l| l.to_ascii_lowercase()).collect();
    Some(labels.join("."))
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
        assert_eq!(zone_key("cluster.local.dev"), "/skydns/dev/local/cluster");
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
        // CoreDNS records written by hand often leave the TTL out.
        let r: DnsRecord = serde_json::from_str(r#"{"host":"10.0.0.2","port":80}"#).expect("rec");
        assert_eq!((r.port, r.ttl), (Some(80), 0));
    }

    #[test]
    fn name_of_key_inverts_node_key() {
        for (domain, name) in [
            ("cluster.local.dev", "node-1"),
            ("example.org", "web"),
            ("a.b.c.d", "x-1"),
        ] {
            let key = node_key(domain, name);
            assert_eq!(
                name_of_key(keys::SKYDNS, &key),
                Some(node_fqdn(domain, name)),
                "{key}"
            );
        }
        // Entries below a name: one more label in front.
        assert_eq!(
            name_of_key("/skydns", "/skydns/dev/local/cluster/web/abc-8080").as_deref(),
            Some("abc-8080.web.cluster.local.dev")
        );
        assert_eq!(
            name_of_key("/skydns/", "/skydns/dev/Local/").as_deref(),
            Some("local.dev")
        );
    }

    #[test]
    fn name_of_key_refuses_what_is_not_a_name_under_the_prefix() {
        assert_eq!(name_of_key("/skydns/", "/workloads/x"), None);
        assert_eq!(name_of_key("/skydns/", "/skydns/"), None);
        assert_eq!(name_of_key("/skydns/", "/skydns"), None);
        assert_eq!(name_of_key("/skydns/", "/skydnsx/dev"), None);
        assert_eq!(name_of_key("/skydns/", "/skydns/dev//web"), None);
    }
}
