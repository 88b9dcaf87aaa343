//! `/nodes` routes for users: list, get, cordon, uncordon, drain.

use super::error::AppError;
use super::AppState;
use crate::context::Ctx;
use crate::control;
use crate::moves::DrainProgress;
use crate::placer::allocations;
use crate::store::Updated;
use axum::extract::{Path, State};
use axum::Json;
use persys_proto::{Node, NodeStatus, Workload};
use serde::Serialize;

/// A node as the node routes answer it: the record, plus how far a drain got (computed
/// from the current records, never stored).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// `true` once a `Draining` node has no workload left to move and no old copy left
    /// to remove (its status stays `Draining`).
    pub drained: bool,
    /// For a `Draining` node: `drained`, or what is left (`draining: 2 workloads to
    /// move, 1 old copy to remove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
}

impl NodeView {
    fn of(node: Node, workloads: &[Workload]) -> Self {
        if node.status != NodeStatus::Draining {
            return Self {
                node,
                drained: false,
                status_reason: None,
            };
        }
        let progress = DrainProgress::of(&node.node_id, workloads);
        Self {
            node,
            drained: progress.is_done(),
            status_reason: Some(progress.describe()),
        }
    }
}

/// Answer of `GET /nodes`: `{"nodes": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeViews {
    /// Nodes.
    pub nodes: Vec<NodeView>,
}

fn views(ctx: &Ctx) -> Vec<NodeView> {
    let workloads = ctx.cache.workloads();
    decorated_nodes(ctx)
        .into_iter()
        .map(|n| NodeView::of(n, &workloads))
        .collect()
}

/// Nodes as answered: allocation from the cached workloads, free resources and last
/// heartbeat from in-memory liveness (neither is written to etcd per heartbeat).
pub fn decorated_nodes(ctx: &Ctx) -> Vec<Node> {
    let allocs = allocations(&ctx.cache.workloads());
    ctx.cache
        .nodes()
        .into_iter()
        .map(|mut n| {
            if let Some(a) = allocs.get(&n.node_id) {
                n.allocated_cpu = a.cpu;
                n.allocated_memory = a.memory;
            }
            if let Some(b) = ctx.liveness.get(&n.node_id) {
                if b.wall.is_some() {
                    n.last_heartbeat = b.wall;
                    n.available_cpu = b.available_cpu;
                    n.available_memory = b.available_memory;
                }
            }
            n
        })
        .collect()
}

/// `GET /nodes`: `{"nodes": [...]}`.
pub async fn list(State(ctx): State<AppState>) -> Json<NodeViews> {
    Json(NodeViews { nodes: views(&ctx) })
}

fn not_found(id: &str) -> AppError {
    AppError::not_found(format!("node {id} not found"))
}

/// `GET /nodes/{id}`.
pub async fn get_one(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, AppError> {
    view(&ctx, &id).map(Json).ok_or_else(|| not_found(&id))
}

fn view(ctx: &Ctx, id: &str) -> Option<NodeView> {
    views(ctx).into_iter().find(|v| v.node.node_id == id)
}

/// The node after a status change, as answered.
fn answer(ctx: &Ctx, node: Node) -> Json<NodeView> {
    let id = node.node_id.clone();
    Json(view(ctx, &id).unwrap_or_else(|| NodeView::of(node, &ctx.cache.workloads())))
}

async fn set(ctx: &Ctx, id: &str, to: NodeStatus) -> Result<Json<NodeView>, AppError> {
    let mut from_inactive = false;
    let out = control::update_node(ctx, id, |n| {
        // Liveness owns Active/Inactive; an operator's uncordon of a silent node must
        // not pretend it is alive.
        if n.status == to || (to == NodeStatus::Active && n.status == NodeStatus::Inactive) {
            from_inactive = n.status == NodeStatus::Inactive;
            return None;
        }
        let mut next = n.clone();
        next.status = to;
        Some(next)
    })
    .await?;
    match out {
        Updated::Written(v) => {
            tracing::info!(node = %id, status = %v.value.status, "node status set");
            if matches!(to, NodeStatus::Active | NodeStatus::Draining) {
                // Capacity appeared, or workloads must move off.
                ctx.kick_pending();
            }
            Ok(answer(ctx, v.value))
        }
        Updated::Unchanged(v) => {
            if from_inactive {
                tracing::debug!(node = %id, "uncordon of an inactive node leaves it inactive");
            }
            Ok(answer(ctx, v.value))
        }
        Updated::Missing => Err(not_found(id)),
    }
}

/// `POST /nodes/{id}/cordon`: no new placements; running workloads stay.
pub async fn cordon(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, AppError> {
    set(&ctx, &id, NodeStatus::Cordoned).await
}

/// `POST /nodes/{id}/uncordon`: placements again (a drain stops; what moved stays moved).
pub async fn uncordon(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, AppError> {
    set(&ctx, &id, NodeStatus::Active).await
}

/// `POST /nodes/{id}/drain`: no new placements, and every workload that wants to run
/// moves to another node with a new generation (for `always`/`unless-stopped` the new
/// copy runs before the old one is removed; others stop the old copy first). The node
/// stays `Draining`; `drained` turns `true` when nothing is left.
pub async fn drain(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, AppError> {
    set(&ctx, &id, NodeStatus::Draining).await
}

/// `DELETE /nodes/{id}`: forget a node (admin only, through the gateway): its record,
/// its DNS name and its certificate, which no longer works; its id may then be
/// registered again with the join token. Refused (409) while workloads are placed on
/// it: drain it first.
pub async fn remove(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, AppError> {
    let Some(current) = ctx.cache.node(&id) else {
        return Err(not_found(&id));
    };
    let placed = ctx
        .cache
        .workloads()
        .iter()
        .filter(|w| w.node_id.as_deref() == Some(id.as_str()))
        .count();
    if placed > 0 {
        return Err(AppError::conflict(format!(
            "node {id} still has {placed} workload(s) placed on it; drain it (`persys node drain {id}`) and remove or move them first"
        )));
    }
    let key = persys_proto::keys::node(&id);
    let Some(rev) = ctx.store.delete_at(&key, current.mod_revision).await? else {
        return Err(AppError::conflict(format!(
            "node {id} changed while being removed; try again"
        )));
    };
    ctx.cache
        .apply(crate::store::StoreEvent::NodeDeleted(id.clone(), rev));
    ctx.store
        .delete(&crate::dns::node_key(&ctx.config.cluster_domain, &id))
        .await?;
    ctx.liveness.forget(&id);
    ctx.agents.forget(&id);
    tracing::info!(node = %id, "node removed; its certificate no longer works");
    Ok(Json(NodeView::of(current.value, &[])))
}
