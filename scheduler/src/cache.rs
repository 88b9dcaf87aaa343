//! Reflector: an in-memory view of workloads and nodes, loaded from etcd at start and
//! kept current by the etcd watch (and by our own writes, applied at once so a client
//! reads its own write). Reads never hit etcd.

use crate::outage::OutageLog;
use crate::store::{Store, StoreError, StoreEvent, Versioned};
use persys_proto::{keys, ClusterEvent, Node, Workload};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Capacity of the change broadcast; a subscriber that lags further re-reads everything.
const EVENT_CAPACITY: usize = 4096;

#[derive(Default)]
struct Inner {
    workloads: HashMap<String, Versioned<Workload>>,
    nodes: HashMap<String, Versioned<Node>>,
    /// Deleted keys with the revision of their delete, so a late event for an older
    /// write cannot resurrect them. Pruned once the watch has passed that revision.
    tombstones: HashMap<String, i64>,
    /// Highest revision seen from the watch.
    revision: i64,
}

/// The cluster view shared by the API and every loop.
pub struct Cache {
    inner: RwLock<Inner>,
    events: broadcast::Sender<ClusterEvent>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-update of plain maps; the data
        // is still usable, so keep serving.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribe to changes (workload and node records written or deleted).
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    /// Load everything from etcd, replacing the view. Returns the revision read at.
    pub async fn load(&self, store: &Store) -> Result<i64, StoreError> {
        let (workloads, rev_w) = store.list::<Workload>(keys::WORKLOADS).await?;
        let (nodes, rev_n) = store.list::<Node>(keys::NODES).await?;
        let revision = rev_w.max(rev_n);
        let mut changed = Vec::new();
        {
            let mut inner = self.write();
            let new_w: HashMap<_, _> = workloads.into_iter().collect();
            let new_n: HashMap<_, _> = nodes.into_iter().collect();
            for (id, w) in &new_w {
                if inner.workloads.get(id).map(|o| o.mod_revision) != Some(w.mod_revision) {
                    changed.push(ClusterEvent::Workload {
                        workload: Box::new(w.value.clone()),
                    });
                }
            }
            for id in inner.workloads.keys() {
                if !new_w.contains_key(id) {
                    changed.push(ClusterEvent::WorkloadDeleted { id: id.clone() });
                }
            }
            for (id, n) in &new_n {
                if inner.nodes.get(id).map(|o| o.mod_revision) != Some(n.mod_revision) {
                    changed.push(ClusterEvent::Node {
                        node: Box::new(n.value.clone()),
                    });
                }
            }
            inner.workloads = new_w;
            inner.nodes = new_n;
            inner.tombstones.clear();
            inner.revision = revision;
        }
        for ev in changed {
            let _ = self.events.send(ev);
        }
        Ok(revision)
    }

    /// Apply one change (from the watch or from our own write). Older revisions than what
    /// is held are ignored, so the order of the two sources does not matter.
    pub fn apply(&self, event: StoreEvent) {
        let out = {
            let mut inner = self.write();
            apply_locked(&mut inner, event)
        };
        if let Some(ev) = out {
            let _ = self.events.send(ev);
        }
    }

    /// Record the watch's progress and drop tombstones it has passed.
    fn advance(&self, revision: i64) {
        let mut inner = self.write();
        if revision > inner.revision {
            inner.revision = revision;
        }
        let r = inner.revision;
        inner.tombstones.retain(|_, del| *del > r);
    }

    /// One workload.
    pub fn workload(&self, id: &str) -> Option<Versioned<Workload>> {
        self.read().workloads.get(id).cloned()
    }

    /// Every workload, oldest first.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut v: Vec<Workload> = self
            .read()
            .workloads
            .values()
            .map(|w| w.value.clone())
            .collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }

    /// One node.
    pub fn node(&self, id: &str) -> Option<Versioned<Node>> {
        self.read().nodes.get(id).cloned()
    }

    /// Every node, by id.
    pub fn nodes(&self) -> Vec<Node> {
        let mut v: Vec<Node> = self
            .read()
            .nodes
            .values()
            .map(|n| n.value.clone())
            .collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    /// Nodes and workloads under one lock (a consistent snapshot for placement).
    pub fn snapshot(&self) -> (Vec<Node>, Vec<Workload>) {
        let inner = self.read();
        (
            inner.nodes.values().map(|n| n.value.clone()).collect(),
            inner.workloads.values().map(|w| w.value.clone()).collect(),
        )
    }

    /// Keep the view current: watch from `revision + 1`, re-list on compaction or any
    /// watch failure, until `shutdown`.
    pub async fn run(&self, store: Store, mut revision: i64, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.follow(&store, revision + 1, &shutdown) => r,
            };
            if shutdown.is_cancelled() {
                return;
            }
            match result {
                Ok(()) => tracing::warn!("etcd watch ended; re-listing"),
                Err(e) => tracing::warn!(error = %e, "etcd watch failed; re-listing"),
            }
            // Reads keep answering from the view meanwhile; say once that it is stale.
            let mut outage = OutageLog::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                match self.load(&store).await {
                    Ok(r) => {
                        outage.succeeded("re-listing from etcd");
                        tracing::info!(revision = r, "re-listed from etcd");
                        revision = r;
                        backoff = Duration::from_millis(100);
                        break;
                    }
                    Err(e) => {
                        outage.failed(
                            "re-listing from etcd (reads answer from the cached view)",
                            &e,
                        );
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    async fn follow(
        &self,
        store: &Store,
        start: i64,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut watch = store.watch(start).await?;
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                b = watch.next() => b?,
            };
            let Some(events) = batch else { return Ok(()) };
            let mut max = 0;
            for ev in events {
                max = max.max(ev.revision());
                self.apply(ev);
            }
            if max > 0 {
                self.advance(max);
            }
        }
    }
}

