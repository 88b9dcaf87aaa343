//! One step of a service's reconcile: scale to `replicas`, and roll replicas of older
//! revisions over to the current one `parallelism` at a time.
//!
//! The rules that keep a rollout safe (what Swarm's users missed, moby/moby#37972):
//! - an old replica is removed only when enough new ones serve (`start-first`: the
//!   service never has fewer serving replicas than it wants), or, with `stop-first`,
//!   one batch at a time while no new replica is still starting;
//! - a new replica that does not serve within `healthyDeadlineSeconds` fails the
//!   rollout; `rollback` makes the previous revision current again, and then only the
//!   replicas of the failed revision are replaced: the old ones were never touched;
//! - a replica of another revision that does not serve is removed at once (it gives
//!   nothing, and it holds the place of a good one).

use super::replicas::{self, serving, ReplicaView};
use super::{Next, ServiceError};
use crate::context::Ctx;
use crate::store::Updated;
use chrono::{Duration as Span, Utc};
use persys_proto::{FailureAction, RolloutState, Service, UpdateOrder, Workload};
use std::sync::Arc;

/// Whether `w` has served for at least `min` seconds.
fn available(w: &Workload, min: u32) -> bool {
    serving(w).is_some_and(|since| Utc::now() - since >= Span::seconds(i64::from(min)))
}

/// Reconcile `service` (stored at `mod_revision`) one step.
pub async fn step(
    ctx: &Arc<Ctx>,
    service: &Service,
    view: &ReplicaView,
    mod_revision: i64,
) -> Result<Next, ServiceError> {
    let want = service.replicas as usize;
    let update = &service.update;
    // Replicas whose container ended for good are replaced (under the same index).
    let mut live = Vec::with_capacity(view.current.len());
    for w in &view.current {
        if replicas::ended(w) {
            tracing::info!(service = %service.name, replica = ?w.replica, status = %w.status, "replica ended; replacing it");
            replicas::remove(ctx, &w.id).await?;
        } else {
            live.push(w.clone());
        }
    }
    let view = &ReplicaView {
        current: live,
        other: view.other.clone(),
    };
    // Replicas of other revisions that do not serve go first.
    let (old_serving, old_broken): (Vec<_>, Vec<_>) =
        view.other.iter().partition(|w| serving(w).is_some());
    for w in &old_broken {
        replicas::remove(ctx, &w.id).await?;
    }
    // A new replica past its deadline without serving fails the rollout.
    if !old_serving.is_empty() || service.rollout == RolloutState::Progressing {
        let deadline = Span::seconds(i64::from(update.healthy_deadline_seconds));
        if let Some(late) = view
            .current
            .iter()
            .find(|w| serving(w).is_none() && Utc::now() - w.created_at > deadline)
        {
            return fail(ctx, service, late, mod_revision).await;
        }
    }
    let current_serving = view
        .current
        .iter()
        .filter(|w| available(w, update.min_healthy_seconds))
        .count();
    let current_starting = view.current.len() - current_serving;
    if old_serving.is_empty() {
        // Plain scaling.
        let mut view_current = view.current.clone();
        if view_current.len() < want {
            let mut next = ReplicaView {
                current: view_current.clone(),
                other: Vec::new(),
            };
            for _ in view_current.len()..want {
                let index = next.free_index();
                let w = replicas::create(ctx, service, &service.template, index).await?;
                next.current.push(Arc::new(w));
            }
        } else if view_current.len() > want {
            view_current.sort_by_key(|w| std::cmp::Reverse(w.replica));
            for w in view_current.iter().take(view_current.len() - want) {
                replicas::remove(ctx, &w.id).await?;
            }
        }
        if service.rollout == RolloutState::Progressing {
            if current_serving >= want.min(view.current.len()) && current_starting == 0 {
                set_state(ctx, service, RolloutState::Complete, None, mod_revision).await?;
                return Ok(Next::Done);
            }
            return Ok(Next::After(super::ROLLOUT_TICK));
        }
        return Ok(Next::Done);
    }
    if service.rollout == RolloutState::Paused {
        return Ok(Next::Done);
    }
    let parallelism = update.parallelism as usize;
    let mut next = ReplicaView {
        current: view.current.clone(),
        other: Vec::new(),
    };
    match update.order {
        UpdateOrder::StartFirst => {
            // Old replicas go once new ones serve in their place.
            let surplus = (current_serving + old_serving.len()).saturating_sub(want);
            for w in old_by_removal_order(&old_serving).into_iter().take(surplus) {
                replicas::remove(ctx, &w.id).await?;
            }
            let remaining_old = old_serving.len() - surplus.min(old_serving.len());
            // New ones start, at most `parallelism` not yet serving at a time.
            let mut starting = current_starting;
            while starting < parallelism
                && next.current.len() < want
                && next.current.len() + remaining_old < want + parallelism
            {
                let index = next.free_index();
                let w = replicas::create(ctx, service, &service.template, index).await?;
                next.current.push(Arc::new(w));
                starting += 1;
            }
        }
        UpdateOrder::StopFirst => {
            if current_starting == 0 {
                let mut stopped = 0;
                for w in old_by_removal_order(&old_serving)
                    .into_iter()
                    .take(parallelism)
                {
                    replicas::remove(ctx, &w.id).await?;
                    stopped += 1;
                }
                let target = (next.current.len() + stopped).min(want);
                while next.current.len() < target {
                    let index = next.free_index();
                    let w = replicas::create(ctx, service, &service.template, index).await?;
                    next.current.push(Arc::new(w));
                }
            }
        }
    }
    Ok(Next::After(super::ROLLOUT_TICK))
}

