//! Group commit of workload updates. A thousand agents pushing status at once would
//! otherwise cost one etcd transaction per change; here, whoever takes the commit lock
//! writes every update waiting at that moment (up to [`MAX_BATCH`]) in one fenced
//! transaction, each still a compare-and-swap on the mod revision it was computed
//! from, and applies the result to the view before the next batch is formed.
//!
//! A member computed from a version the view has already passed cannot win its
//! compare: it is answered "conflict" at once (its caller re-reads), so it does not
//! fail the batch for the others. When the transaction's compares fail anyway (a write
//! from elsewhere the watch has not shown yet) or its answer is lost, each member is
//! settled on its own.

use super::cache::Cache;
use crate::store::{CasWrite, Store, StoreError, StoreEvent, Versioned, MAX_BATCH};
use futures::future::join_all;
use persys_proto::{keys, Workload};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex};
use tokio_util::task::TaskTracker;

/// What one update asks: write `workload` if its record is still at `mod_revision`.
struct Member {
    workload: Workload,
    write: CasWrite,
    reply: oneshot::Sender<Answer>,
}

/// The record as written, or `None` when the compare failed (re-read and retry).
type Answer = Result<Option<Versioned<Workload>>, StoreError>;

/// Batches concurrent workload updates into shared transactions.
pub(super) struct Combiner {
    store: Store,
    cache: Arc<Cache>,
    queue: std::sync::Mutex<VecDeque<Member>>,
    lock: Arc<Mutex<()>>,
    /// Batches being written, each on its own task so that a caller that goes away
    /// mid-write cannot abandon the other members.
    batches: TaskTracker,
}

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").finish_non_exhaustive()
    }
}

impl Combiner {
    pub(super) fn new(store: Store, cache: Arc<Cache>) -> Self {
        Self {
            store,
            cache,
            queue: std::sync::Mutex::new(VecDeque::new()),
            lock: Arc::new(Mutex::new(())),
            batches: TaskTracker::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Member>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `workload` if its record is still at `mod_revision`; the written record
    /// (already in the view), or `None` when the compare failed.
    pub(super) async fn put_at(&self, workload: Workload, mod_revision: i64) -> Answer {
        let key = keys::workload(&workload.id);
        let bytes = serde_json::to_vec(&workload).map_err(|source| StoreError::Encode {
            key: key.clone(),
            source,
        })?;
        let (reply, mut answer) = oneshot::channel();
        self.queue().push_back(Member {
            workload,
            write: CasWrite {
                key,
                bytes,
                mod_revision,
            },
            reply,
        });
        crate::group_commit::wait_turn(
            &self.lock,
            &self.batches,
            &mut answer,
            || self.take_batch(),
            |batch| {
                let (store, cache) = (self.store.clone(), self.cache.clone());
                async move { commit(&store, &cache, batch).await }
            },
            batch_lost,
        )
        .await
    }

    /// The next batch: waiting members with distinct keys whose versions are still the
    /// view's. Members that are already stale are answered here.
    fn take_batch(&self) -> Vec<Member> {
        let mut queue = self.queue();
        let mut batch = Vec::with_capacity(queue.len().min(MAX_BATCH));
        let mut keys = HashSet::new();
        let mut later = VecDeque::new();
        while let Some(m) = queue.pop_front() {
            if batch.len() == MAX_BATCH {
                later.push_back(m);
                continue;
            }
            let current = self.cache.workload_revision(&m.workload.id);
            if current != Some(m.write.mod_revision) {
                let _ = m.reply.send(Ok(None));
            } else if !keys.insert(m.write.key.clone()) {
                // Two updates computed from the same version: the first wins.
                let _ = m.reply.send(Ok(None));
            } else {
                batch.push(m);
            }
        }
        *queue = later;
        batch
    }
}

/// Write `batch` in one transaction (or one by one when that fails) and apply what was
/// written to the view before answering.
async fn commit(store: &Store, cache: &Cache, batch: Vec<Member>) {
    if batch.is_empty() {
        return;
    }
    let writes: Vec<CasWrite> = batch.iter().map(|m| m.write.clone()).collect();
    let together = if batch.len() == 1 {
        None
    } else {
        match store.put_all_at(&writes).await {
            Ok(Some(rev)) => Some(Ok(rev)),
            // Some compare failed, or the answer was lost: settle each below.
            Ok(None) => None,
            Err(e) if e.is_unavailable() => None,
            Err(e) => Some(Err(e)),
        }
    };
    let answers: Vec<Result<Option<i64>, StoreError>> = match together {
        Some(Ok(rev)) => batch.iter().map(|_| Ok(Some(rev))).collect(),
        Some(Err(e)) => batch.iter().map(|_| Err(e.replicate())).collect(),
        None => {
            join_all(
                writes
                    .iter()
                    .map(|w| store.put_bytes_at(&w.key, &w.bytes, w.mod_revision)),
            )
            .await
        }
    };
    let mut events = Vec::new();
    let mut replies = Vec::with_capacity(batch.len());
    for (m, answer) in batch.into_iter().zip(answers) {
        let answer = answer.map(|rev| {
            rev.map(|rev| {
                events.push(StoreEvent::WorkloadPut(Arc::new(m.workload.clone()), rev));
                Versioned {
                    value: m.workload,
                    mod_revision: rev,
                }
            })
        });
        replies.push((m.reply, answer));
    }
    cache.apply_all(events);
    for (reply, answer) in replies {
        let _ = reply.send(answer);
    }
}

fn batch_lost() -> StoreError {
    StoreError::Unavailable("the write batch stopped before it was stored".into())
}
