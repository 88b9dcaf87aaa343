//! Indexes over the cached workloads, updated on every change so that no hot path
//! scans the whole cache: the listing order, workloads by node, the resources
//! reserved per node, the `Pending` queue, workloads by label and counts by status.
//! Pure data; [`super::Cache`] keeps it next to the records under one lock.

use crate::placement::Allocation;
use chrono::{DateTime, Utc};
use persys_proto::{DesiredState, Workload, WorkloadStatus};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Where a workload sits in listings: oldest first, ties by id. Never changes for a
/// record (`created_at` and `id` are fixed at creation), so a page token stays valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Workload id.
    pub id: Arc<str>,
}

impl OrderKey {
    /// The key of `w`.
    pub fn of(w: &Workload) -> Self {
        Self {
            created_at: w.created_at,
            id: Arc::from(w.id.as_str()),
        }
    }
}

/// Whether `w` reserves resources on its node: it is placed and wants to run.
pub fn reserves(w: &Workload) -> Option<&str> {
    (w.desired_state == DesiredState::Running)
        .then_some(w.node_id.as_deref())
        .flatten()
}

/// Whether `w` waits for a node.
pub fn is_pending(w: &Workload) -> bool {
    w.desired_state == DesiredState::Running
        && w.status == WorkloadStatus::Pending
        && w.node_id.is_none()
}

/// Nodes `w` concerns: the one it is placed on and those holding old copies to retire.
fn related_nodes(w: &Workload) -> impl Iterator<Item = &str> {
    w.node_id
        .as_deref()
        .into_iter()
        .chain(w.retiring.iter().map(|c| c.node_id.as_str()))
}

/// The indexes. `insert` and `remove` must see the same record to stay exact: the
/// cache removes the old version before inserting the new one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkloadIndex {
    /// Every workload, in listing order.
    pub(super) order: BTreeSet<OrderKey>,
    /// Workloads placed on, or retiring from, each node.
    pub(super) by_node: HashMap<String, BTreeSet<OrderKey>>,
    /// Resources reserved on each node.
    pub(super) allocs: HashMap<String, Allocation>,
    /// Workloads waiting for a node, oldest first.
    pub(super) pending: BTreeSet<OrderKey>,
    /// Workloads by `(label, value)`.
    pub(super) by_label: HashMap<(String, String), BTreeSet<OrderKey>>,
    /// Number of workloads in each status.
    pub(super) by_status: HashMap<WorkloadStatus, u64>,
}

impl WorkloadIndex {
    /// Count `w` in.
    pub fn insert(&mut self, w: &Workload) {
        let key = OrderKey::of(w);
        for node in related_nodes(w) {
            self.by_node
                .entry(node.to_string())
                .or_default()
                .insert(key.clone());
        }
        if let Some(node) = reserves(w) {
            self.allocs
                .entry(node.to_string())
                .or_default()
                .add(&w.spec.resources);
        }
        if is_pending(w) {
            self.pending.insert(key.clone());
        }
        for (k, v) in &w.spec.labels {
            self.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(key.clone());
        }
        *self.by_status.entry(w.status).or_default() += 1;
        self.order.insert(key);
    }

    /// Count `w` out (the same version that was counted in).
    pub fn remove(&mut self, w: &Workload) {
        let key = OrderKey::of(w);
        for node in related_nodes(w) {
            if let Some(set) = self.by_node.get_mut(node) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_node.remove(node);
                }
            }
        }
        if let Some(node) = reserves(w) {
            if let Some(a) = self.allocs.get_mut(node) {
                a.remove(&w.spec.resources);
                if a.workloads == 0 {
                    self.allocs.remove(node);
                }
            }
        }
        self.pending.remove(&key);
        for (k, v) in &w.spec.labels {
            let label = (k.clone(), v.clone());
            if let Some(set) = self.by_label.get_mut(&label) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
        if let Some(n) = self.by_status.get_mut(&w.status) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_status.remove(&w.status);
            }
        }
        self.order.remove(&key);
    }

    /// The indexes of `workloads`, computed from scratch (start-up, re-list, and the
    /// property test's reference).
    pub fn build<'a>(workloads: impl IntoIterator<Item = &'a Workload>) -> Self {
        let mut index = Self::default();
        for w in workloads {
            index.insert(w);
        }
        index
    }
}

