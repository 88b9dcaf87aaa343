//! Reflector: an in-memory view of workloads and nodes, loaded from etcd at start and
//! kept current by the etcd watch and by our own writes (applied at once, so a client
//! reads its own write). Reads never hit etcd and never copy the whole view: records
//! are shared as `Arc`s and [`index`] keeps what the hot paths ask for (workloads by
//! node, reservations per node, the `Pending` queue, labels, counts) current on every
//! change.
//!
//! Only [`crate::records`] (the writer: etcd first, then here) and the watch change the
//! view; everyone else reads.

pub mod index;
pub mod page;

use crate::outage::OutageLog;
use crate::placement::Allocation;
use crate::store::{Store, StoreError, StoreEvent, Versioned};
use index::{OrderKey, WorkloadIndex};
use page::{NodePage, WorkloadFilter, WorkloadPage};
use persys_proto::{keys, ClusterEvent, Node, NodeStatus, Workload, WorkloadStatus};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Capacity of the change broadcast; a subscriber that lags further re-reads everything.
const EVENT_CAPACITY: usize = 4096;

#[derive(Default)]
struct Inner {
    workloads: HashMap<String, Versioned<Arc<Workload>>>,
    /// By id, so that node listings come out sorted and page by id.
    nodes: BTreeMap<String, Versioned<Arc<Node>>>,
    index: WorkloadIndex,
    /// Deleted keys with the revision of their delete, so a late event for an older
    /// write cannot resurrect them. Pruned once the watch has passed that revision.
    tombstones: HashMap<String, i64>,
    /// Highest revision seen from the watch.
    revision: i64,
}

impl Inner {
    fn arcs<'a>(&'a self, keys: impl Iterator<Item = &'a OrderKey>) -> Vec<Arc<Workload>> {
        keys.filter_map(|k| self.workloads.get(&*k.id).map(|v| v.value.clone()))
            .collect()
    }
}

/// What placement decides against: every node and the resources reserved on each,
/// taken under one lock.
#[derive(Debug, Clone, Default)]
pub struct PlacementView {
    /// Nodes, by id.
    pub nodes: Vec<Arc<Node>>,
    /// Reserved resources by node id.
    pub allocs: HashMap<String, Allocation>,
}