fn apply_locked(inner: &mut Inner, event: StoreEvent) -> Option<ClusterEvent> {
    let rev = event.revision();
    match event {
        StoreEvent::WorkloadPut(w, _) => {
            let key = keys::workload(&w.id);
            if inner.tombstones.get(&key).is_some_and(|del| *del >= rev) {
                return None;
            }
            if inner
                .workloads
                .get(&w.id)
                .is_some_and(|o| o.mod_revision >= rev)
            {
                return None;
            }
            inner.tombstones.remove(&key);
            inner.workloads.insert(
                w.id.clone(),
                Versioned {
                    value: (*w).clone(),
                    mod_revision: rev,
                },
            );
            Some(ClusterEvent::Workload { workload: w })
        }
        StoreEvent::WorkloadDeleted(id, _) => {
            let key = keys::workload(&id);
            if inner
                .workloads
                .get(&id)
                .is_some_and(|o| o.mod_revision > rev)
            {
                return None;
            }
            inner.tombstones.insert(key, rev);
            inner
                .workloads
                .remove(&id)
                .map(|_| ClusterEvent::WorkloadDeleted { id })
        }
        StoreEvent::NodePut(n, _) => {
            let key = keys::node(&n.node_id);
            if inner.tombstones.get(&key).is_some_and(|del| *del >= rev) {
                return None;
            }
            if inner
                .nodes
                .get(&n.node_id)
                .is_some_and(|o| o.mod_revision >= rev)
            {
                return None;
            }
            inner.tombstones.remove(&key);
            inner.nodes.insert(
                n.node_id.clone(),
                Versioned {
                    value: (*n).clone(),
                    mod_revision: rev,
                },
            );
            Some(ClusterEvent::Node { node: n })
        }
        StoreEvent::NodeDeleted(id, _) => {
            if inner.nodes.get(&id).is_some_and(|o| o.mod_revision > rev) {
                return None;
            }
            inner.tombstones.insert(keys::node(&id), rev);
            inner.nodes.remove(&id);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use persys_proto::WorkloadRequest;

    fn workload(id: &str, name: &str) -> Workload {
        let spec = WorkloadRequest {
            name: name.into(),
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        Workload::new(id.into(), spec, Utc::now())
    }

    #[test]
    fn older_revision_does_not_overwrite_newer() {
        let c = Cache::new();
        c.apply(StoreEvent::WorkloadPut(Box::new(workload("a", "new")), 10));
        c.apply(StoreEvent::WorkloadPut(Box::new(workload("a", "old")), 5));
        let w = c.workload("a").expect("present");
        assert_eq!(w.value.spec.name, "new");
        assert_eq!(w.mod_revision, 10);
    }

    #[test]
    fn late_put_does_not_resurrect_a_deleted_workload() {
        let c = Cache::new();
        c.apply(StoreEvent::WorkloadPut(Box::new(workload("a", "x")), 5));
        c.apply(StoreEvent::WorkloadDeleted("a".into(), 7));
        c.apply(StoreEvent::WorkloadPut(Box::new(workload("a", "x")), 5));
        assert!(c.workload("a").is_none());
    }

    #[test]
    fn changes_are_broadcast_once() {
        let c = Cache::new();
        let mut rx = c.subscribe();
        let w = workload("a", "x");
        c.apply(StoreEvent::WorkloadPut(Box::new(w.clone()), 3));
        c.apply(StoreEvent::WorkloadPut(Box::new(w), 3));
        assert!(matches!(rx.try_recv(), Ok(ClusterEvent::Workload { .. })));
        assert!(rx.try_recv().is_err());
    }
}
