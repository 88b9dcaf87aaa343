//! A service's replicas as the cache holds them, and the two changes the controller
//! makes to them: a new replica (placed and stored like any workload, spread across
//! nodes) and a removal (the same path as `DELETE /workloads/{id}`).

use crate::context::Ctx;
use crate::records::cache::page::WorkloadFilter;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use persys_proto::service::SERVICE_LABEL;
use persys_proto::{DesiredState, Health, Service, Workload, WorkloadSpec, WorkloadStatus};
use std::sync::Arc;

/// The live replicas of service `name` (not being deleted), oldest first.
pub fn replicas_of(ctx: &Ctx, name: &str) -> Vec<Arc<Workload>> {
    let filter = WorkloadFilter {
        label: Some((SERVICE_LABEL.to_string(), name.to_string())),
        ..WorkloadFilter::default()
    };
    ctx.cache()
        .list(&filter)
        .into_iter()
        .filter(|w| w.service_id.as_deref() == Some(name))
        .filter(|w| w.desired_state != DesiredState::Deleted)
        .collect()
}

/// Whether a replica serves: it runs and, with a health check, is healthy. `since` is
/// when that last became true (the record's last change), for `minHealthySeconds`.
pub fn serving(w: &Workload) -> Option<DateTime<Utc>> {
    let running = w.status == WorkloadStatus::Running;
    let healthy = w.spec.health_check.is_none() || w.health == Some(Health::Healthy);
    (running && healthy).then_some(w.updated_at)
}

/// Whether a replica's container ended for good (the engine does not restart a
/// container stopped or killed from outside, and a removed one is gone): the service
/// replaces it.
pub fn ended(w: &Workload) -> bool {
    w.desired_state == DesiredState::Running
        && matches!(
            w.status,
            WorkloadStatus::Failed | WorkloadStatus::Exited | WorkloadStatus::Missing
        )
}

/// A service's replicas split by revision.
#[derive(Debug, Default)]
pub struct ReplicaView {
    /// Replicas of the service's current revision.
    pub current: Vec<Arc<Workload>>,
    /// Replicas of any other revision.
    pub other: Vec<Arc<Workload>>,
}

impl ReplicaView {
    /// The replicas of `service` in the cache.
    pub fn of(ctx: &Ctx, service: &Service) -> Self {
        let (current, other) = replicas_of(ctx, &service.name)
            .into_iter()
            .partition(|w| w.service_revision == Some(service.revision));
        Self { current, other }
    }

    /// The smallest replica index no current-revision replica has.
    pub fn free_index(&self) -> u32 {
        let mut used: Vec<u32> = self.current.iter().filter_map(|w| w.replica).collect();
        used.sort_unstable();
        let mut index = 0;
        for u in used {
            if u == index {
                index += 1;
            } else if u > index {
                break;
            }
        }
        index
    }
}

/// Store a new replica `index` of `service` running `template` (its current revision).
pub async fn create(
    ctx: &Arc<Ctx>,
    service: &Service,
    template: &WorkloadSpec,
    index: u32,
) -> Result<Workload, StoreError> {
    let mut spec = template.clone();
    spec.name = service.replica_name(index);
    let mut w = Workload::new(uuid::Uuid::new_v4().to_string(), spec, Utc::now());
    w.service_id = Some(service.name.clone());
    w.service_revision = Some(service.revision);
    w.replica = Some(index);
    let stored = ctx.placer().submit(ctx, w).await?;
    tracing::info!(service = %service.name, revision = service.revision, replica = index, workload = %stored.id, node = ?stored.node_id, "replica created");
    Ok(stored)
}

/// Remove replica `id` (its container is stopped and removed, then the record).
pub async fn remove(ctx: &Ctx, id: &str) -> Result<(), StoreError> {
    if crate::control::request_delete(ctx, id).await?.is_some() {
        tracing::info!(workload = %id, "replica removed");
    }
    Ok(())
}
