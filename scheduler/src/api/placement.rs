//! `GET /workloads/{id}/placement`: the placement of one workload explained node by
//! node (`persys why`), by the pure placement pass itself ([`placement::explain`]).

use super::error::AppError;
use super::AppState;
use crate::cache::index::reserves;
use crate::context::Ctx;
use crate::placement::{self, Allocation, Candidate, Strategy};
use axum::extract::{Path, State};
use axum::Json;
use persys_proto::{Node, PlacementExplanation, Workload};
use std::collections::HashMap;
use std::sync::Arc;

/// Reads of the workload and of the placement view that may race a change of the
/// workload before the answer is built from the last pair anyway.
const CONSISTENT_READS: usize = 3;

/// What placement would be given for one workload: the workload, the nodes, and
/// what is allocated on each.
struct Inputs {
    workload: Workload,
    nodes: Vec<Arc<Node>>,
    allocations: HashMap<String, Allocation>,
}

/// The inputs for workload `id` from the cache's placement view (what the placer
/// decides against: nodes and the reservation index), or `None` if there is no such
/// workload. The allocations leave out the workload's own reservation, so that the
/// node it is on is judged as if it were to place it again (not rejected for its own
/// usage). The workload and the view are two reads: they are taken again while the
/// workload changed between them, so that the reservation left out is the one the
/// view counts.
fn candidates(ctx: &Ctx, id: &str) -> Option<Inputs> {
    let mut before = ctx.cache().workload(id)?;
    let mut view = ctx.cache().placement_view();
    for _ in 1..CONSISTENT_READS {
        let after = ctx.cache().workload(id)?;
        if after.mod_revision == before.mod_revision {
            break;
        }
        before = after;
        view = ctx.cache().placement_view();
    }
    let workload = before.value;
    let mut allocations = view.allocs;
    if let Some(node) = reserves(&workload) {
        if let Some(a) = allocations.get_mut(node) {
            a.remove(&workload.spec.resources);
        }
    }
    Some(Inputs {
        workload,
        nodes: view.nodes,
        allocations,
    })
}

/// The strategy the placer uses: the scheduler refuses to start with an unknown one,
/// so the default is only a fallback that cannot happen.
fn strategy(ctx: &Ctx) -> Strategy {
    ctx.config().placement.parse().unwrap_or_default()
}

/// `GET /workloads/{id}/placement`: 200 with the explanation, 404 for an unknown
/// workload.
pub async fn explain(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PlacementExplanation>, AppError> {
    let inputs = candidates(&ctx, &id)
        .ok_or_else(|| AppError::not_found(format!("workload {id} not found")))?;
    let candidates: Vec<Candidate<'_>> = inputs
        .nodes
        .iter()
        .map(|node| Candidate {
            node: node.as_ref(),
            allocated: inputs
                .allocations
                .get(&node.node_id)
                .copied()
                .unwrap_or_default(),
        })
        .collect();
    Ok(Json(placement::explain(
        &inputs.workload,
        &candidates,
        strategy(&ctx),
    )))
}
