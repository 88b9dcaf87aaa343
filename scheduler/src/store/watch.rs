//! The etcd watch over workload and node records, turned into typed events.

use super::StoreError;
use etcd_client::{EventType, WatchClient, WatchOptions, WatchStream, Watcher};
use persys_proto::{keys, Node, Workload};
use std::sync::Arc;

/// A change to a workload or node record.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// A workload record was written at `revision`.
    WorkloadPut(Arc<Workload>, i64),
    /// A workload record was deleted at `revision`.
    WorkloadDeleted(String, i64),
    /// A node record was written at `revision`.
    NodePut(Arc<Node>, i64),
    /// A node record was deleted at `revision`.
    NodeDeleted(String, i64),
}

impl StoreEvent {
    /// The etcd revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Self::WorkloadPut(_, r)
            | Self::WorkloadDeleted(_, r)
            | Self::NodePut(_, r)
            | Self::NodeDeleted(_, r) => *r,
        }
    }
}

/// A running watch. Dropping it cancels the watch.
pub struct StoreWatch {
    // Kept so the watch stays open; etcd cancels it when the request side closes.
    _watcher: Watcher,
    stream: WatchStream,
}

impl StoreWatch {
    pub(super) async fn start(
        mut client: WatchClient,
        start_revision: i64,
    ) -> Result<Self, StoreError> {
        // One watch over the whole key space keeps a single, monotonic revision order for
        // nodes and workloads; keys outside the two prefixes are ignored.
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start_revision);
        let (watcher, stream) = client.watch("/", Some(options)).await?;
        Ok(Self {
            _watcher: watcher,
            stream,
        })
    }

    /// The next batch of events. `Ok(None)` when the stream ended; `Err(Compacted)` when
    /// the start revision is gone and the caller must re-list.
    pub async fn next(&mut self) -> Result<Option<Vec<StoreEvent>>, StoreError> {
        let Some(resp) = self.stream.message().await? else {
            return Ok(None);
        };
        if resp.compact_revision() > 0 {
            return Err(StoreError::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            return Err(StoreError::Etcd(format!(
                "watch canceled: {}",
                resp.cancel_reason()
            )));
        }
        let mut out = Vec::with_capacity(resp.events().len());
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            let rev = kv.mod_revision();
            let put = ev.event_type() == EventType::Put;
            if let Some(id) = key.strip_prefix(keys::WORKLOADS) {
                if !put {
                    out.push(StoreEvent::WorkloadDeleted(id.to_string(), rev));
                } else {
                    match serde_json::from_slice::<Workload>(kv.value()) {
                        Ok(w) => out.push(StoreEvent::WorkloadPut(Arc::new(w), rev)),
                        Err(e) => tracing::warn!(%key, error = %e, "ignoring undecodable workload"),
                    }
                }
            } else if let Some(id) = key.strip_prefix(keys::NODES) {
                if !put {
                    out.push(StoreEvent::NodeDeleted(id.to_string(), rev));
                } else {
                    match serde_json::from_slice::<Node>(kv.value()) {
                        Ok(n) => out.push(StoreEvent::NodePut(Arc::new(n), rev)),
                        Err(e) => tracing::warn!(%key, error = %e, "ignoring undecodable node"),
                    }
                }
            }
        }
        Ok(Some(out))
    }
}