/// Old replicas in the order they are replaced: highest index first.
fn old_by_removal_order<'a>(old: &[&'a Arc<Workload>]) -> Vec<&'a Arc<Workload>> {
    let mut v = old.to_vec();
    v.sort_by_key(|w| std::cmp::Reverse(w.replica));
    v
}

/// The rollout failed on replica `late`: roll back or pause, as the service says.
async fn fail(
    ctx: &Arc<Ctx>,
    service: &Service,
    late: &Workload,
    mod_revision: i64,
) -> Result<Next, ServiceError> {
    let why = late
        .health_output
        .clone()
        .or_else(|| late.status_reason.clone())
        .unwrap_or_else(|| format!("status {}", late.status));
    let reason = format!(
        "replica {} of revision {} did not serve within {}s: {why}",
        late.spec.name, service.revision, service.update.healthy_deadline_seconds
    );
    tracing::warn!(service = %service.name, %reason, "rollout failed");
    let previous = service
        .history
        .iter()
        .rev()
        .find(|r| r.revision < service.revision)
        .cloned();
    match (service.update.failure_action, previous) {
        (FailureAction::Rollback, Some(prev)) => {
            let name = service.name.clone();
            let reason = reason.clone();
            let out = super::update_service(ctx, service, mod_revision, move |cur| {
                let mut next = cur.clone();
                next.revision = prev.revision;
                next.template = prev.template.clone();
                next.rollout = RolloutState::RolledBack;
                next.rollout_reason = Some(reason.clone());
                next.updated_at = Utc::now();
                Some(next)
            })
            .await?;
            if let Updated::Written(_) = out {
                tracing::info!(service = %name, revision = prev.revision, "rolled back");
            }
            Ok(Next::After(super::ROLLOUT_TICK))
        }
        _ => {
            set_state(
                ctx,
                service,
                RolloutState::Paused,
                Some(reason),
                mod_revision,
            )
            .await?;
            Ok(Next::Done)
        }
    }
}

async fn set_state(
    ctx: &Ctx,
    service: &Service,
    state: RolloutState,
    reason: Option<String>,
    mod_revision: i64,
) -> Result<(), ServiceError> {
    let revision = service.revision;
    super::update_service(ctx, service, mod_revision, move |cur| {
        // Only the revision this step looked at; a newer one is the next step's.
        (cur.revision == revision && (cur.rollout != state || cur.rollout_reason != reason)).then(
            || {
                let mut next = cur.clone();
                next.rollout = state;
                next.rollout_reason = reason.clone();
                next.updated_at = Utc::now();
                next
            },
        )
    })
    .await?;
    Ok(())
}
