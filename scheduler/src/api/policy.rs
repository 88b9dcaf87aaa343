//! `GET /cluster/policy` and `PUT /cluster/policy`: the admission policy (see
//! [`crate::admission`]), stored in etcd at `/persys/policy`. Reading is for anyone
//! who may read the cluster; the gateway lets only admins write.

use super::error::AppError;
use super::extract::JsonBody;
use super::workloads::current_policy;
use super::AppState;
use axum::extract::State;
use axum::Json;
use persys_proto::{keys, ClusterPolicy};

/// The policy in force (the default, which refuses every host privilege, when none
/// was set).
pub async fn get(State(ctx): State<AppState>) -> Result<Json<ClusterPolicy>, AppError> {
    Ok(Json(current_policy(&ctx).await?))
}

/// Replace the policy; applies to workloads created from then on.
pub async fn set(
    State(ctx): State<AppState>,
    JsonBody(policy): JsonBody<ClusterPolicy>,
) -> Result<Json<ClusterPolicy>, AppError> {
    policy.validate().map_err(|e| AppError::invalid(&e))?;
    let changed = ctx.store().put_if_changed(keys::POLICY, &policy).await;
    // Whatever the outcome, the next create reads the policy from etcd again.
    ctx.policy().invalidate();
    let changed = changed?;
    if changed {
        tracing::info!(policy = ?policy, "cluster policy changed");
    }
    Ok(Json(policy))
}
