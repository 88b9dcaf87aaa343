//! `/workloads` routes.

use super::error::AppError;
use super::extract::JsonBody;
use super::paging;
use super::AppState;
use crate::cache::page::{parse_workload_token, workload_token, WorkloadFilter};
use crate::control;
use crate::forward::WriteId;
use crate::placer::Redeployed;
use crate::store::Updated;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use persys_proto::limits::MAX_WORKLOAD_BYTES;
use persys_proto::{
    keys, ClusterPolicy, DesiredState, Public, ScheduleResponse, Workload, WorkloadRequest,
    WorkloadStatus,
};
use std::collections::HashMap;
use std::sync::Arc;

async fn submit(
    ctx: &AppState,
    write_id: Option<Extension<WriteId>>,
    req: WorkloadRequest,
    labels_select: bool,
) -> Result<Workload, AppError> {
    let mut spec = req.validate().map_err(|e| AppError::invalid(&e))?;
    if labels_select && spec.node_selector.is_empty() {
        // The original scheduler matched workload labels against node labels. persys's
        // own labels (the repository and branch a git-compose project follows) say what
        // redeploys it, not where it may run.
        spec.node_selector = spec
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("persys."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    // Named by the request, so a repeated attempt of it finds its record.
    let id = write_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), |Extension(w)| w.0);
    let policy = current_policy(ctx).await?;
    crate::admission::admit(&spec, &policy).map_err(|d| AppError::policy_denied(&d))?;
    let w = Workload::new(id, spec, Utc::now());
    check_record_size(&w)?;
    Ok(ctx.placer().submit(ctx, w).await?)
}

/// The cluster policy (the default when none was set): on the leader from memory once
/// read in its term (see [`crate::policy_cache`]), else one etcd read.
pub async fn current_policy(ctx: &AppState) -> Result<ClusterPolicy, AppError> {
    let term = ctx.store().fence_term();
    if let Some(p) = term.and_then(|t| ctx.policy().get(t)) {
        return Ok(p);
    }
    let generation = ctx.policy().generation();
    let policy = ctx
        .store()
        .get::<ClusterPolicy>(keys::POLICY)
        .await?
        .map(|v| v.value)
        .unwrap_or_default();
    if let Some(t) = term {
        ctx.policy().fill(generation, t, policy.clone());
    }
    Ok(policy)
}

/// A record must fit what every hop accepts (etcd, the agent's dispatch limit).
fn check_record_size(w: &Workload) -> Result<(), AppError> {
    let size = serde_json::to_vec(w)
        .map_err(|e| AppError::internal(format!("encoding the workload record: {e}")))?
        .len();
    if size > MAX_WORKLOAD_BYTES {
        return Err(AppError::too_large(format!(
            "the workload record would be {size} bytes, over the limit of {MAX_WORKLOAD_BYTES} bytes (MAX_WORKLOAD_BYTES)"
        )));
    }
    Ok(())
}

/// `POST /workloads`: 201 with the stored record.
pub async fn create(
    State(ctx): State<AppState>,
    write_id: Option<Extension<WriteId>>,
    JsonBody(req): JsonBody<WorkloadRequest>,
) -> Result<(StatusCode, Json<Public<Workload>>), AppError> {
    let w = submit(&ctx, write_id, req, false).await?;
    Ok((StatusCode::CREATED, Json(Public::new(w))))
}

/// `POST /workloads/schedule` (the original route): 200 with the keys its client reads.
pub async fn schedule(
    State(ctx): State<AppState>,
    write_id: Option<Extension<WriteId>>,
    JsonBody(req): JsonBody<WorkloadRequest>,
) -> Result<Json<ScheduleResponse>, AppError> {
    let w = submit(&ctx, write_id, req, true).await?;
    Ok(Json(ScheduleResponse::from(&w)))
}

/// Parse the filters of `GET /workloads`: `?status=&node=&label=k=v`.
pub fn parse_filter(q: &HashMap<String, String>) -> Result<WorkloadFilter, AppError> {
    let status = match q.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(WorkloadStatus::parse(s).ok_or_else(|| {
            AppError::invalid_field("status", format!("{s:?} is not a workload status"))
        })?),
    };
    let label = match q.get("label").filter(|s| !s.is_empty()) {
        None => None,
        Some(l) => {
            let (k, v) = l.split_once('=').ok_or_else(|| {
                AppError::invalid_field("label", format!("{l:?} is not key=value"))
            })?;
            Some((k.to_string(), v.to_string()))
        }
    };
    Ok(WorkloadFilter {
        status,
        node: q.get("node").filter(|s| !s.is_empty()).cloned(),
        label,
    })
}

/// `GET /workloads`: a bare array, as the original; with `?limit=N` one page,
/// `{"items": [...], "continue": "<token>"}`. Served from the cache's indexes.
pub async fn list(
    State(ctx): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let filter = parse_filter(&q)?;
    let public = |w: &Arc<Workload>| Public::new((**w).clone());
    let Some(limit) = paging::limit(&q)? else {
        let all: Vec<Public<Workload>> = ctx.cache().list(&filter).iter().map(public).collect();
        return Ok(Json(all).into_response());
    };
    let after = match paging::token(&q) {
        Some(t) => {
            Some(parse_workload_token(t).map_err(|e| AppError::invalid_field("continue", e))?)
        }
        None => None,
    };
    let page = ctx.cache().page(&filter, after.as_ref(), limit);
    Ok(Json(paging::Page {
        items: page.items.iter().map(public).collect(),
        next: page.next.as_ref().map(workload_token),
    })
    .into_response())
}

