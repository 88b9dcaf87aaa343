//! `/nodes` routes for users: list, get, cordon, uncordon, drain.

use super::error::AppError;
use super::AppState;
use crate::context::Ctx;
use crate::control;
use crate::placer::allocations;
use crate::store::Updated;
use axum::extract::{Path, State};
use axum::Json;
use persys_proto::{Node, NodeList, NodeStatus};

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
pub async fn list(State(ctx): State<AppState>) -> Json<NodeList> {
    Json(NodeList {
        nodes: decorated_nodes(&ctx),
    })
}

fn not_found(id: &str) -> AppError {
    AppError::not_found(format!("node {id} not found"))
}

/// `GET /nodes/{id}`.
pub async fn get_one(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Node>, AppError> {
    decorated_nodes(&ctx)
        .into_iter()
        .find(|n| n.node_id == id)
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

async fn set(ctx: &Ctx, id: &str, to: NodeStatus) -> Result<Json<Node>, AppError> {
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
            if to == NodeStatus::Active {
                ctx.kick_pending();
            }
            Ok(Json(v.value))
        }
        Updated::Unchanged(v) => {
            if from_inactive {
                tracing::debug!(node = %id, "uncordon of an inactive node leaves it inactive");
            }
            Ok(Json(v.value))
        }
        Updated::Missing => Err(not_found(id)),
    }
}

/// `POST /nodes/{id}/cordon`: no new placements; running workloads stay.
pub async fn cordon(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Node>, AppError> {
    set(&ctx, &id, NodeStatus::Cordoned).await
}

/// `POST /nodes/{id}/uncordon`: placements again.
pub async fn uncordon(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Node>, AppError> {
    set(&ctx, &id, NodeStatus::Active).await
}

/// `POST /nodes/{id}/drain`: no new placements (moving workloads off comes later).
pub async fn drain(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Node>, AppError> {
    set(&ctx, &id, NodeStatus::Draining).await
}
