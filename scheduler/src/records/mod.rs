//! The records: every workload and node, written to etcd first and then to the
//! in-memory view (kube-runtime's writer/reader split). [`Records`] is the only writer
//! of the view: each write here is a fenced compare-and-swap in etcd whose result is
//! applied to the [`Cache`] at once, so a client reads its own write and "write to
//! etcd, then update the cache" cannot be skipped. Readers use the [`Cache`], which
//! hands out `Arc`s.

pub mod cache;
mod combine;
#[cfg(test)]
mod combine_tests;

use crate::store::{Created, Store, StoreError, StoreEvent, Updated, Versioned};
use cache::Cache;
use combine::Combiner;
use persys_proto::{keys, Node, Workload};
use std::sync::Arc;

/// What became of one new workload of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum NewWorkload {
    /// Stored by this call.
    Stored(Versioned<Workload>),
    /// An earlier attempt of the same request stored this record.
    Existing(Versioned<Workload>),
}

/// The writer over etcd and the view.
#[derive(Debug, Clone)]
pub struct Records {
    store: Store,
    cache: Arc<Cache>,
    combiner: Arc<Combiner>,
}

/// How many times a conditional delete re-reads before it reports a conflict.
const DELETE_ATTEMPTS: usize = 16;

impl Records {
    /// The writer for `store` and its view `cache`.
    pub fn new(store: Store, cache: Arc<Cache>) -> Self {
        let combiner = Arc::new(Combiner::new(store.clone(), cache.clone()));
        Self {
            store,
            cache,
            combiner,
        }
    }

    /// The view.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Apply changes seen by the watch (the cache's own loop) or written by a helper
    /// of this module.
    fn applied(&self, event: StoreEvent) {
        self.cache.apply(event);
    }

    /// CAS-update a workload record, starting from the cached version; a written
    /// record is applied to the view. The first attempt joins the other updates waiting
    /// at that moment in one transaction (see [`combine`]); after a lost compare the
    /// record is re-read from etcd.
    pub async fn update_workload<F>(
        &self,
        id: &str,
        mut f: F,
    ) -> Result<Updated<Workload>, StoreError>
    where
        F: FnMut(&Workload) -> Option<Workload>,
    {
        if let Some(seed) = self.cache.workload(id) {
            if let Some(next) = f(&seed.value) {
                if let Some(written) = self.combiner.put_at(next, seed.mod_revision).await? {
                    return Ok(Updated::Written(written));
                }
            }
        }
        // No seed, a seed that asks for no change (it may be stale), or a lost compare.
        let out = self.store.update(&keys::workload(id), f).await?;
        if let Updated::Written(v) = &out {
            self.applied(StoreEvent::WorkloadPut(
                Arc::new(v.value.clone()),
                v.mod_revision,
            ));
        }
        Ok(out)
    }

    /// CAS-update a node record, starting from the cached version; a written record is
    /// applied to the view.
    pub async fn update_node<F>(&self, id: &str, f: F) -> Result<Updated<Node>, StoreError>
    where
        F: FnMut(&Node) -> Option<Node>,
    {
        let seed = self.cache.node(id);
        let out = self.store.update_seeded(&keys::node(id), seed, f).await?;
        if let Updated::Written(v) = &out {
            self.applied(StoreEvent::NodePut(
                Arc::new(v.value.clone()),
                v.mod_revision,
            ));
        }
        Ok(out)
    }

    /// Create a node record if absent; its revision, or `None` when it exists.
    pub async fn create_node(&self, node: &Node) -> Result<Option<i64>, StoreError> {
        let rev = self
            .store
            .put_if_absent(&keys::node(&node.node_id), node)
            .await?;
        if let Some(rev) = rev {
            self.applied(StoreEvent::NodePut(Arc::new(node.clone()), rev));
        }
        Ok(rev)
    }

    /// Delete a node record still at `mod_revision`; the revision of the delete, or
    /// `None` when it changed meanwhile.
    pub async fn delete_node_at(
        &self,
        id: &str,
        mod_revision: i64,
    ) -> Result<Option<i64>, StoreError> {
        let rev = self.store.delete_at(&keys::node(id), mod_revision).await?;
        if let Some(rev) = rev {
            self.applied(StoreEvent::NodeDeleted(id.to_string(), rev));
        }
        Ok(rev)
    }

    /// Delete a workload record if `still` holds for its current value (re-read on
    /// every attempt). Returns whether it was deleted.
    pub async fn delete_workload_if<F>(&self, id: &str, mut still: F) -> Result<bool, StoreError>
    where
        F: FnMut(&Workload) -> bool,
    {
        let key = keys::workload(id);
        for _ in 0..DELETE_ATTEMPTS {
            let Some(current) = self.store.get::<Workload>(&key).await? else {
                return Ok(false);
            };
            if !still(&current.value) {
                return Ok(false);
            }
            if let Some(rev) = self.store.delete_at(&key, current.mod_revision).await? {
                self.applied(StoreEvent::WorkloadDeleted(id.to_string(), rev));
                return Ok(true);
            }
        }
        Err(StoreError::Conflict { key })
    }

    /// Create new workload records in one transaction (see [`Store::create_all`]); the
    /// written ones are applied to the view under one lock. For each, in order: the
    /// record as stored by this call, or the record an earlier attempt stored.
    pub async fn create_workloads(
        &self,
        workloads: &[Workload],
    ) -> Result<Vec<NewWorkload>, StoreError> {
        let items: Vec<(String, &Workload)> = workloads
            .iter()
            .map(|w| (keys::workload(&w.id), w))
            .collect();
        let created = self.store.create_all(&items).await?;
        let mut events = Vec::new();
        let out = created
            .into_iter()
            .zip(workloads)
            .map(|(c, w)| match c {
                Created::Stored(rev) => {
                    events.push(StoreEvent::WorkloadPut(Arc::new(w.clone()), rev));
                    NewWorkload::Stored(Versioned {
                        value: w.clone(),
                        mod_revision: rev,
                    })
                }
                Created::Existing(v) => NewWorkload::Existing(v),
            })
            .collect();
        self.cache.apply_all(events);
        Ok(out)
    }
}
