//! Cluster snapshots (`persys snapshot save|restore`): every persys record in etcd at
//! one revision — workloads, nodes, services, tokens, the policy, DNS records — as
//! lines of text. The first line is a [`SnapshotHeader`] in clear; every other line is
//! one [`SnapshotLine`] sealed with the cluster's snapshot key and base64-encoded, the
//! last one the count of entries (a cut-off file is refused).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The format this crate writes.
pub const FORMAT: u32 = 1;
/// The key prefixes a snapshot holds.
pub const PREFIXES: [&str; 4] = [
    crate::keys::WORKLOADS,
    crate::keys::NODES,
    crate::keys::SKYDNS,
    "/persys/",
];
/// Keys under [`PREFIXES`] a snapshot leaves out: the leader election's key lives with
/// its lease and belongs to whoever leads now.
pub const EXCLUDED: [&str; 1] = [crate::keys::LEADER];
/// Most bytes of one `POST /cluster/restore` body (one part of a snapshot).
pub const MAX_RESTORE_PART_BYTES: usize = 4 * 1024 * 1024;
/// The media type of snapshots.
pub const MEDIA_TYPE: &str = "application/x-persys-snapshot";

/// The first line of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHeader {
    /// [`FORMAT`].
    pub persys_snapshot: u32,
    /// When it was read.
    pub taken_at: DateTime<Utc>,
    /// The etcd revision every entry was read at.
    pub revision: i64,
    /// Which cluster's key sealed it (a hash, not the key).
    pub key_id: String,
}

/// One sealed line: an entry (`k` and `v`), or the end (`entries`). A struct, not an
/// untagged enum: a raw value cannot be read through serde's buffering of untagged
/// enums.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotLine {
    /// The etcd key of an entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
    /// The stored value of an entry (every persys record is JSON), byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<Box<serde_json::value::RawValue>>,
    /// On the end line: how many entries came before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

impl SnapshotLine {
    /// An entry.
    pub fn entry(k: String, v: Box<serde_json::value::RawValue>) -> Self {
        Self {
            k: Some(k),
            v: Some(v),
            entries: None,
        }
    }

    /// The end line.
    pub fn end(entries: u64) -> Self {
        Self {
            entries: Some(entries),
            ..Self::default()
        }
    }
}

/// What `POST /cluster/restore` did with one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSummary {
    /// Entries written.
    pub restored: u64,
    /// Entries whose key already held a value (left as it was).
    pub skipped: u64,
    /// The entry count of the snapshot's end line, when this part held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_entries: Option<u64>,
}
