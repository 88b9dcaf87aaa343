//! `/nodes` routes for users: list, get, cordon, uncordon, drain.

use super::error::AppError;
use super::AppState;
use crate::cache::page::{node_token, parse_node_token};
use crate::context::Ctx;
use crate::control;
use crate::moves::DrainProgress;
use crate::placement::Allocation;
use crate::store::Updated;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use persys_proto::{Node, NodeStatus};
use serde::Serialize;
use std::collections::HashMap;

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
    /// The view of `node`; a draining node's progress is computed from the workloads
    /// on it (the by-node index, not every workload).
    fn of(ctx: &Ctx, node: Node) -> Self {
        if node.status != NodeStatus::Draining {
            return Self {
                node,
                drained: false,
                status_reason: None,
            };
        }
        let on_node = ctx.cache().workloads_on(&node.node_id);
        let progress = DrainProgress::of(&node.node_id, on_node.iter().map(|w| &**w));
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

/// A node as answered: allocation from the cache's index, free resources and last
/// heartbeat from in-memory liveness (neither is written to etcd per heartbeat).
fn decorate(ctx: &Ctx, node: &Node, allocated: Allocation) -> Node {
    let mut n = node.clone();
    n.allocated_cpu = allocated.cpu;
    n.allocated_memory = allocated.memory;
    if let Some(b) = ctx.liveness().get(&n.node_id) {
        if b.wall.is_some() {
            n.last_heartbeat = b.wall;
            n.available_cpu = b.available_cpu;
            n.available_memory = b.available_memory;
        }
    }
    n
}

/// Every node, decorated (see [`decorate`]).
pub fn decorated_nodes(ctx: &Ctx) -> Vec<Node> {
    let view = ctx.cache().placement_view();
    view.nodes
        .iter()
        .map(|n| {
            let a = view.allocs.get(&n.node_id).copied().unwrap_or_default();
            decorate(ctx, n, a)
        })
        .collect()
}

/// `GET /nodes`: `{"nodes": [...]}`; with `?limit=N` one page, `{"items": [...],
/// "continue": "<token>"}` (the token absent on the last page).
pub async fn list(
    State(ctx): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let Some(limit) = super::paging::limit(&q)? else {
        let nodes = decorated_nodes(&ctx)
            .into_iter()
            .map(|n| NodeView::of(&ctx, n))
            .collect();
        return Ok(Json(NodeViews { nodes }).into_response());
    };
    let after = match super::paging::token(&q) {
        Some(t) => Some(parse_node_token(t).map_err(|e| AppError::invalid_field("continue", e))?),
        None => None,
    };
    let page = ctx.cache().node_page(after.as_deref(), limit);
    let items: Vec<NodeView> = page
        .items
        .iter()
        .map(|n| NodeView::of(&ctx, decorate(&ctx, n, ctx.cache().allocation(&n.node_id))))
        .collect();
    Ok(Json(super::paging::Page {
        items,
        next: page.next.as_deref().map(node_token),
    })
    .into_response())
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
    let node = ctx.cache().node(id)?.value;
    let node = decorate(ctx, &node, ctx.cache().allocation(id));
    Some(NodeView::of(ctx, node))
}

/// The node after a status change, as answered.
fn answer(ctx: &Ctx, node: Node) -> Json<NodeView> {
    let id = node.node_id.clone();
    Json(view(ctx, &id).unwrap_or_else(|| NodeView::of(ctx, node)))
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
    let Some(current) = ctx.cache().node(&id) else {
        return Err(not_found(&id));
    };
    let placed = ctx
        .cache()
        .workloads_on(&id)
        .iter()
        .filter(|w| w.node_id.as_deref() == Some(id.as_str()))
        .count();
    if placed > 0 {
        return Err(AppError::conflict(format!(
            "node {id} still has {placed} workload(s) placed on it; drain it (`persys node drain {id}`) and remove or move them first"
        )));
    }
    if ctx
        .records()
        .delete_node_at(&id, current.mod_revision)
        .await?
        .is_none()
    {
        return Err(AppError::conflict(format!(
            "node {id} changed while being removed; try again"
        )));
    }
    ctx.store()
        .delete(&crate::dns::node_key(&ctx.config().cluster_domain, &id))
        .await?;
    ctx.liveness().forget(&id);
    ctx.agents().forget(&id);
    tracing::info!(node = %id, "node removed; its certificate no longer works");
    Ok(Json(NodeView {
        node: current.value,
        drained: false,
        status_reason: None,
    }))
}
