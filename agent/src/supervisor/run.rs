//! `run`: idempotent create-and-start with generation fencing and image pulls.

use super::ledger::Intent;
use super::plan::{plan_run, RunPlan};
use super::{Supervisor, SupervisorError, RUN_ATTEMPTS};
use crate::metrics::ContainerOp;
use crate::runtime::{ContainerRuntime, ContainerSpec, RuntimeError};
use persys_proto::{container_name, ContainerState, RunRequest, WorkloadStatus};

/// Container names Docker accepts (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn is_container_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl<R: ContainerRuntime> Supervisor<R> {
    /// Run a workload: create and start its container, or answer the state of the one
    /// that already runs it (idempotent), replacing older generations on this node. An
    /// image that cannot be pulled is the state `ImagePullBackOff`, not an error.
    pub async fn run(&self, req: &RunRequest) -> Result<ContainerState, SupervisorError> {
        let name = container_name(&req.workload_id, req.generation);
        if req.project.is_some() {
            if !is_container_name(&name) {
                return Err(SupervisorError::Invalid(format!(
                    "workloadId {:?} is not a valid container name",
                    req.workload_id
                )));
            }
            let Some(projects) = &self.projects else {
                return Err(SupervisorError::Invalid(
                    "this node's container engine does not run Compose projects".into(),
                ));
            };
            let _guard = self.lock_workload(&req.workload_id).await;
            return Ok(projects.run(req).await?);
        }
        if !is_container_name(&req.workload_id) || !is_container_name(&name) {
            return Err(SupervisorError::Invalid(format!(
                "workloadId {:?} is not a valid container name",
                req.workload_id
            )));
        }
        if req.image.trim().is_empty() {
            return Err(SupervisorError::Invalid("image: is required".into()));
        }
        let spec =
            ContainerSpec::from_request(req, &self.node_id).map_err(SupervisorError::Invalid)?;
        let _guard = self.lock_workload(&req.workload_id).await;
        let mut pulled = false;
        for _ in 0..RUN_ATTEMPTS {
            if let Some(state) = self.settle_existing(req).await? {
                return Ok(state);
            }
            // The answer is "Running as of the start": an exit the engine reports
            // after it is observed later, so it wins over this answer whichever
            // reaches the scheduler last.
            let starting = chrono::Utc::now();
            match crate::metrics::container_op(ContainerOp::Run, self.runtime.run(&spec)).await {
                Ok(id) => {
                    self.remember_limits(&id, spec.nano_cpus, spec.memory_bytes);
                    return Ok(ContainerState {
                        container_id: Some(id),
                        observed_at: starting,
                        ..self.bare(req, WorkloadStatus::Running, None)
                    });
                }
                Err(RuntimeError::ImageNotFound(_)) if !pulled => {
                    self.reports
                        .push(self.bare(req, WorkloadStatus::Pulling, None));
                    tracing::info!(image = %req.image, workload = %req.workload_id, "pulling image");
                    match crate::metrics::container_op(
                        ContainerOp::Pull,
                        self.runtime.pull(&req.image),
                    )
                    .await
                    {
                        Ok(()) => pulled = true,
                        Err(RuntimeError::Pull { message, .. }) => {
                            tracing::warn!(image = %req.image, workload = %req.workload_id, reason = %message, "image pull failed");
                            return Ok(self.report(self.bare(
                                req,
                                WorkloadStatus::ImagePullBackOff,
                                Some(message),
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(RuntimeError::ImageNotFound(image)) => {
                    let reason = format!("image {image:?} is still absent after a successful pull");
                    return Ok(self.report(self.bare(
                        req,
                        WorkloadStatus::ImagePullBackOff,
                        Some(reason),
                    )));
                }
                Err(RuntimeError::StartFailed { id, message }) => {
                    tracing::warn!(workload = %req.workload_id, container = %id, reason = %message, "container did not start");
                    let failed = ContainerState {
                        container_id: Some(id),
                        ..self.bare(req, WorkloadStatus::Failed, Some(message))
                    };
                    return Ok(self.report(failed));
                }
                Err(RuntimeError::Engine(message)) => {
                    // The engine refused the container itself (bad bind, unknown network…).
                    tracing::warn!(workload = %req.workload_id, reason = %message, "container not created");
                    return Ok(self.report(self.bare(req, WorkloadStatus::Failed, Some(message))));
                }
                Err(RuntimeError::NameConflict(_)) => self.check_name_holder(req, &name).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SupervisorError::Conflict(format!(
            "container {name:?} kept changing while it was being run; try again"
        )))
    }

    /// Adopt or fence what this node already has of the workload: older generations are
    /// removed, the same generation is answered (started again if it stopped), a newer
    /// one refuses the request. `None` means "create the container".
    async fn settle_existing(
        &self,
        req: &RunRequest,
    ) -> Result<Option<ContainerState>, SupervisorError> {
        let mut current = None;
        for existing in self.containers_of(&req.workload_id).await? {
            match plan_run(&existing, &self.node_id, req.generation) {
                RunPlan::RefuseNewer { existing: have } => {
                    return Err(SupervisorError::Conflict(format!(
                        "workload {} already runs generation {have} on this node; generation {} is stale",
                        req.workload_id, req.generation
                    )))
                }
                RunPlan::Replace { stale } => {
                    tracing::info!(workload = %req.workload_id, stale_generation = stale, generation = req.generation, container = %existing.id, "removing stale generation");
                    self.ledger.record(&existing.id, Intent::Fence).await;
                    match crate::metrics::container_op(ContainerOp::Remove, self.runtime.remove(&existing.id)).await {
                        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.forget_container(&existing.id);
                }
                plan @ (RunPlan::Keep | RunPlan::Start) if current.is_none() => {
                    current = Some((plan, existing));
                }
                // Listed by our node label, so never foreign; a second copy of the same
                // generation cannot exist (one name per generation).
                RunPlan::Keep | RunPlan::Start | RunPlan::RefuseForeign { .. } => {}
            }
        }
        let Some((plan, existing)) = current else {
            return Ok(None);
        };
        self.remember_limits(&existing.id, existing.nano_cpus, existing.memory_bytes);
        if plan == RunPlan::Keep {
            return Ok(Some(self.state_of(&existing)));
        }
        self.ledger.forget(&existing.id).await;
        match crate::metrics::container_op(ContainerOp::Start, self.runtime.start(&existing.id))
            .await
        {
            Ok(()) => Ok(Some(ContainerState {
                container_id: Some(existing.id),
                restart_count: existing.restart_count,
                ..self.bare(req, WorkloadStatus::Running, None)
            })),
            Err(RuntimeError::Engine(message)) => Ok(Some(self.report(ContainerState {
                container_id: Some(existing.id),
                ..self.bare(req, WorkloadStatus::Failed, Some(message))
            }))),
            Err(e) => Err(e.into()),
        }
    }

    /// The generation's name is taken: by another node's container on a shared engine
    /// (refused, never touched), or by one of ours that appeared meanwhile (`Ok`: the
    /// next attempt adopts it).
    async fn check_name_holder(&self, req: &RunRequest, name: &str) -> Result<(), SupervisorError> {
        let holder = match self.runtime.inspect(name).await {
            Ok(o) => o,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match plan_run(&holder, &self.node_id, req.generation) {
            RunPlan::RefuseForeign { owner } => Err(SupervisorError::Conflict(match owner {
                Some(node) => format!(
                    "container name {name:?} is held by a container of node {node:?} on the same engine (a stale copy; that node's agent removes it)"
                ),
                None => format!("container name {name:?} is held by a container not managed by persys"),
            })),
            _ => Ok(()),
        }
    }
}