fn not_found(id: &str) -> AppError {
    AppError::not_found(format!("workload {id} not found"))
}

/// `GET /workloads/{id}`.
pub async fn get_one(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Public<Workload>>, AppError> {
    ctx.cache()
        .workload(&id)
        .map(|v| Json(Public::new(v.value)))
        .ok_or_else(|| not_found(&id))
}

fn written(out: Updated<Workload>, id: &str) -> Result<Workload, AppError> {
    match out {
        Updated::Written(v) | Updated::Unchanged(v) => Ok(v.value),
        Updated::Missing => Err(not_found(id)),
    }
}

/// `POST /workloads/{id}/stop`: desired Stopped; `Stopping` until the agent confirms.
pub async fn stop(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Public<Workload>>, AppError> {
    let mut refused = None;
    let out = control::update_workload(&ctx, &id, |cur| {
        if cur.desired_state == DesiredState::Deleted {
            refused = Some(AppError::conflict(format!(
                "workload {id} is being deleted"
            )));
            return None;
        }
        if cur.desired_state == DesiredState::Stopped {
            return None;
        }
        let mut next = cur.clone();
        next.desired_state = DesiredState::Stopped;
        next.status = if cur.node_id.is_none()
            || cur.status == WorkloadStatus::Pending
            || cur.status.is_terminal()
        {
            WorkloadStatus::Stopped
        } else {
            WorkloadStatus::Stopping
        };
        next.updated_at = Utc::now();
        Some(next)
    })
    .await?;
    if let Some(e) = refused {
        return Err(e);
    }
    if matches!(out, Updated::Written(_)) {
        ctx.kick_pending();
    }
    written(out, &id).map(|w| Json(Public::new(w)))
}

/// `POST /workloads/{id}/start`: desired Running; placed workloads run again,
/// unplaced ones wait for capacity.
pub async fn start(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Public<Workload>>, AppError> {
    let mut refused = None;
    let out = control::update_workload(&ctx, &id, |cur| {
        if cur.desired_state == DesiredState::Deleted {
            refused = Some(AppError::conflict(format!(
                "workload {id} is being deleted"
            )));
            return None;
        }
        let active = matches!(
            cur.status,
            WorkloadStatus::Running
                | WorkloadStatus::Restarting
                | WorkloadStatus::Scheduled
                | WorkloadStatus::Pulling
                | WorkloadStatus::ContainerCreating
        );
        if cur.desired_state == DesiredState::Running
            && (active || cur.status == WorkloadStatus::Pending)
        {
            return None;
        }
        let mut next = cur.clone();
        next.desired_state = DesiredState::Running;
        if cur.node_id.is_none() {
            next.status = WorkloadStatus::Pending;
        } else {
            next.status = WorkloadStatus::Scheduled;
            next.exit_code = None;
            next.status_reason = None;
        }
        next.updated_at = Utc::now();
        Some(next)
    })
    .await?;
    if let Some(e) = refused {
        return Err(e);
    }
    if matches!(out, Updated::Written(_)) {
        ctx.kick_pending();
    }
    written(out, &id).map(|w| Json(Public::new(w)))
}

/// `POST /workloads/{id}/redeploy`: a new generation replaces the container, on the
/// same node if it still fits there, else on another (see [`crate::moves::redeploy`]).
/// 200 with the record; 409 when it is being deleted, stopping, or its node is lost
/// and nothing else fits.
pub async fn redeploy(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Public<Workload>>, AppError> {
    match ctx.placer().redeploy(&ctx, &id).await? {
        Redeployed::Done(w) => Ok(Json(Public::new(*w))),
        Redeployed::Refused(e) => Err(AppError::conflict(e.to_string())),
        Redeployed::Missing => Err(not_found(&id)),
    }
}

/// `DELETE /workloads/{id}`: desired Deleted; the container is removed, then the
/// record. A workload that never reached a node is removed at once.
pub async fn delete(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Public<Workload>>, AppError> {
    control::request_delete(&ctx, &id)
        .await?
        .map(|w| Json(Public::new(w)))
        .ok_or_else(|| not_found(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_status_filter_names_the_field() {
        let e = parse_filter(&q(&[("status", "Sleeping")])).expect_err("invalid");
        assert!(e.message.starts_with("status:"), "{}", e.message);
    }

    #[test]
    fn label_filter_needs_key_value() {
        assert!(parse_filter(&q(&[("label", "team")])).is_err());
        let f = parse_filter(&q(&[("label", "team=web"), ("status", "pending")])).expect("valid");
        assert_eq!(f.label, Some(("team".into(), "web".into())));
        assert_eq!(f.status, Some(WorkloadStatus::Pending));
    }
}
