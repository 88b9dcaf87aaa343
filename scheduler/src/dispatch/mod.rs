//! Carries each workload's desired state to its agent, after the record is stored:
//! run, stop, remove-then-delete. A keyed controller: every workload change (from the
//! cache's change feed, so also everything loaded at start) enqueues the workload; one
//! reconcile per workload runs at a time, at most [`PER_NODE`] per node, each agent
//! call retried with backoff on network errors, and a failed reconcile is requeued
//! with a growing delay. The agent's run is idempotent per (workload id, generation),
//! so re-dispatch after a restart never runs a workload twice.

use crate::context::Ctx;
use persys_proto::{ClusterEvent, NodeStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod action;
mod work;

pub use action::{action_for, Action};
pub use work::reconcile;

/// Concurrent agent calls per node.
pub const PER_NODE: usize = 8;
/// Longest delay before a failed reconcile is tried again.
const MAX_REQUEUE: Duration = Duration::from_secs(30);

/// Handle to enqueue workloads for dispatch.
#[derive(Debug)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    per_node: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

/// What one reconcile asks of the controller.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Done until the record changes again.
    Done,
    /// Try again after this long.
    Retry,
}

impl Dispatcher {
    /// A dispatcher whose loop is started with [`run`].
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            per_node: Mutex::new(HashMap::new()),
        }
    }

    /// Reconcile this workload soon.
    pub fn enqueue(&self, workload_id: &str) {
        let _ = self.tx.send(workload_id.to_string());
    }

    fn node_permits(&self, node_id: &str) -> Arc<Semaphore> {
        let mut map = self.per_node.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(node_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_NODE)))
            .clone()
    }
}

/// The controller loop, until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(mut rx) = ctx
        .dispatcher()
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        tracing::error!("dispatch loop started twice");
        return;
    };
    let mut changes = ctx.cache().subscribe();
    // Everything already loaded: finishes dispatches stored but never confirmed.
    for id in ctx.cache().workload_ids() {
        ctx.dispatcher().enqueue(&id);
    }
    let mut running: HashMap<String, bool> = HashMap::new(); // id → dirty
    let mut failures: HashMap<String, backon::ExponentialBackoff> = HashMap::new();
    let mut tasks: JoinSet<(String, Next)> = JoinSet::new();
    let mut timers: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(id) = rx.recv() => start(&ctx, &mut running, &mut tasks, id),
            ev = changes.recv() => match ev {
                Ok(ClusterEvent::Workload { workload }) => start(&ctx, &mut running, &mut tasks, workload.id.clone()),
                // A node that is reachable again may have work that waited for it.
                Ok(ClusterEvent::Node { node }) if node.status != NodeStatus::Inactive => {
                    for w in ctx.cache().workloads_on(&node.node_id) {
                        if action_for(&w).is_some() {
                            start(&ctx, &mut running, &mut tasks, w.id.clone());
                        }
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for id in ctx.cache().workload_ids() {
                        start(&ctx, &mut running, &mut tasks, id);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((id, next)) = done else { continue };
                let dirty = running.remove(&id).unwrap_or(false);
                if next == Next::Retry {
                    let delay = failures
                        .entry(id.clone())
                        .or_insert_with(requeue_backoff)
                        .next()
                        .unwrap_or(MAX_REQUEUE);
                    let tx = ctx.dispatcher().tx.clone();
                    let token = shutdown.clone();
                    timers.spawn(async move {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = tokio::time::sleep(delay) => { let _ = tx.send(id); }
                        }
                    });
                } else {
                    failures.remove(&id);
                    if dirty {
                        start(&ctx, &mut running, &mut tasks, id);
                    }
                }
            }
            Some(_) = timers.join_next(), if !timers.is_empty() => {}
        }
    }
    // In-flight agent calls finish or are dropped; their effects are idempotent.
    tasks.shutdown().await;
    timers.shutdown().await;
    // The next leadership term's loop takes the queue again.
    *ctx.dispatcher()
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(rx);
}

fn start(
    ctx: &Arc<Ctx>,
    running: &mut HashMap<String, bool>,
    tasks: &mut JoinSet<(String, Next)>,
    id: String,
) {
    if let Some(dirty) = running.get_mut(&id) {
        *dirty = true;
        return;
    }
    running.insert(id.clone(), false);
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let next = reconcile(&ctx, &id).await;
        (id, next)
    });
}

/// First pause before a failed dispatch is tried again.
const MIN_REQUEUE: Duration = Duration::from_millis(500);

/// Pauses between retries of one workload's dispatch: from [`MIN_REQUEUE`] doubling to
/// [`MAX_REQUEUE`], with jitter so that the workloads of a node that was unreachable
/// do not all come back at the same instant.
pub fn requeue_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(MIN_REQUEUE)
        .with_max_delay(MAX_REQUEUE)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_pauses_grow_and_stay_within_twice_the_cap() {
        let pauses: Vec<Duration> = requeue_backoff().take(40).collect();
        assert_eq!(pauses.len(), 40, "retried without end");
        // Jitter adds up to one more delay on top of each.
        assert!(
            pauses[0] >= MIN_REQUEUE && pauses[0] <= MIN_REQUEUE * 2,
            "{:?}",
            pauses[0]
        );
        assert!(pauses[10] >= MAX_REQUEUE, "{:?}", pauses[10]);
        assert!(pauses.iter().all(|p| *p <= MAX_REQUEUE * 2));
    }
}
