//! Filters and pages of the cached lists, and the opaque `continue` tokens that carry
//! a listing from one page to the next (kube-style: the token names where the previous
//! page ended, so paging is complete and without duplicates while records come and go).

use super::index::OrderKey;
use chrono::{DateTime, Utc};
use persys_proto::{Node, Workload, WorkloadStatus};
use std::sync::Arc;

/// Which workloads a list wants.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkloadFilter {
    /// Only this status.
    pub status: Option<WorkloadStatus>,
    /// Only workloads placed on this node.
    pub node: Option<String>,
    /// Only workloads with this label.
    pub label: Option<(String, String)>,
}

impl WorkloadFilter {
    /// Whether `w` passes.
    pub fn matches(&self, w: &Workload) -> bool {
        let status_ok = self.status.is_none_or(|s| s == w.status);
        let node_ok = self
            .node
            .as_ref()
            .is_none_or(|n| w.node_id.as_ref() == Some(n));
        let label_ok = self
            .label
            .as_ref()
            .is_none_or(|(k, v)| w.spec.labels.get(k) == Some(v));
        status_ok && node_ok && label_ok
    }
}

/// One page of workloads.
#[derive(Debug, Clone, Default)]
pub struct WorkloadPage {
    /// The records, in listing order.
    pub items: Vec<Arc<Workload>>,
    /// Where the next page starts, when there may be one.
    pub next: Option<OrderKey>,
}

/// One page of nodes.
#[derive(Debug, Clone, Default)]
pub struct NodePage {
    /// The records, by id.
    pub items: Vec<Arc<Node>>,
    /// The last id of this page, when there may be more.
    pub next: Option<String>,
}

/// A `continue` token that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a token this server gave out")]
pub struct BadToken(pub String);

/// The token for "after `key`": hex of `<unix nanos>.<id>`. Opaque to clients.
pub fn workload_token(key: &OrderKey) -> String {
    let nanos = key.created_at.timestamp_nanos_opt().unwrap_or_default();
    hex::encode(format!("w{nanos}.{}", key.id))
}

/// The key a workload token names.
pub fn parse_workload_token(token: &str) -> Result<OrderKey, BadToken> {
    let bad = || BadToken(token.to_string());
    let raw = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let rest = raw.strip_prefix('w').ok_or_else(bad)?;
    let (nanos, id) = rest.split_once('.').ok_or_else(bad)?;
    let nanos: i64 = nanos.parse().map_err(|_| bad())?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(OrderKey {
        created_at: DateTime::<Utc>::from_timestamp_nanos(nanos),
        id: Arc::from(id),
    })
}

/// The token for "after node `id`".
pub fn node_token(id: &str) -> String {
    hex::encode(format!("n{id}"))
}

/// The node id a node token names.
pub fn parse_node_token(token: &str) -> Result<String, BadToken> {
    let bad = || BadToken(token.to_string());
    let raw = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    raw.strip_prefix('n')
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let key = OrderKey {
            created_at: DateTime::<Utc>::from_timestamp_nanos(1_700_000_000_123_456_789),
            id: Arc::from("a.b-c"),
        };
        assert_eq!(parse_workload_token(&workload_token(&key)), Ok(key));
        assert_eq!(parse_node_token(&node_token("node-1")), Ok("node-1".into()));
    }

    #[test]
    fn foreign_tokens_are_refused() {
        for t in [
            "",
            "zz",
            &hex::encode("x1.a"),
            &hex::encode("w12"),
            &node_token("n"),
        ] {
            assert!(parse_workload_token(t).is_err(), "{t}");
        }
        assert!(parse_node_token(&workload_token(&OrderKey {
            created_at: Utc::now(),
            id: Arc::from("a"),
        }))
        .is_err());
        assert!(parse_node_token("").is_err());
    }
}
