//! One step of a scheduled service (a cron job): start the run that is due, as its
//! concurrency policy allows, and trim finished runs to the history limits.
//!
//! A run is a workload whose id is derived from the service and the due time, so a
//! step repeated after a crash or a leader change finds the run it started instead of
//! starting a second one. Runs missed while no scheduler was up count as one: only the
//! latest due time runs.

use super::replicas::{self, replicas_of};
use super::{Next, ServiceError};
use crate::context::Ctx;
use chrono::{DateTime, Utc};
use persys_proto::schedule::CronSchedule;
use persys_proto::service::{ConcurrencyPolicy, JobSettings};
use persys_proto::{DesiredState, Service, Workload, WorkloadStatus};
use std::sync::Arc;
use std::time::Duration;

/// Namespace of run ids (UUID v5 of `<service>/<due time>`).
const RUN_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7065_7273_7973_2d6a_6f62_2d72_756e_7331);

/// Whether a run has ended, and how.
fn outcome(w: &Workload) -> Option<bool> {
    match w.status {
        WorkloadStatus::Exited => Some(w.exit_code.unwrap_or(0) == 0),
        WorkloadStatus::Failed | WorkloadStatus::Missing | WorkloadStatus::Stopped => Some(false),
        _ if w.desired_state != DesiredState::Running => Some(false),
        _ => None,
    }
}

/// Reconcile the scheduled service `service` (stored at `mod_revision`).
pub async fn step(
    ctx: &Arc<Ctx>,
    service: &Service,
    job: &JobSettings,
    mod_revision: i64,
) -> Result<Next, ServiceError> {
    let schedule = match CronSchedule::parse(&job.schedule) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(service = %service.name, error = %e, "stored schedule does not parse");
            return Ok(Next::Done);
        }
    };
    let runs = replicas_of(ctx, &service.name);
    trim_history(ctx, &runs, job).await?;
    let active: Vec<&Arc<Workload>> = runs.iter().filter(|w| outcome(w).is_none()).collect();
    let now = Utc::now();
    let since = service.last_schedule_time.unwrap_or(service.created_at);
    let (due, next) = schedule.due(since, now);
    if let Some(at) = due {
        match job.concurrency_policy {
            ConcurrencyPolicy::Forbid if !active.is_empty() => {
                tracing::info!(service = %service.name, due = %at, "run skipped: the previous one is still active");
            }
            policy => {
                if policy == ConcurrencyPolicy::Replace {
                    for w in &active {
                        replicas::remove(ctx, &w.id).await?;
                    }
                }
                start_run(ctx, service, at).await?;
            }
        }
        record_schedule_time(ctx, service, at, mod_revision).await?;
    }
    Ok(match next {
        Some(t) => Next::After((t - now).to_std().unwrap_or(Duration::ZERO)),
        None => Next::Done,
    })
}

async fn start_run(
    ctx: &Arc<Ctx>,
    service: &Service,
    at: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let key = format!("{}/{}", service.name, at.to_rfc3339());
    let id = uuid::Uuid::new_v5(&RUN_NAMESPACE, key.as_bytes()).to_string();
    let mut spec = service.template.clone();
    spec.name = format!("{}-{}", service.name, at.timestamp());
    let mut w = Workload::new(id, spec, Utc::now());
    w.service_id = Some(service.name.clone());
    w.service_revision = Some(service.revision);
    let stored = ctx.placer().submit(ctx, w).await?;
    tracing::info!(service = %service.name, due = %at, workload = %stored.id, node = ?stored.node_id, "job run started");
    Ok(())
}

/// Keep the newest `successfulJobsHistory` successful and `failedJobsHistory` failed
/// runs; remove older finished ones.
async fn trim_history(
    ctx: &Ctx,
    runs: &[Arc<Workload>],
    job: &JobSettings,
) -> Result<(), ServiceError> {
    let mut finished: Vec<(&Arc<Workload>, bool)> = runs
        .iter()
        .filter_map(|w| outcome(w).map(|ok| (w, ok)))
        .collect();
    finished.sort_by_key(|(w, _)| std::cmp::Reverse(w.created_at));
    let (mut ok_kept, mut failed_kept) = (0, 0);
    for (w, ok) in finished {
        let (kept, limit) = if ok {
            (&mut ok_kept, job.successful_jobs_history)
        } else {
            (&mut failed_kept, job.failed_jobs_history)
        };
        if *kept < limit {
            *kept += 1;
        } else {
            replicas::remove(ctx, &w.id).await?;
        }
    }
    Ok(())
}

async fn record_schedule_time(
    ctx: &Ctx,
    service: &Service,
    at: DateTime<Utc>,
    mod_revision: i64,
) -> Result<(), ServiceError> {
    super::update_service(ctx, service, mod_revision, move |cur| {
        (cur.last_schedule_time.is_none_or(|t| t < at)).then(|| {
            let mut next = cur.clone();
            next.last_schedule_time = Some(at);
            next
        })
    })
    .await?;
    Ok(())
}
