//! The supervisor: the agent's container operations over any `ContainerRuntime`, with
//! the rules that make them safe — idempotent run, generation fencing, ownership by node
//! id (several agents may share one engine), and reporting of what it changed.

pub mod ledger;
pub mod plan;

use crate::report::{ReportHandle, Snapshot};
use crate::runtime::{
    ContainerRuntime, ContainerSpec, EventAction, LogOptions, LogStream, Observed, RuntimeError,
    RuntimeEvent,
};
use crate::state::{container_state, without_container, workload_of};
use chrono::Utc;
use ledger::{Intent, Ledger};
use persys_proto::{labels, ContainerState, RunRequest, WorkloadStatus};
use plan::{plan_run, RunPlan};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why an operation failed (as opposed to a container that failed, which is a state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what runs (newer generation, another node's container).
    #[error("{0}")]
    Conflict(String),
    /// No such container of this node.
    #[error("no container {0:?} on this node")]
    NotFound(String),
    /// The engine failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Resources held by this node's running containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Sum of CPU limits, nano CPUs.
    pub nano_cpus: i64,
    /// Sum of memory limits, bytes.
    pub memory_bytes: i64,
    /// Running containers.
    pub running: u32,
}

/// How many times `run` retries after losing a race on the container name.
const RUN_ATTEMPTS: usize = 4;

/// Container operations of one node.
pub struct Supervisor<R> {
    runtime: Arc<R>,
    node_id: String,
    ledger: Ledger,
    reports: ReportHandle,
    /// One lock per workload, so concurrent requests for it are serialised.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Container id → (nano CPUs, memory bytes), so heartbeats need no inspect.
    limits: Mutex<HashMap<String, (i64, i64)>>,
}

impl<R> std::fmt::Debug for Supervisor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

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
    /// A supervisor for node `node_id`, reporting through `reports`.
    pub fn new(runtime: Arc<R>, node_id: String, ledger: Ledger, reports: ReportHandle) -> Self {
        Self {
            runtime,
            node_id,
            ledger,
            reports,
            locks: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The report channel.
    pub fn reports(&self) -> &ReportHandle {
        &self.reports
    }

    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn lock_workload(&self, workload_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(workload_id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    fn remember_limits(&self, id: &str, nano_cpus: i64, memory_bytes: i64) {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (nano_cpus, memory_bytes));
    }

    fn state_of(&self, o: &Observed) -> ContainerState {
        let stopped = self.ledger.intent(&o.id) == Some(Intent::Stop);
        container_state(o, stopped, Utc::now())
    }

    /// The container `name_or_id` if it exists and belongs to this node.
    pub async fn own(&self, name_or_id: &str) -> Result<Option<Observed>, SupervisorError> {
        match self.runtime.inspect(name_or_id).await {
            Ok(o) if o.labels.get(labels::NODE_ID) == Some(&self.node_id) => Ok(Some(o)),
            Ok(_) | Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Run a workload: create and start its container, or answer the state of the one
    /// that already runs it (idempotent), replacing an older generation. An image that
    /// cannot be pulled is the state `ImagePullBackOff`, not an error.
    pub async fn run(&self, req: &RunRequest) -> Result<ContainerState, SupervisorError> {
        if !is_container_name(&req.workload_id) {
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
            match self.runtime.run(&spec).await {
                Ok(id) => {
                    self.remember_limits(&id, spec.nano_cpus, spec.memory_bytes);
                    return Ok(ContainerState {
                        container_id: Some(id),
                        ..self.bare(req, WorkloadStatus::Running, None)
                    });
                }
                Err(RuntimeError::ImageNotFound(_)) if !pulled => {
                    self.reports
                        .push(self.bare(req, WorkloadStatus::Pulling, None));
                    tracing::info!(image = %req.image, workload = %req.workload_id, "pulling image");
                    match self.runtime.pull(&req.image).await {
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
                Err(RuntimeError::NameConflict(_)) => {
                    if let Some(state) = self.resolve_conflict(req).await? {
                        return Ok(state);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SupervisorError::Conflict(format!(
            "container {:?} kept changing while it was being run; try again",
            req.workload_id
        )))
    }

    /// The name is taken: decide from the container holding it. `None` means "the way is
    /// clear now, create again".
    async fn resolve_conflict(
        &self,
        req: &RunRequest,
    ) -> Result<Option<ContainerState>, SupervisorError> {
        let existing = match self.runtime.inspect(&req.workload_id).await {
            Ok(o) => o,
            Err(RuntimeError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match plan_run(&existing, &self.node_id, req.generation) {
            RunPlan::Keep => {
                self.remember_limits(&existing.id, existing.nano_cpus, existing.memory_bytes);
                Ok(Some(self.state_of(&existing)))
            }
            RunPlan::Start => {
                self.ledger.forget(&existing.id).await;
                self.remember_limits(&existing.id, existing.nano_cpus, existing.memory_bytes);
                match self.runtime.start(&existing.id).await {
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
            RunPlan::Replace { stale } => {
                tracing::info!(workload = %req.workload_id, stale_generation = stale, generation = req.generation, container = %existing.id, "removing stale generation");
                self.ledger.record(&existing.id, Intent::Fence).await;
                match self.runtime.remove(&existing.id).await {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            RunPlan::RefuseNewer { existing: have } => Err(SupervisorError::Conflict(format!(
                "workload {} already runs generation {have} on this node; generation {} is stale",
                req.workload_id, req.generation
            ))),
            RunPlan::RefuseForeign { owner } => Err(SupervisorError::Conflict(match owner {
                Some(node) => format!(
                    "container name {:?} is held by a container of node {node:?} on the same engine (a stale copy; that node's agent removes it)",
                    req.workload_id
                ),
                None => format!(
                    "container name {:?} is held by a container not managed by persys",
                    req.workload_id
                ),
            })),
        }
    }

    fn bare(
        &self,
        req: &RunRequest,
        status: WorkloadStatus,
        reason: Option<String>,
    ) -> ContainerState {
        without_container(&req.workload_id, req.generation, status, reason, Utc::now())
    }

    fn report(&self, state: ContainerState) -> ContainerState {
        self.reports.push(state.clone());
        state
    }

    /// Stop a container of this node (killed after `timeout`). Unknown → `Missing`.
    pub async fn stop(
        &self,
        name_or_id: &str,
        timeout: Duration,
    ) -> Result<ContainerState, SupervisorError> {
        let Some(o) = self.own(name_or_id).await? else {
            return Ok(without_container(
                name_or_id,
                0,
                WorkloadStatus::Missing,
                None,
                Utc::now(),
            ));
        };
        let (workload, _) = workload_of(&o.labels, &o.name);
        let _guard = self.lock_workload(&workload).await;
        self.ledger.record(&o.id, Intent::Stop).await;
        match self.runtime.stop(&o.id, timeout).await {
            Ok(()) => {}
            Err(RuntimeError::NotFound(_)) => {
                let (w, g) = workload_of(&o.labels, &o.name);
                return Ok(without_container(
                    &w,
                    g,
                    WorkloadStatus::Missing,
                    None,
                    Utc::now(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        match self.runtime.inspect(&o.id).await {
            Ok(after) => Ok(self.state_of(&after)),
            Err(RuntimeError::NotFound(_)) => {
                let (w, g) = workload_of(&o.labels, &o.name);
                Ok(without_container(
                    &w,
                    g,
                    WorkloadStatus::Stopped,
                    None,
                    Utc::now(),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Force-remove a container of this node. The answer is `Stopped` without a
    /// container id; unknown → `Missing` (idempotent).
    pub async fn remove(&self, name_or_id: &str) -> Result<ContainerState, SupervisorError> {
        let Some(o) = self.own(name_or_id).await? else {
            return Ok(without_container(
                name_or_id,
                0,
                WorkloadStatus::Missing,
                None,
                Utc::now(),
            ));
        };
        let (workload, generation) = workload_of(&o.labels, &o.name);
        let _guard = self.lock_workload(&workload).await;
        self.ledger.record(&o.id, Intent::Remove).await;
        match self.runtime.remove(&o.id).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&o.id);
        Ok(without_container(
            &workload,
            generation,
            WorkloadStatus::Stopped,
            Some("removed on request".into()),
            Utc::now(),
        ))
    }

    /// The state of every container of this node.
    pub async fn list(&self) -> Result<Vec<ContainerState>, SupervisorError> {
        let listed = self.runtime.list(&self.node_id).await?;
        let inspections =
            futures::future::join_all(listed.iter().map(|c| self.runtime.inspect(&c.id))).await;
        let mut states = Vec::with_capacity(listed.len());
        for result in inspections {
            match result {
                Ok(o) if o.labels.get(labels::NODE_ID) == Some(&self.node_id) => {
                    self.remember_limits(&o.id, o.nano_cpus, o.memory_bytes);
                    states.push(self.state_of(&o));
                }
                // Removed between list and inspect.
                Ok(_) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(states)
    }

    /// Output of a container of this node.
    pub async fn logs(
        &self,
        name_or_id: &str,
        options: LogOptions,
    ) -> Result<LogStream, SupervisorError> {
        let o = self
            .own(name_or_id)
            .await?
            .ok_or_else(|| SupervisorError::NotFound(name_or_id.to_string()))?;
        Ok(self.runtime.logs(&o.id, options))
    }

    /// Limits held by the running containers of this node.
    pub async fn usage(&self) -> Result<Usage, SupervisorError> {
        let listed = self.runtime.list(&self.node_id).await?;
        let mut usage = Usage::default();
        for c in listed.iter().filter(|c| c.running) {
            let known = self
                .limits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&c.id)
                .copied();
            let (cpu, mem) = match known {
                Some(l) => l,
                None => match self.runtime.inspect(&c.id).await {
                    Ok(o) => {
                        self.remember_limits(&o.id, o.nano_cpus, o.memory_bytes);
                        (o.nano_cpus, o.memory_bytes)
                    }
                    Err(_) => continue,
                },
            };
            usage.nano_cpus = usage.nano_cpus.saturating_add(cpu);
            usage.memory_bytes = usage.memory_bytes.saturating_add(mem);
            usage.running += 1;
        }
        Ok(usage)
    }

    /// The state to report for an engine event, if any.
    pub async fn state_for_event(&self, ev: &RuntimeEvent) -> Option<ContainerState> {
        let (workload, generation) =
            workload_of(&ev.labels, ev.labels.get("name").map_or("", String::as_str));
        let intent = self.ledger.intent(&ev.container_id);
        if ev.action == EventAction::Destroy {
            self.ledger.forget(&ev.container_id).await;
            self.limits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ev.container_id);
            return match intent {
                Some(Intent::Fence) => None,
                Some(Intent::Remove | Intent::Stop) => Some(without_container(
                    &workload,
                    generation,
                    WorkloadStatus::Stopped,
                    Some("removed on request".into()),
                    Utc::now(),
                )),
                None => Some(without_container(
                    &workload,
                    generation,
                    WorkloadStatus::Missing,
                    Some("container was removed".into()),
                    Utc::now(),
                )),
            };
        }
        // A container being removed on purpose dies on the way; only its removal counts.
        if matches!(intent, Some(Intent::Fence | Intent::Remove)) {
            return None;
        }
        match self.runtime.inspect(&ev.container_id).await {
            Ok(o) => Some(self.state_of(&o)),
            // Gone already: the exit code the event carried is all there is.
            Err(RuntimeError::NotFound(_)) => {
                let code = ev.exit_code.unwrap_or(0);
                let (status, reason) = match intent {
                    Some(_) => (WorkloadStatus::Stopped, None),
                    None if code == 0 => (WorkloadStatus::Exited, None),
                    None => (
                        WorkloadStatus::Failed,
                        Some(format!("exited with code {code}")),
                    ),
                };
                Some(ContainerState {
                    exit_code: ev.exit_code,
                    ..without_container(&workload, generation, status, reason, Utc::now())
                })
            }
            Err(e) => {
                tracing::warn!(container = %ev.container_id, error = %e, "cannot inspect container after event");
                None
            }
        }
    }
}

impl<R: ContainerRuntime> Snapshot for Supervisor<R> {
    async fn snapshot(&self) -> Result<Vec<ContainerState>, String> {
        self.list().await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