/// Workload counts by status, from the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// All workloads.
    pub total: u64,
    /// By status (only statuses that occur).
    pub by_status: HashMap<WorkloadStatus, u64>,
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
            let mut new_w: HashMap<_, _> = workloads
                .into_iter()
                .map(|(id, v)| (id, share(v)))
                .collect();
            let mut new_n: BTreeMap<_, _> =
                nodes.into_iter().map(|(id, v)| (id, share(v))).collect();
            // Our own writes applied while the lists were read are newer than the
            // lists: they stay (their watch events come later and change nothing).
            let (keep, drop) = newer_than_list(
                inner.workloads.iter(),
                |id| new_w.get(id).map(|v| v.mod_revision),
                &inner.tombstones,
                rev_w,
                keys::WORKLOADS,
            );
            new_w.extend(keep);
            drop.iter().for_each(|id| {
                new_w.remove(id);
            });
            let (keep, drop) = newer_than_list(
                inner.nodes.iter(),
                |id| new_n.get(id).map(|v| v.mod_revision),
                &inner.tombstones,
                rev_n,
                keys::NODES,
            );
            new_n.extend(keep);
            drop.iter().for_each(|id| {
                new_n.remove(id);
            });
            for (id, w) in &new_w {
                if inner.workloads.get(id).map(|o| o.mod_revision) != Some(w.mod_revision) {
                    changed.push(ClusterEvent::Workload {
                        workload: w.value.clone(),
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
                        node: n.value.clone(),
                    });
                }
            }
            inner.index = WorkloadIndex::build(new_w.values().map(|v| &*v.value));
            inner.workloads = new_w;
            inner.nodes = new_n;
            inner.tombstones.retain(|_, del| *del > revision);
            inner.revision = revision;
        }
        for ev in changed {
            let _ = self.events.send(ev);
        }
        Ok(revision)
    }

    /// Apply one change (from the watch or from our own write). Older revisions than what
    /// is held are ignored, so the order of the two sources does not matter.
    pub(super) fn apply(&self, event: StoreEvent) {
        let out = {
            let mut inner = self.write();
            apply_locked(&mut inner, event)
        };
        if let Some(ev) = out {
            let _ = self.events.send(ev);
        }
    }

    /// Apply several changes under one lock (a batch written in one transaction).
    pub(super) fn apply_all(&self, events: impl IntoIterator<Item = StoreEvent>) {
        let out: Vec<ClusterEvent> = {
            let mut inner = self.write();
            events
                .into_iter()
                .filter_map(|ev| apply_locked(&mut inner, ev))
                .collect()
        };
        for ev in out {
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

    /// One workload (a copy of that one record).
    pub fn workload(&self, id: &str) -> Option<Versioned<Workload>> {
        self.read().workloads.get(id).map(|v| Versioned {
            value: (*v.value).clone(),
            mod_revision: v.mod_revision,
        })
    }

    /// The mod revision of one workload's record as the view holds it.
    pub fn workload_revision(&self, id: &str) -> Option<i64> {
        self.read().workloads.get(id).map(|v| v.mod_revision)
    }

    /// One workload, shared.
    pub fn workload_shared(&self, id: &str) -> Option<Versioned<Arc<Workload>>> {
        self.read().workloads.get(id).cloned()
    }

    /// Ids of every workload, oldest first (start-up and recovery from a lagged
    /// subscription only).
    pub fn workload_ids(&self) -> Vec<String> {
        self.read()
            .index
            .order
            .iter()
            .map(|k| k.id.to_string())
            .collect()
    }

    /// Workloads placed on, or with an old copy retiring from, `node_id`; oldest first.
    pub fn workloads_on(&self, node_id: &str) -> Vec<Arc<Workload>> {
        let inner = self.read();
        match inner.index.by_node.get(node_id) {
            Some(set) => inner.arcs(set.iter()),
            None => Vec::new(),
        }
    }

    /// Workloads waiting for a node, oldest first.
    pub fn pending(&self) -> Vec<Arc<Workload>> {
        let inner = self.read();
        inner.arcs(inner.index.pending.iter())
    }

    /// How many workloads wait for a node.
    pub fn pending_count(&self) -> usize {
        self.read().index.pending.len()
    }

    /// Resources reserved on `node_id`.
    pub fn allocation(&self, node_id: &str) -> Allocation {
        self.read()
            .index
            .allocs
            .get(node_id)
            .copied()
            .unwrap_or_default()
    }

    /// Workload counts.
    pub fn counts(&self) -> Counts {
        let inner = self.read();
        Counts {
            total: inner.workloads.len() as u64,
            by_status: inner.index.by_status.clone(),
        }
    }

    /// Every workload passing `filter`, oldest first (the unpaged list).
    pub fn list(&self, filter: &WorkloadFilter) -> Vec<Arc<Workload>> {
        self.page(filter, None, usize::MAX).items
    }

    /// Up to `limit` workloads passing `filter` after `after` in listing order, and the
    /// key to continue from when more may follow. Walks the narrowest index the filter
    /// allows, so a page costs its own size (plus what the filter skips), never the
    /// whole cache.
    pub fn page(
        &self,
        filter: &WorkloadFilter,
        after: Option<&OrderKey>,
        limit: usize,
    ) -> WorkloadPage {
        let inner = self.read();
        let empty = std::collections::BTreeSet::new();
        let source = if let Some(node) = &filter.node {
            inner.index.by_node.get(node).unwrap_or(&empty)
        } else if let Some(label) = &filter.label {
            inner.index.by_label.get(label).unwrap_or(&empty)
        } else {
            &inner.index.order
        };
        let range = match after {
            Some(k) => source.range((Bound::Excluded(k.clone()), Bound::Unbounded)),
            None => source.range::<OrderKey, _>(..),
        };
        let mut items = Vec::new();
        let mut last = None;
        for key in range {
            if items.len() == limit {
                return WorkloadPage { items, next: last };
            }
            let Some(v) = inner.workloads.get(&*key.id) else {
                continue;
            };
            if filter.matches(&v.value) {
                items.push(v.value.clone());
                last = Some(key.clone());
            }
        }
        WorkloadPage { items, next: None }
    }

    /// One node (a copy of that record).
    pub fn node(&self, id: &str) -> Option<Versioned<Node>> {
        self.read().nodes.get(id).map(|v| Versioned {
            value: (*v.value).clone(),
            mod_revision: v.mod_revision,
        })
    }

    /// A node's status, without copying its record.
    pub fn node_status(&self, id: &str) -> Option<NodeStatus> {
        self.read().nodes.get(id).map(|v| v.value.status)
    }

    /// Every node, by id, shared.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.read()
            .nodes
            .values()
            .map(|n| n.value.clone())
            .collect()
    }

    /// How many nodes are in each status.
    pub fn node_counts(&self) -> HashMap<NodeStatus, u64> {
        let mut out = HashMap::new();
        for n in self.read().nodes.values() {
            *out.entry(n.value.status).or_default() += 1;
        }
        out
    }

    /// Up to `limit` nodes with ids after `after`.
    pub fn node_page(&self, after: Option<&str>, limit: usize) -> NodePage {
        let inner = self.read();
        let range = match after {
            Some(a) => inner
                .nodes
                .range::<str, _>((Bound::Excluded(a), Bound::Unbounded)),
            None => inner.nodes.range::<str, _>(..),
        };
        let mut items: Vec<Arc<Node>> = Vec::new();
        for (_, n) in range {
            if items.len() == limit {
                let next = items.last().map(|n| n.node_id.clone());
                return NodePage { items, next };
            }
            items.push(n.value.clone());
        }
        NodePage { items, next: None }
    }

    /// Nodes and the reservations on them under one lock: what placement decides
    /// against. Costs the number of nodes, not of workloads.
    pub fn placement_view(&self) -> PlacementView {
        let inner = self.read();
        PlacementView {
            nodes: inner.nodes.values().map(|n| n.value.clone()).collect(),
            allocs: inner.index.allocs.clone(),
        }
    }

    /// Keep the view current: watch from `revision + 1`, re-list on compaction or any
    /// watch failure, until `shutdown`.
    pub async fn run(&self, store: Store, mut revision: i64, shutdown: CancellationToken) {
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
            let mut pauses = relist_backoff();
            loop {
                let pause = pauses.next().unwrap_or(RELIST_MAX_PAUSE);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                match self.load(&store).await {
                    Ok(r) => {
                        outage.succeeded("re-listing from etcd");
                        tracing::info!(revision = r, "re-listed from etcd");
                        revision = r;
                        break;
                    }
                    Err(e) => {
                        outage.failed(
                            "re-listing from etcd (reads answer from the cached view)",
                            &e,
                        );
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
            let max = events.iter().map(StoreEvent::revision).max().unwrap_or(0);
            self.apply_all(events);
            if max > 0 {
                self.advance(max);
            }
        }
    }
}

/// First and largest pause before re-listing after the watch failed.
const RELIST_MIN_PAUSE: Duration = Duration::from_millis(100);
const RELIST_MAX_PAUSE: Duration = Duration::from_secs(5);

fn relist_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RELIST_MIN_PAUSE)
        .with_max_delay(RELIST_MAX_PAUSE)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Records to keep over a list, and ids to drop from it (see [`newer_than_list`]).
type NewerThanList<T> = (Vec<(String, Versioned<Arc<T>>)>, Vec<String>);

/// What the cache holds newer than a list read at `list_revision` (prefix `prefix`):
/// records written after the list was read (to keep), and ids deleted after it (to
/// drop). `listed` says which revision the list holds of an id.
fn newer_than_list<'a, T: 'a>(
    cached: impl Iterator<Item = (&'a String, &'a Versioned<Arc<T>>)>,
    listed: impl Fn(&str) -> Option<i64>,
    tombstones: &HashMap<String, i64>,
    list_revision: i64,
    prefix: &str,
) -> NewerThanList<T> {
    let keep = cached
        .filter(|(id, old)| match listed(id) {
            Some(rev) => old.mod_revision > rev,
            None => old.mod_revision > list_revision,
        })
        .map(|(id, old)| (id.clone(), old.clone()))
        .collect();
    let drop = tombstones
        .iter()
        .filter(|(_, del)| **del > list_revision)
        .filter_map(|(key, del)| {
            let id = key.strip_prefix(prefix)?;
            listed(id)
                .is_some_and(|rev| rev < *del)
                .then(|| id.to_string())
        })
        .collect();
    (keep, drop)
}

fn share<T>(v: Versioned<T>) -> Versioned<Arc<T>> {
    Versioned {
        value: Arc::new(v.value),
        mod_revision: v.mod_revision,
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
            if let Some(old) = inner.workloads.get(&w.id).map(|v| v.value.clone()) {
                inner.index.remove(&old);
            }
            // One record, shared by the view and every subscriber of the change.
            let record = w.clone();
            inner.index.insert(&record);
            inner.workloads.insert(
                w.id.clone(),
                Versioned {
                    value: record,
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
            let old = inner.workloads.remove(&id)?;
            inner.index.remove(&old.value);
            Some(ClusterEvent::WorkloadDeleted { id })
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
                    value: n.clone(),
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
        c.apply(StoreEvent::WorkloadPut(Arc::new(workload("a", "new")), 10));
        c.apply(StoreEvent::WorkloadPut(Arc::new(workload("a", "old")), 5));
        let w = c.workload("a").expect("present");
        assert_eq!(w.value.spec.name, "new");
        assert_eq!(w.mod_revision, 10);
    }

    #[test]
    fn late_put_does_not_resurrect_a_deleted_workload() {
        let c = Cache::new();
        c.apply(StoreEvent::WorkloadPut(Arc::new(workload("a", "x")), 5));
        c.apply(StoreEvent::WorkloadDeleted("a".into(), 7));
        c.apply(StoreEvent::WorkloadPut(Arc::new(workload("a", "x")), 5));
        assert!(c.workload("a").is_none());
    }

    #[test]
    fn changes_are_broadcast_once() {
        let c = Cache::new();
        let mut rx = c.subscribe();
        let w = workload("a", "x");
        c.apply(StoreEvent::WorkloadPut(Arc::new(w.clone()), 3));
        c.apply(StoreEvent::WorkloadPut(Arc::new(w), 3));
        assert!(matches!(rx.try_recv(), Ok(ClusterEvent::Workload { .. })));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_list_older_than_our_own_writes_does_not_undo_them() {
        let v = |rev| Versioned {
            value: Arc::new(workload("x", "n")),
            mod_revision: rev,
        };
        let cached: HashMap<String, Versioned<Arc<Workload>>> = HashMap::from([
            ("written-after".to_string(), v(12)),
            ("created-after".to_string(), v(11)),
            ("same".to_string(), v(5)),
        ]);
        let listed: HashMap<&str, i64> = HashMap::from([
            ("written-after", 7),
            ("same", 5),
            ("deleted-after", 6),
            ("deleted-before", 3),
        ]);
        let tombstones = HashMap::from([
            (keys::workload("deleted-after"), 13),
            (keys::workload("deleted-before"), 4),
        ]);
        let (keep, drop) = newer_than_list(
            cached.iter(),
            |id| listed.get(id).copied(),
            &tombstones,
            10,
            keys::WORKLOADS,
        );
        let mut kept: Vec<(String, i64)> = keep
            .into_iter()
            .map(|(id, v)| (id, v.mod_revision))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                ("created-after".to_string(), 11),
                ("written-after".to_string(), 12)
            ]
        );
        assert_eq!(drop, ["deleted-after"]);
    }
}
