//! Record changes shared by the API and the loops. Each is a compare-and-swap write to
//! etcd whose result is applied to the cache at once, so the next read sees it.

use crate::context::Ctx;
use crate::status;
use crate::store::{StoreError, Updated};
use chrono::Utc;
use persys_proto::{ContainerState, Node, NodeStatus, StatusReport, Workload, WorkloadStatus};
use std::collections::HashSet;

/// A workload changed less than this long ago is not marked `Missing` from a full report.
const MISSING_GRACE_SECS: i64 = 2;

/// CAS-update a workload record; a written record is applied to the cache.
pub async fn update_workload<F>(ctx: &Ctx, id: &str, f: F) -> Result<Updated<Workload>, StoreError>
where
    F: FnMut(&Workload) -> Option<Workload>,
{
    ctx.records().update_workload(id, f).await
}

/// CAS-update a node record; a written record is applied to the cache.
pub async fn update_node<F>(ctx: &Ctx, id: &str, f: F) -> Result<Updated<Node>, StoreError>
where
    F: FnMut(&Node) -> Option<Node>,
{
    ctx.records().update_node(id, f).await
}

/// Delete a workload record if `still` holds for its current value (re-read on every
/// attempt). Returns whether it was deleted.
pub async fn delete_workload_if<F>(ctx: &Ctx, id: &str, still: F) -> Result<bool, StoreError>
where
    F: FnMut(&Workload) -> bool,
{
    let deleted = ctx.records().delete_workload_if(id, still).await?;
    if deleted {
        // Capacity was freed.
        ctx.kick_pending();
    }
    Ok(deleted)
}

/// Delete workload `id` as the user's `DELETE` does: an unplaced record goes at once;
/// a placed one is marked `Deleted` (the dispatcher removes its container, then the
/// record). The record after, `None` when there is none.
pub async fn request_delete(ctx: &Ctx, id: &str) -> Result<Option<Workload>, StoreError> {
    let Some(cached) = ctx.cache().workload(id) else {
        return Ok(None);
    };
    if cached.value.node_id.is_none() {
        let mut gone = cached.value;
        if delete_workload_if(ctx, id, |cur| cur.node_id.is_none()).await? {
            gone.desired_state = persys_proto::DesiredState::Deleted;
            return Ok(Some(gone));
        }
    }
    let out = update_workload(ctx, id, |cur| {
        (cur.desired_state != persys_proto::DesiredState::Deleted).then(|| {
            let mut next = cur.clone();
            next.desired_state = persys_proto::DesiredState::Deleted;
            next.updated_at = Utc::now();
            next
        })
    })
    .await?;
    Ok(match out {
        Updated::Written(v) | Updated::Unchanged(v) => Some(v.value),
        Updated::Missing => None,
    })
}

/// Set a node's status (only when it differs). Returns the node after.
pub async fn set_node_status(
    ctx: &Ctx,
    id: &str,
    to: NodeStatus,
    only_from: Option<NodeStatus>,
) -> Result<Updated<Node>, StoreError> {
    update_node(ctx, id, |n| {
        if n.status == to || only_from.is_some_and(|from| n.status != from) {
            return None;
        }
        let mut next = n.clone();
        next.status = to;
        Some(next)
    })
    .await
}

/// Apply one container state reported by `node_id`'s agent. Stale generations, other
/// nodes' workloads and no-op changes write nothing.
pub async fn apply_state(
    ctx: &Ctx,
    node_id: &str,
    state: &ContainerState,
) -> Result<(), StoreError> {
    // Checked against the cache first so that a no-op push costs no etcd read.
    let Some(cached) = ctx.cache().workload(&state.workload_id) else {
        return Ok(());
    };
    if cached.value.node_id.as_deref() != Some(node_id)
        || status::apply_container_state(&cached.value, state, Utc::now()).is_none()
    {
        return Ok(());
    }
    let was_terminal = cached.value.status.is_terminal();
    let out = update_workload(ctx, &state.workload_id, |w| {
        if w.node_id.as_deref() != Some(node_id) {
            return None;
        }
        status::apply_container_state(w, state, Utc::now())
    })
    .await?;
    if let Updated::Written(v) = out {
        tracing::debug!(workload = %v.value.id, status = %v.value.status, "status applied");
        if v.value.generation == cached.value.generation {
            let restarts = v
                .value
                .restart_count
                .saturating_sub(cached.value.restart_count);
            ctx.metrics().workload_restarts.inc_by(u64::from(restarts));
        }
        if v.value.status.is_terminal() && !was_terminal {
            // A finished container may still hold its reservation, but a stop frees it.
            ctx.kick_pending();
        }
    }
    Ok(())
}

/// Apply an agent's status report; with `full`, this node's workloads absent from it
/// are marked `Missing`.
pub async fn apply_report(
    ctx: &Ctx,
    node_id: &str,
    report: &StatusReport,
) -> Result<(), StoreError> {
    // Concurrently, so that the changes of one report share write batches.
    futures::future::join_all(
        report
            .containers
            .iter()
            .map(|state| apply_state(ctx, node_id, state)),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<()>, StoreError>>()?;
    if report.full {
        let listed: HashSet<&str> = report
            .containers
            .iter()
            .map(|c| c.workload_id.as_str())
            .collect();
        for w in ctx.cache().workloads_on(node_id) {
            if w.node_id.as_deref() != Some(node_id) || listed.contains(w.id.as_str()) {
                continue;
            }
            // A record changed moments ago may be newer than the agent's list (a run
            // that finished while the report was in flight); the next report decides.
            // Unknown is our own mark from the node's absence, so it is never "recent".
            let recent = Utc::now() - w.updated_at < chrono::Duration::seconds(MISSING_GRACE_SECS);
            if w.status != WorkloadStatus::Unknown && (recent || !status::expects_container(&w)) {
                continue;
            }
            let generation = w.generation;
            update_workload(ctx, &w.id, |cur| {
                if cur.node_id.as_deref() != Some(node_id) || cur.generation != generation {
                    return None;
                }
                status::resolve_unlisted(cur, Utc::now())
            })
            .await?;
        }
    }
    Ok(())
}
