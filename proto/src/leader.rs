//! Scheduler replicas and their leader: the record under [`crate::keys::LEADER`] and
//! the answer of `GET /cluster/leader`.

use serde::{Deserialize, Serialize};

/// Value of the leader key `/persys/leader` (attached to the leader's etcd lease, so it
/// vanishes when the leader stops renewing it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    /// Replica id of the leader (`--replica-id`).
    pub id: String,
    /// Its mTLS API (`--advertise-url`), where followers forward writes.
    pub url: String,
    /// Its bootstrap port (`--advertise-bootstrap-url`), where followers forward
    /// registrations.
    #[serde(default)]
    pub bootstrap_url: String,
}

/// Answer of `GET /cluster/leader` (any replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeaderInfo {
    /// Replica id of the current leader; `null` while there is none.
    pub leader: Option<String>,
    /// The leader's API URL; `null` while there is none.
    pub url: Option<String>,
    /// Whether the replica that answered is the leader.
    #[serde(rename = "self")]
    pub is_self: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_info_uses_the_documented_keys() {
        let info = LeaderInfo {
            leader: Some("a".into()),
            url: Some("https://127.0.0.1:8085".into()),
            is_self: true,
        };
        let v = serde_json::to_value(&info).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"leader": "a", "url": "https://127.0.0.1:8085", "self": true})
        );
        let none = serde_json::to_value(LeaderInfo::default()).expect("json");
        assert_eq!(
            none,
            serde_json::json!({"leader": null, "url": null, "self": false})
        );
    }

    #[test]
    fn leader_record_is_camel_case() {
        let r = LeaderRecord {
            id: "a".into(),
            url: "https://x:1".into(),
            bootstrap_url: "https://x:2".into(),
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["bootstrapUrl"], "https://x:2");
        let back: LeaderRecord =
            serde_json::from_str(r#"{"id":"a","url":"u"}"#).expect("bootstrapUrl optional");
        assert_eq!(back.bootstrap_url, "");
    }
}
