//! Carries each workload's desired state to its agent, after the record is stored:
//! run, stop, remove-then-delete. A keyed controller: every workload change (from the
//! cache's change feed, so also everything loaded at start) enqueues the workload; one
//! reconcile per workload runs at a time, at most [`PER_NODE`] per node, each agent
//! call retried with backoff on network errors, and a failed reconcile is requeued
//! with a growing delay. The agent's run is idempotent per (workload id, generation),
//! so re-dispatch after a restart never runs a workload twice.

use crate::agent_client::AgentError;
use crate::context::Ctx;
use crate::control;
use crate::store::StoreError;
use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use persys_proto::{
    ClusterEvent, ContainerState, DesiredState, Node, NodeStatus, RunRequest, Workload,
    WorkloadStatus,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
        .dispatcher
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        tracing::error!("dispatch loop started twice");
        return;
    };
    let mut changes = ctx.cache.subscribe();
    // Everything already loaded: finishes dispatches stored but never confirmed.
    for w in ctx.cache.workloads() {
        ctx.dispatcher.enqueue(&w.id);
    }
    let mut running: HashMap<String, bool> = HashMap::new(); // id → dirty
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut tasks: JoinSet<(String, Next)> = JoinSet::new();
    let mut timers: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(id) = rx.recv() => start(&ctx, &mut running, &mut tasks, id),
            ev = changes.recv() => match ev {
                Ok(ClusterEvent::Workload { workload }) => start(&ctx, &mut running, &mut tasks, workload.id),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for w in ctx.cache.workloads() {
                        start(&ctx, &mut running, &mut tasks, w.id);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((id, next)) = done else { continue };
                let dirty = running.remove(&id).unwrap_or(false);
                if next == Next::Retry {
                    let n = failures.entry(id.clone()).or_insert(0);
                    *n += 1;
                    let delay = requeue_delay(*n);
                    let tx = ctx.dispatcher.tx.clone();
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

/// Delay before the `n`th retry: 500 ms doubling, at most [`MAX_REQUEUE`].
pub fn requeue_delay(n: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << n.saturating_sub(1).min(16));
    Duration::from_millis(ms).min(MAX_REQUEUE)
}

/// What the agent must be asked to do for a workload, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create/adopt/start the container.
    Run,
    /// Stop it.
    Stop,
    /// Remove the container, then delete the record.
    Remove,
    /// No container to touch: only the record changes (stop of an unplaced workload →
    /// `Stopped`; delete → record removed).
    RecordOnly,
}

/// Pure decision: desired vs observed.
pub fn action_for(w: &Workload) -> Option<Action> {
    let placed = w.node_id.is_some() && w.status != WorkloadStatus::Pending;
    match w.desired_state {
        // Stopped while wanted running: a stop that finished after a start request.
        DesiredState::Running => (placed
            && matches!(
                w.status,
                WorkloadStatus::Scheduled | WorkloadStatus::Stopped
            ))
        .then_some(Action::Run),
        DesiredState::Stopped => match w.status {
            WorkloadStatus::Stopped => None,
            _ if !placed => Some(Action::RecordOnly),
            // Nothing runs: nothing to stop, but the record should say Stopped.
            WorkloadStatus::Exited
            | WorkloadStatus::Failed
            | WorkloadStatus::Missing
            | WorkloadStatus::ImagePullBackOff => Some(Action::RecordOnly),
            _ => Some(Action::Stop),
        },
        DesiredState::Deleted if !placed => Some(Action::RecordOnly),
        DesiredState::Deleted => Some(Action::Remove),
    }
}

/// Reconcile one workload.
pub async fn reconcile(ctx: &Ctx, id: &str) -> Next {
    let Some(w) = ctx.cache.workload(id).map(|v| v.value) else {
        return Next::Done;
    };
    let Some(action) = action_for(&w) else {
        return Next::Done;
    };
    let node = w
        .node_id
        .as_deref()
        .and_then(|n| ctx.cache.node(n))
        .map(|v| v.value);
    let result = match (action, node) {
        (Action::RecordOnly, _) | (_, None) => record_only(ctx, &w).await.map_err(Failure::Store),
        // The agent is gone: a delete can finish without it (the backstop removes the
        // orphan container if the node returns); anything else waits for the node.
        (Action::Remove, Some(n)) if n.status == NodeStatus::Inactive => {
            record_only(ctx, &w).await.map_err(Failure::Store)
        }
        (_, Some(n)) if n.status == NodeStatus::Inactive => return Next::Done,
        (Action::Run, Some(n)) => run_on(ctx, &w, &n).await,
        (Action::Stop, Some(n)) => stop_on(ctx, &w, &n).await,
        (Action::Remove, Some(n)) => remove_on(ctx, &w, &n).await,
    };
    match result {
        Ok(()) => Next::Done,
        Err(Failure::Agent(e)) if !e.is_retryable() => {
            tracing::warn!(workload = %id, error = %e, "agent refused");
            ctx.metrics.dispatch_errors.inc();
            if let Err(e) = mark_failed(ctx, &w, &e.to_string()).await {
                tracing::warn!(workload = %id, error = %e, "recording dispatch failure failed");
                return Next::Retry;
            }
            Next::Done
        }
        Err(e) => {
            tracing::warn!(workload = %id, error = %e, "dispatch failed; will retry");
            ctx.metrics.dispatch_errors.inc();
            Next::Retry
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Agent(AgentError),
    #[error(transparent)]
    Store(StoreError),
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(4)
        .with_jitter()
}

async fn with_permit<T, F, Fut>(ctx: &Ctx, node: &Node, call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let permits = ctx.dispatcher.node_permits(&node.node_id);
    let _permit = permits.acquire_owned().await.ok();
    call.retry(backoff())
        .when(|e: &AgentError| e.is_retryable())
        .await
        .map_err(Failure::Agent)
}

async fn run_on(ctx: &Ctx, w: &Workload, node: &Node) -> Result<(), Failure> {
    let req = RunRequest::for_workload(w);
    let state = with_permit(ctx, node, || ctx.agents.run(node, &req)).await?;
    apply(ctx, node, &state).await
}

async fn stop_on(ctx: &Ctx, w: &Workload, node: &Node) -> Result<(), Failure> {
    match with_permit(ctx, node, || ctx.agents.stop(node, &w.id)).await {
        Ok(state) => apply(ctx, node, &state).await,
        // No container: nothing runs, which is what the user asked for.
        Err(Failure::Agent(e)) if e.is_not_found() => {
            record_only(ctx, w).await.map_err(Failure::Store)
        }
        Err(e) => Err(e),
    }
}

async fn remove_on(ctx: &Ctx, w: &Workload, node: &Node) -> Result<(), Failure> {
    with_permit(ctx, node, || ctx.agents.remove(node, &w.id)).await?;
    record_only(ctx, w).await.map_err(Failure::Store)
}

async fn apply(ctx: &Ctx, node: &Node, state: &ContainerState) -> Result<(), Failure> {
    control::apply_state(ctx, &node.node_id, state)
        .await
        .map_err(Failure::Store)
}

/// The record-only part of an action: delete a deleted workload's record, or mark a
/// stopped one `Stopped`.
async fn record_only(ctx: &Ctx, w: &Workload) -> Result<(), StoreError> {
    match w.desired_state {
        DesiredState::Deleted => {
            if control::delete_workload_if(ctx, &w.id, |cur| {
                cur.desired_state == DesiredState::Deleted
            })
            .await?
            {
                tracing::info!(workload = %w.id, "workload deleted");
            }
        }
        DesiredState::Stopped => {
            control::update_workload(ctx, &w.id, |cur| {
                (cur.desired_state == DesiredState::Stopped
                    && cur.status != WorkloadStatus::Stopped)
                    .then(|| {
                        let mut next = cur.clone();
                        next.status = WorkloadStatus::Stopped;
                        next.updated_at = Utc::now();
                        next
                    })
            })
            .await?;
        }
        DesiredState::Running => {}
    }
    Ok(())
}

async fn mark_failed(ctx: &Ctx, w: &Workload, reason: &str) -> Result<(), StoreError> {
    let generation = w.generation;
    control::update_workload(ctx, &w.id, |cur| {
        (cur.generation == generation && cur.status == WorkloadStatus::Scheduled).then(|| {
            let mut next = cur.clone();
            next.status = WorkloadStatus::Failed;
            next.status_reason = Some(reason.to_string());
            next.updated_at = Utc::now();
            next
        })
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::WorkloadRequest;

    fn w(desired: DesiredState, status: WorkloadStatus, node: Option<&str>) -> Workload {
        let spec = WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let mut w = Workload::new("w".into(), spec, Utc::now());
        w.desired_state = desired;
        w.status = status;
        w.node_id = node.map(String::from);
        w
    }

    #[test]
    fn scheduled_but_unconfirmed_workload_is_run() {
        assert_eq!(
            action_for(&w(
                DesiredState::Running,
                WorkloadStatus::Scheduled,
                Some("n")
            )),
            Some(Action::Run)
        );
        assert_eq!(
            action_for(&w(
                DesiredState::Running,
                WorkloadStatus::Running,
                Some("n")
            )),
            None
        );
        assert_eq!(
            action_for(&w(DesiredState::Running, WorkloadStatus::Pending, None)),
            None
        );
        assert_eq!(
            action_for(&w(
                DesiredState::Running,
                WorkloadStatus::Stopped,
                Some("n")
            )),
            Some(Action::Run)
        );
    }

    #[test]
    fn stop_touches_the_agent_only_when_something_may_run() {
        assert_eq!(
            action_for(&w(
                DesiredState::Stopped,
                WorkloadStatus::Stopping,
                Some("n")
            )),
            Some(Action::Stop)
        );
        assert_eq!(
            action_for(&w(DesiredState::Stopped, WorkloadStatus::Pending, None)),
            Some(Action::RecordOnly)
        );
        assert_eq!(
            action_for(&w(DesiredState::Stopped, WorkloadStatus::Exited, Some("n"))),
            Some(Action::RecordOnly)
        );
        assert_eq!(
            action_for(&w(
                DesiredState::Stopped,
                WorkloadStatus::Stopped,
                Some("n")
            )),
            None
        );
    }

    #[test]
    fn delete_removes_the_container_of_a_placed_workload() {
        assert_eq!(
            action_for(&w(
                DesiredState::Deleted,
                WorkloadStatus::Running,
                Some("n")
            )),
            Some(Action::Remove)
        );
        assert_eq!(
            action_for(&w(DesiredState::Deleted, WorkloadStatus::Pending, None)),
            Some(Action::RecordOnly)
        );
    }

    #[test]
    fn requeue_delay_grows_and_is_capped() {
        assert_eq!(requeue_delay(1), Duration::from_millis(500));
        assert_eq!(requeue_delay(2), Duration::from_secs(1));
        assert_eq!(requeue_delay(40), MAX_REQUEUE);
    }
}