/// Resources reserved on each node by `workloads`, computed from scratch.
pub fn allocations<'a>(
    workloads: impl IntoIterator<Item = &'a Workload>,
) -> HashMap<String, Allocation> {
    let mut out: HashMap<String, Allocation> = HashMap::new();
    for w in workloads {
        if let Some(node) = reserves(w) {
            out.entry(node.to_string())
                .or_default()
                .add(&w.spec.resources);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::{RetiringCopy, WorkloadRequest};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn workload(i: u8) -> Workload {
        let spec = WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let created = DateTime::<Utc>::from_timestamp(1_700_000_000 + i64::from(i % 7), 0)
            .expect("valid time");
        Workload::new(format!("w{i}"), spec, created)
    }

    /// One random change to a record: what the watch or a write could bring.
    #[derive(Debug, Clone)]
    enum Change {
        Put {
            id: u8,
            node: Option<u8>,
            desired: u8,
            status: u8,
            cpu: u64,
            label: Option<u8>,
            retiring: Option<u8>,
        },
        Delete(u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (0u8..12, proptest::option::of(0u8..4), 0u8..3, 0u8..4, 0u64..2000,
                  proptest::option::of(0u8..3), proptest::option::of(0u8..4))
                .prop_map(|(id, node, desired, status, cpu, label, retiring)| Change::Put {
                    id, node, desired, status, cpu, label, retiring
                }),
            1 => (0u8..12).prop_map(Change::Delete),
        ]
    }

    fn record(c: &Change) -> Option<Workload> {
        let Change::Put {
            id,
            node,
            desired,
            status,
            cpu,
            label,
            retiring,
        } = c
        else {
            return None;
        };
        let mut w = workload(*id);
        w.node_id = node.map(|n| format!("n{n}"));
        w.desired_state = [
            DesiredState::Running,
            DesiredState::Stopped,
            DesiredState::Deleted,
        ][usize::from(*desired)];
        w.status = [
            WorkloadStatus::Pending,
            WorkloadStatus::Running,
            WorkloadStatus::Unknown,
            WorkloadStatus::Failed,
        ][usize::from(*status)];
        w.spec.resources.cpu = *cpu;
        w.spec.resources.memory = cpu / 4;
        if let Some(l) = label {
            w.spec.labels.insert("team".into(), format!("t{l}"));
        }
        if let Some(r) = retiring {
            w.retiring.push(RetiringCopy {
                node_id: format!("n{r}"),
                generation: 1,
            });
        }
        Some(w)
    }

    proptest! {
        /// After any sequence of puts and deletes, the incrementally kept indexes equal
        /// the indexes recomputed from the records; in particular the allocation index
        /// placement reads.
        #[test]
        fn incremental_index_equals_full_recomputation(changes in proptest::collection::vec(change(), 0..80)) {
            let mut records: BTreeMap<String, Workload> = BTreeMap::new();
            let mut index = WorkloadIndex::default();
            for c in &changes {
                let id = match c { Change::Put { id, .. } | Change::Delete(id) => format!("w{id}") };
                if let Some(old) = records.remove(&id) {
                    index.remove(&old);
                }
                if let Some(w) = record(c) {
                    index.insert(&w);
                    records.insert(id, w);
                }
            }
            let full = WorkloadIndex::build(records.values());
            prop_assert_eq!(&index.allocs, &allocations(records.values()));
            prop_assert_eq!(index, full);
        }
    }

    #[test]
    fn only_placed_workloads_that_want_to_run_reserve() {
        let mut placed = workload(1);
        placed.node_id = Some("a".into());
        placed.spec.resources.cpu = 300;
        let mut stopped = placed.clone();
        stopped.id = "w2".into();
        stopped.desired_state = DesiredState::Stopped;
        let unplaced = workload(3);
        let a = allocations([&placed, &stopped, &unplaced]);
        assert_eq!(a.get("a").map(|x| (x.cpu, x.workloads)), Some((300, 1)));
        assert_eq!(a.len(), 1);
    }
}
