//! The supervisor: the agent's container operations over any `ContainerRuntime`, with
//! the rules that make them safe — idempotent run, generation fencing, ownership by node
//! id (several agents may share one engine), and reporting of what it changed.

pub mod health;
pub mod ledger;
mod observe;
pub mod plan;
mod run;

use crate::metrics::ContainerOp;
use crate::report::{ReportHandle, Snapshot};
use crate::runtime::{ContainerRuntime, LogOptions, LogStream, Observed, RuntimeError};
use crate::state::{container_state, generation_of, without_container, workload_of};
use chrono::Utc;
use ledger::{Intent, Ledger};
use persys_proto::{labels, ContainerState, RunRequest, WorkloadStatus};
use std::cmp::Reverse;
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

impl From<crate::compose::ProjectError> for SupervisorError {
    fn from(e: crate::compose::ProjectError) -> Self {
        use crate::compose::ProjectError as P;
        match e {
            P::Invalid(m) => Self::Invalid(m),
            P::Conflict(m) => Self::Conflict(m),
            P::NotFound(m) => Self::NotFound(m),
            P::Engine(m) => Self::Runtime(RuntimeError::Engine(m)),
        }
    }
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
    /// Container id → exit code of its last run (from `die` events), so a container the
    /// engine restarted still reports why it had to.
    last_exits: Mutex<HashMap<String, i64>>,
    /// This node's Compose projects (none on an engine that cannot run them).
    projects: Option<Arc<crate::compose::Projects>>,
    /// Health-check loops of its single containers and what they found.
    health: health::HealthMonitors,
    /// Client of HTTP health probes (no proxy, no redirects followed).
    probe_http: reqwest::Client,
}

