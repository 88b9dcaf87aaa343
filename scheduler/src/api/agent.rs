//! Routes agents call on the mTLS port: heartbeat and status pushes. The node's
//! identity is its certificate's common name, never the body.

use super::error::AppError;
use super::extract::{CallingNode, JsonBody};
use super::AppState;
use crate::{control, liveness};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use persys_proto::{HeartbeatResponse, NodeHeartbeat, StatusReport};

/// `POST /nodes/heartbeat`: in memory only (an Inactive node becomes Active: one write).
/// An unknown node is told to register again.
pub async fn heartbeat(
    State(ctx): State<AppState>,
    CallingNode(cn): CallingNode,
    JsonBody(hb): JsonBody<NodeHeartbeat>,
) -> Result<Json<HeartbeatResponse>, AppError> {
    let known = liveness::heartbeat(&ctx, &cn, &hb).await?;
    if !known {
        tracing::debug!(node = %cn, "heartbeat from an unregistered identity");
    }
    Ok(Json(HeartbeatResponse { reregister: !known }))
}

/// `POST /nodes/{id}/status`: container states pushed by the node's agent.
pub async fn status(
    State(ctx): State<AppState>,
    CallingNode(cn): CallingNode,
    Path(id): Path<String>,
    JsonBody(report): JsonBody<StatusReport>,
) -> Result<StatusCode, AppError> {
    if cn != id {
        return Err(AppError::forbidden(format!(
            "certificate {cn:?} may not report for node {id:?}"
        )));
    }
    if ctx.cache.node(&id).is_none() {
        return Err(AppError::not_found(format!("node {id} is not registered")));
    }
    control::apply_report(&ctx, &id, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}
