//! Reconciling one workload with its agent: run, stop, remove-then-delete, each agent
//! call retried with backoff on network errors.

use super::action::{action_for, retire_due, Action};
use super::Next;
use crate::agent_client::AgentError;
use crate::context::Ctx;
use crate::control;
use crate::metrics::{DispatchAction, DispatchResult};
use crate::store::StoreError;
use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use persys_proto::{
    container_name, ContainerState, DesiredState, Node, NodeStatus, RetiringCopy, RunRequest,
    Workload, WorkloadStatus,
};
use std::time::Duration;

/// Reconcile one workload.
pub async fn reconcile(ctx: &Ctx, id: &str) -> Next {
    let Some(w) = ctx.cache().workload(id).map(|v| v.value) else {
        return Next::Done;
    };
    // Before the action: a job's old copy must be gone before its new one runs.
    if retire_due(&w) {
        let results = &ctx.metrics().dispatch_results;
        match retire(ctx, &w).await {
            Ok(()) => results.inc(DispatchAction::Retire, DispatchResult::Ok),
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "removing old copies failed; will retry");
                ctx.metrics().dispatch_errors.inc();
                results.inc(DispatchAction::Retire, e.result());
                return Next::Retry;
            }
        }
    }
    let Some(action) = action_for(&w) else {
        return Next::Done;
    };
    let node = w
        .node_id
        .as_deref()
        .and_then(|n| ctx.cache().node(n))
        .map(|v| v.value);
    let results = &ctx.metrics().dispatch_results;
    let (counted, result) = match (action, node) {
        (Action::RecordOnly, _) | (_, None) => (
            DispatchAction::Record,
            record_only(ctx, &w).await.map_err(Failure::Store),
        ),
        // The agent is gone: a delete can finish without it (the backstop removes the
        // orphan container if the node returns); anything else waits for the node.
        (Action::Remove, Some(n)) if n.status == NodeStatus::Inactive => (
            DispatchAction::Record,
            record_only(ctx, &w).await.map_err(Failure::Store),
        ),
        (action, Some(n)) if n.status == NodeStatus::Inactive => {
            results.inc(counted_action(action), DispatchResult::Deferred);
            return Next::Done;
        }
        (Action::Run, Some(n)) => (DispatchAction::Run, run_on(ctx, &w, &n).await),
        (Action::Stop, Some(n)) => (DispatchAction::Stop, stop_on(ctx, &w, &n).await),
        (Action::Remove, Some(n)) => (DispatchAction::Remove, remove_on(ctx, &w, &n).await),
    };
    match result {
        Ok(()) => {
            results.inc(counted, DispatchResult::Ok);
            Next::Done
        }
        Err(Failure::Agent(e)) if !e.is_retryable() => {
            tracing::warn!(workload = %id, error = %e, "agent refused");
            ctx.metrics().dispatch_errors.inc();
            results.inc(counted, DispatchResult::Refused);
            if let Err(e) = mark_failed(ctx, &w, &e.to_string()).await {
                tracing::warn!(workload = %id, error = %e, "recording dispatch failure failed");
                return Next::Retry;
            }
            Next::Done
        }
        Err(e) => {
            tracing::warn!(workload = %id, error = %e, "dispatch failed; will retry");
            ctx.metrics().dispatch_errors.inc();
            results.inc(counted, e.result());
            Next::Retry
        }
    }
}

fn counted_action(action: Action) -> DispatchAction {
    match action {
        Action::Run => DispatchAction::Run,
        Action::Stop => DispatchAction::Stop,
        Action::Remove => DispatchAction::Remove,
        Action::RecordOnly => DispatchAction::Record,
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Agent(AgentError),
    #[error(transparent)]
    Store(StoreError),
}

impl Failure {
    /// The metric's result of a failure that is retried.
    fn result(&self) -> DispatchResult {
        match self {
            Self::Agent(e) if !e.is_retryable() => DispatchResult::Refused,
            Self::Agent(_) => DispatchResult::AgentUnreachable,
            Self::Store(_) => DispatchResult::StoreError,
        }
    }
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
    let permits = ctx.dispatcher().node_permits(&node.node_id);
    let _permit = permits.acquire_owned().await.ok();
    // Boxed, so that a dispatch waiting for its node's permit is small: in a storm tens
    // of thousands wait, and the agent call's future is kilobytes.
    Box::pin(
        call.retry(backoff())
            .when(|e: &AgentError| e.is_retryable()),
    )
    .await
    .map_err(Failure::Agent)
}

async fn run_on(ctx: &Ctx, w: &Workload, node: &Node) -> Result<(), Failure> {
    // The request is built once the permit is held, not kept by every waiting dispatch.
    let state = with_permit(ctx, node, || {
        let req = RunRequest::for_workload(w);
        async move { ctx.agents().run(node, &req).await }
    })
    .await?;
    apply(ctx, node, &state).await
}

async fn stop_on(ctx: &Ctx, w: &Workload, node: &Node) -> Result<(), Failure> {
    match with_permit(ctx, node, || ctx.agents().stop(node, &w.id)).await {
        Ok(state) => apply(ctx, node, &state).await,
        // No container: nothing runs, which is what the user asked for.
        Err(Failure::Agent(e)) if e.is_not_found() => {
            record_only(ctx, w).await.map_err(Failure::Store)
        }
        Err(e) => Err(e),
    }
}

async fn remove_on(ctx: &Ctx, w: &Workload, node: &Node) -> Result<(), Failure> {
    with_permit(ctx, node, || ctx.agents().remove(node, &w.id)).await?;
    record_only(ctx, w).await.map_err(Failure::Store)
}

/// Remove the old copies of a moved workload (each by its generation's container name,
/// so a newer copy on the same node is never touched) and drop them from the record.
/// A copy on a node that is gone (unknown, Inactive or silent) is dropped without a
/// call: the backstop reconcile removes it if that node comes back.
async fn retire(ctx: &Ctx, w: &Workload) -> Result<(), Failure> {
    let mut done: Vec<RetiringCopy> = Vec::new();
    let mut failed = None;
    for copy in &w.retiring {
        let node = ctx.cache().node(&copy.node_id).map(|v| v.value);
        let Some(node) = node.filter(|n| {
            n.status != NodeStatus::Inactive
                && !ctx
                    .liveness()
                    .is_expired(&n.node_id, tokio::time::Instant::now())
        }) else {
            tracing::info!(workload = %w.id, node = %copy.node_id, generation = copy.generation, "old copy's node is gone; the backstop removes it if it returns");
            done.push(copy.clone());
            continue;
        };
        let name = container_name(&w.id, copy.generation);
        match with_permit(ctx, &node, || ctx.agents().remove(&node, &name)).await {
            Ok(()) => {
                tracing::info!(workload = %w.id, node = %copy.node_id, generation = copy.generation, "old copy removed");
                done.push(copy.clone());
            }
            Err(Failure::Agent(e)) if !e.is_retryable() => {
                tracing::warn!(workload = %w.id, node = %copy.node_id, error = %e, "agent refused to remove an old copy; the backstop retries");
                done.push(copy.clone());
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if !done.is_empty() {
        control::update_workload(ctx, &w.id, |cur| {
            let keep: Vec<RetiringCopy> = cur
                .retiring
                .iter()
                .filter(|c| !done.contains(c))
                .cloned()
                .collect();
            (keep.len() != cur.retiring.len()).then(|| {
                let mut next = cur.clone();
                next.retiring = keep;
                next
            })
        })
        .await
        .map_err(Failure::Store)?;
    }
    failed.map_or(Ok(()), Err)
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