impl<R> std::fmt::Debug for Supervisor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
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
            last_exits: Mutex::new(HashMap::new()),
            projects: None,
            health: health::HealthMonitors::default(),
            probe_http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent("persys-agent health check")
                .build()
                .unwrap_or_default(),
        }
    }

    /// The health-check loops (for shutdown).
    pub fn health_monitors(&self) -> &health::HealthMonitors {
        &self.health
    }

    /// The same, running Compose projects through `projects` too.
    pub fn with_projects(mut self, projects: Arc<crate::compose::Projects>) -> Self {
        self.projects = Some(projects);
        self
    }

    /// This node's Compose projects, if its engine runs them.
    pub fn projects(&self) -> Option<&Arc<crate::compose::Projects>> {
        self.projects.as_ref()
    }

    /// The projects, when `key` (a workload id or `<id>-g<generation>`) names one.
    async fn project_named(&self, key: &str) -> Option<&Arc<crate::compose::Projects>> {
        match &self.projects {
            Some(p) if p.owns(key).await => Some(p),
            _ => None,
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

    fn forget_container(&self, id: &str) {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.last_exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn remember_exit(&self, id: &str, code: i64) {
        self.last_exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), code);
    }

    fn state_of(&self, o: &Observed) -> ContainerState {
        let stopped = self.ledger.intent(&o.id) == Some(Intent::Stop);
        let last_exit = self
            .last_exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&o.id)
            .copied();
        let mut state = container_state(o, stopped, last_exit, Utc::now());
        let health = self.health_of(&o.id, &o.labels);
        state.restart_count += health.restarts;
        if state.status == WorkloadStatus::Running {
            state.health = health.health;
        } else if self.ledger.intent(&o.id) == Some(Intent::Restart) {
            state.status = WorkloadStatus::Restarting;
            state.reason = Some("restarting: the health check failed".into());
        }
        state.health_output = health.output;
        state
    }

    fn is_ours(&self, o: &Observed) -> bool {
        o.labels.get(labels::NODE_ID) == Some(&self.node_id)
    }

    /// The container `name_or_id` (container name or id) if it exists and belongs to
    /// this node.
    pub async fn own(&self, name_or_id: &str) -> Result<Option<Observed>, SupervisorError> {
        match self.runtime.inspect(name_or_id).await {
            Ok(o) if self.is_ours(&o) => Ok(Some(o)),
            Ok(_) | Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// This node's containers of the workload `workload_id`, newest generation first.
    /// Found by labels: names carry the generation (`<workload id>-g<generation>`).
    pub async fn containers_of(&self, workload_id: &str) -> Result<Vec<Observed>, SupervisorError> {
        let listed = self
            .runtime
            .list_workload(&self.node_id, workload_id)
            .await?;
        let mut found = Vec::with_capacity(listed.len());
        for c in &listed {
            match self.runtime.inspect(&c.id).await {
                Ok(o) if self.is_ours(&o) => found.push(o),
                // Removed between list and inspect.
                Ok(_) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        found.sort_by_key(|o| Reverse(generation_of(&o.labels)));
        Ok(found)
    }

    /// What a request path names: a workload id (all of its containers on this node,
    /// newest first), else one container by name or id. Empty when none is ours.
    pub async fn find(&self, key: &str) -> Result<Vec<Observed>, SupervisorError> {
        let by_workload = self.containers_of(key).await?;
        if !by_workload.is_empty() {
            return Ok(by_workload);
        }
        Ok(self.own(key).await?.into_iter().collect())
    }

    fn bare(
        &self,
        req: &RunRequest,
        status: WorkloadStatus,
        reason: Option<String>,
    ) -> ContainerState {
        without_container(&req.workload_id, req.generation, status, reason, Utc::now())
    }

    /// `state` goes back to the scheduler as the answer to its call; see
    /// [`ReportHandle::answered`].
    pub fn answered(&self, state: &ContainerState) {
        self.reports.answered(state.clone());
    }

    fn report(&self, state: ContainerState) -> ContainerState {
        self.reports.push(state.clone());
        state
    }

    /// Stop the (newest) container of a workload, or a container by name or id, of this
    /// node (killed after `timeout`). Unknown → `Missing`.
    pub async fn stop(
        &self,
        name_or_id: &str,
        timeout: Duration,
    ) -> Result<ContainerState, SupervisorError> {
        if let Some(projects) = self.project_named(name_or_id).await {
            let _guard = self.lock_workload(name_or_id).await;
            return Ok(projects.stop(name_or_id, timeout).await?);
        }
        let Some(o) = self.find(name_or_id).await?.into_iter().next() else {
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
        match crate::metrics::container_op(ContainerOp::Stop, self.runtime.stop(&o.id, timeout))
            .await
        {
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

    /// Force-remove every container of a workload on this node, or one container by
    /// name or id (e.g. `<workload id>-g<generation>`: one old copy). The answer is
    /// `Stopped` without a container id; unknown → `Missing` (idempotent).
    pub async fn remove(&self, name_or_id: &str) -> Result<ContainerState, SupervisorError> {
        if let Some(projects) = self.project_named(name_or_id).await {
            return Ok(projects.remove(name_or_id).await?);
        }
        let found = self.find(name_or_id).await?;
        let Some(newest) = found.first() else {
            return Ok(without_container(
                name_or_id,
                0,
                WorkloadStatus::Missing,
                None,
                Utc::now(),
            ));
        };
        let (workload, generation) = workload_of(&newest.labels, &newest.name);
        let _guard = self.lock_workload(&workload).await;
        for o in &found {
            self.ledger.record(&o.id, Intent::Remove).await;
            match crate::metrics::container_op(ContainerOp::Remove, self.runtime.remove(&o.id))
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            self.forget_container(&o.id);
        }
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
        if let Some(projects) = &self.projects {
            states.extend(projects.states().await?);
        }
        Ok(states)
    }

    /// Output of the (newest) container of a workload, or of a container by name or id,
    /// of this node.
    pub async fn logs(
        &self,
        name_or_id: &str,
        service: Option<&str>,
        options: LogOptions,
    ) -> Result<LogStream, SupervisorError> {
        if let Some(projects) = self.project_named(name_or_id).await {
            return Ok(projects.logs(name_or_id, service, options).await?);
        }
        if let Some(s) = service {
            return Err(SupervisorError::Invalid(format!(
                "service {s:?}: {name_or_id} is not a Compose project on this node"
            )));
        }
        let o = self
            .find(name_or_id)
            .await?
            .into_iter()
            .next()
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
}

impl<R: ContainerRuntime> Snapshot for Supervisor<R> {
    async fn snapshot(&self) -> Result<Vec<ContainerState>, String> {
        self.list().await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
