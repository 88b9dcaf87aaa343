//! The projects of this node: what `/docker/run` does for a workload that carries a
//! Compose project, and what the reporter, the event loop and the API ask of them.
//!
//! A run answers at once (`ContainerCreating`) and starts the project on a task of its
//! own: a clone and a build can take minutes, far longer than a dispatch may wait. The
//! task pushes the project's state when it is up (or why it could not be). The run
//! request is kept on disk (in the agent's private data dir, token included) until the
//! project is removed, so an agent killed half-way finishes the start when it comes
//! back instead of leaving it half-made, and never makes a second copy: every
//! container name is the project's own.

use super::engine::{ComposeEngine, ProjectRef};
use super::source;
use crate::report::ReportHandle;
use crate::runtime::LogOptions;
use base64::Engine as _;
use chrono::Utc;
use persys_proto::compose::{self, ComposeProject, ProjectDir};
use persys_proto::{fold_status, ContainerState, ProjectState, RunRequest, WorkloadStatus};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a project operation was refused (as opposed to a project that failed, which is
/// a state).
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A newer generation of the workload runs here.
    #[error("{0}")]
    Conflict(String),
    /// No project of that workload on this node.
    #[error("no project {0:?} on this node")]
    NotFound(String),
    /// The engine failed.
    #[error("{0}")]
    Engine(String),
}

/// This node's Compose projects.
pub struct Projects {
    engine: ComposeEngine,
    node_id: String,
    /// `<data dir>/projects/<workload id>/`: the run request, inline Compose files and
    /// git checkouts.
    root: PathBuf,
    reports: ReportHandle,
    /// Workload id → the start a task is making now.
    starting: Mutex<HashMap<String, Start>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Projects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projects")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// A start in flight: its generation, how to cut it short, and when it has ended.
struct Start {
    generation: u64,
    cancel: CancellationToken,
    ended: tokio::sync::watch::Receiver<bool>,
}

impl Start {
    /// Cut the start short and wait until its task has let go of the engine, so that
    /// nothing it was making appears after what comes next (a stop, a remove, a newer
    /// generation).
    async fn cancel_and_wait(mut self) {
        self.cancel.cancel();
        let _ = self.ended.wait_for(|ended| *ended).await;
    }
}

/// A project's source made into files on this node.
struct Materialized {
    /// The directory its relative paths are relative to (none for an inline file alone).
    dir: Option<PathBuf>,
    /// The Compose file's text.
    yaml: String,
    /// The commit (`git-compose`).
    revision: Option<String>,
}

/// `<workload id>-g<generation>`, the name the scheduler removes one old copy by.
fn parse_copy_name(key: &str) -> Option<(&str, u64)> {
    let (workload, generation) = key.rsplit_once("-g")?;
    Some((workload, generation.parse().ok()?))
}

impl Projects {
    /// Projects of node `node_id` over `engine`, keeping their files under `data_dir`.
    pub fn new(
        engine: ComposeEngine,
        node_id: String,
        data_dir: &Path,
        reports: ReportHandle,
    ) -> Self {
        Self {
            engine,
            node_id,
            root: data_dir.join("projects"),
            reports,
            starting: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        }
    }

    fn workload_dir(&self, workload_id: &str) -> PathBuf {
        self.root.join(workload_id)
    }

    fn request_file(&self, workload_id: &str) -> PathBuf {
        self.workload_dir(workload_id).join("run.json")
    }

    /// Present while the project is stopped on request: an agent restart must not
    /// start it again.
    fn stopped_marker(&self, workload_id: &str) -> PathBuf {
        self.workload_dir(workload_id).join("stopped")
    }

    fn revision_file(&self, workload_id: &str, generation: u64) -> PathBuf {
        self.workload_dir(workload_id)
            .join(format!("g{generation}.revision"))
    }

    fn project_ref(&self, workload_id: &str, generation: u64, display_name: &str) -> ProjectRef {
        ProjectRef {
            workload_id: workload_id.to_string(),
            generation,
            node_id: self.node_id.clone(),
            display_name: display_name.to_string(),
        }
    }

    fn is_starting(&self, workload_id: &str, generation: u64) -> bool {
        self.starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(workload_id)
            .is_some_and(|s| s.generation == generation)
    }

    /// Take the workload's start in flight, if any, out of the table.
    fn take_start(&self, workload_id: &str) -> Option<Start> {
        self.starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(workload_id)
    }

    /// Cut short the workload's start in flight (if any) and wait for its task to end.
    async fn cancel_start(&self, workload_id: &str) {
        if let Some(start) = self.take_start(workload_id) {
            tracing::info!(
                workload = workload_id,
                generation = start.generation,
                "cutting the project's start short"
            );
            start.cancel_and_wait().await;
        }
    }

    /// Run the project of `req` (idempotent): answered at once; the start goes on in
    /// the background and is reported.
    pub async fn run(self: &Arc<Self>, req: &RunRequest) -> Result<ContainerState, ProjectError> {
        if req.project.is_none() {
            return Err(ProjectError::Invalid("not a Compose project".into()));
        }
        if let Some(have) = self.newest_generation(&req.workload_id).await? {
            if have > req.generation {
                return Err(ProjectError::Conflict(format!(
                    "workload {} already runs generation {have} on this node; generation {} is stale",
                    req.workload_id, req.generation
                )));
            }
        }
        let answer = creating(&req.workload_id, req.generation, None);
        if self.is_starting(&req.workload_id, req.generation) {
            return Ok(answer);
        }
        self.keep_request(req).await;
        self.spawn_start(req.clone());
        Ok(answer)
    }

    /// Start `req` on a task of its own, after cutting short the start of an older
    /// generation of the workload (if one is in flight).
    fn spawn_start(self: &Arc<Self>, req: RunRequest) {
        let cancel = CancellationToken::new();
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let replaced = self
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                req.workload_id.clone(),
                Start {
                    generation: req.generation,
                    cancel: cancel.clone(),
                    ended,
                },
            );
        let this = self.clone();
        self.tasks.spawn(async move {
            if let Some(older) = replaced {
                older.cancel_and_wait().await;
            }
            let state = tokio::select! {
                state = this.start(&req) => Some(state),
                () = cancel.cancelled() => None,
            };
            {
                let mut starting = this.starting.lock().unwrap_or_else(|p| p.into_inner());
                if starting
                    .get(&req.workload_id)
                    .is_some_and(|s| s.generation == req.generation)
                {
                    starting.remove(&req.workload_id);
                }
            }
            let _ = ended_tx.send(true);
            match state {
                Some(state) => {
                    tracing::info!(workload = %req.workload_id, generation = req.generation, status = %state.status, reason = ?state.reason, "project start finished");
                    this.reports.push(state);
                }
                None => {
                    tracing::info!(workload = %req.workload_id, generation = req.generation, "project start cut short");
                }
            }
        });
    }

    /// Start again what was being started or ran when the agent stopped: the kept
    /// requests (called once at startup).
    pub async fn resume(self: &Arc<Self>) {
        let Ok(mut dirs) = tokio::fs::read_dir(&self.root).await else {
            return;
        };
        while let Ok(Some(entry)) = dirs.next_entry().await {
            if entry.path().join("stopped").exists() {
                continue;
            }
            let file = entry.path().join("run.json");
            let Ok(bytes) = tokio::fs::read(&file).await else {
                continue;
            };
            let Ok(req) = serde_json::from_slice::<RunRequest>(&bytes) else {
                tracing::warn!(file = %file.display(), "unreadable kept project request; ignored");
                continue;
            };
            tracing::info!(workload = %req.workload_id, generation = req.generation, "resuming the project kept from before the restart");
            self.spawn_start(req);
        }
    }

    async fn keep_request(&self, req: &RunRequest) {
        let dir = self.workload_dir(&req.workload_id);
        let kept = async {
            tokio::fs::create_dir_all(&dir).await?;
            match tokio::fs::remove_file(self.stopped_marker(&req.workload_id)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let bytes = serde_json::to_vec(req).map_err(std::io::Error::other)?;
            let tmp = dir.join("run.json.tmp");
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, self.request_file(&req.workload_id)).await
        };
        if let Err(e) = kept.await {
            // The start goes on; only a restart in the middle would lose it.
            tracing::warn!(workload = %req.workload_id, error = %e, "cannot keep the project request");
        }
    }

    /// Start (or converge) one generation; the state to report.
    async fn start(&self, req: &RunRequest) -> ContainerState {
        let (workload, generation) = (req.workload_id.as_str(), req.generation);
        let failed = |reason: String| ContainerState {
            status: WorkloadStatus::Failed,
            reason: Some(reason),
            ..creating(workload, generation, None)
        };
        let material = match self.materialize(req).await {
            Ok(m) => m,
            Err(reason) => return failed(reason),
        };
        let project = match self.parse(req, &material).await {
            Ok(p) => p,
            Err(reason) => return failed(reason),
        };
        let older: Vec<u64> = match self.engine.generations(workload).await {
            Ok(g) => g.into_iter().filter(|g| *g < generation).collect(),
            Err(e) => return failed(e.to_string()),
        };
        // Published host ports cannot be held by two generations at once: the old one
        // goes first. Otherwise the old one keeps running until the new one is up.
        let publishes = project.services.iter().any(|s| !s.ports.is_empty());
        if publishes {
            self.down_generations(workload, &older).await;
        }
        let reference = self.project_ref(workload, generation, &req.display_name);
        match self
            .engine
            .up(&reference, &project, material.dir.as_deref())
            .await
        {
            Ok(services) => {
                if !publishes {
                    self.down_generations(workload, &older).await;
                }
                if let Some(rev) = &material.revision {
                    let _ = tokio::fs::write(self.revision_file(workload, generation), rev).await;
                }
                let (status, reason) = fold_status(&services);
                ContainerState {
                    status,
                    reason,
                    project: Some(ProjectState {
                        services,
                        revision: material.revision,
                    }),
                    ..creating(workload, generation, None)
                }
            }
            Err(e) => {
                tracing::warn!(workload, generation, error = %e, "project did not start; removing what it made");
                if let Err(down) = self.engine.down(workload, Some(generation), false).await {
                    tracing::warn!(workload, generation, error = %down, "cannot remove the failed project");
                }
                ContainerState {
                    project: Some(ProjectState {
                        services: Vec::new(),
                        revision: material.revision,
                    }),
                    ..failed(e.to_string())
                }
            }
        }
    }

    /// Revisions that generations of the workload on this node run.
    async fn kept_revisions(&self, workload_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(generations) = self.engine.generations(workload_id).await {
            for g in generations {
                if let Ok(r) = tokio::fs::read_to_string(self.revision_file(workload_id, g)).await {
                    out.push(r);
                }
            }
        }
        out
    }

    async fn down_generations(&self, workload: &str, generations: &[u64]) {
        for g in generations {
            tracing::info!(
                workload,
                generation = g,
                "removing the project's older generation"
            );
            if let Err(e) = self.engine.down(workload, Some(*g), false).await {
                tracing::warn!(workload, generation = g, error = %e, "cannot remove an older generation");
            }
        }
    }

    /// The project's files: an inline file written to the workload's dir, a
    /// directory of the node, or a git checkout.
    async fn materialize(&self, req: &RunRequest) -> Result<Materialized, String> {
        let Some(source) = &req.project else {
            return Err("not a Compose project".into());
        };
        let local = source.local_path.as_ref().map(PathBuf::from);
        if let Some(encoded) = &source.compose {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("compose: not base64: {e}"))?;
            let yaml =
                String::from_utf8(bytes).map_err(|_| "compose: not UTF-8 text".to_string())?;
            return Ok(Materialized {
                dir: local,
                yaml,
                revision: None,
            });
        }
        let (dir, revision) = match (&local, &source.git_repo) {
            (Some(dir), _) => (dir.clone(), None),
            (None, Some(repo)) => {
                let branch = source
                    .git_branch
                    .as_deref()
                    .unwrap_or(persys_proto::validate::DEFAULT_BRANCH);
                let token = (!source.git_token.is_empty()).then_some(&source.git_token);
                let root = self.workload_dir(&req.workload_id).join("git");
                let checkout = super::git::checkout(repo, branch, token, &root)
                    .await
                    .map_err(|e| e.to_string())?;
                // The revision before (a redeploy's previous one) may still run.
                let keep = self.kept_revisions(&req.workload_id).await;
                let mut keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                keep.push(&checkout.revision);
                super::git::prune(&root, &keep);
                (checkout.dir, Some(checkout.revision))
            }
            (None, None) => return Err("the project has no source".into()),
        };
        let file = source::compose_file(&dir, source.compose_file.as_deref())?;
        let yaml = tokio::fs::read_to_string(&file)
            .await
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        Ok(Materialized {
            dir: Some(dir),
            yaml,
            revision,
        })
    }

    /// Parse with the project's variables: its `.env`, overridden by the workload's
    /// `envVars`.
    async fn parse(&self, req: &RunRequest, m: &Materialized) -> Result<ComposeProject, String> {
        let mut vars = match &m.dir {
            Some(dir) => source::dotenv_vars(dir),
            None => BTreeMap::new(),
        };
        vars.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let dir = if m.dir.is_some() {
            ProjectDir::Present
        } else {
            ProjectDir::None
        };
        compose::parse(&m.yaml, &vars, dir).map_err(|e| format!("compose file: {e}"))
    }

    async fn newest_generation(&self, workload_id: &str) -> Result<Option<u64>, ProjectError> {
        let generations = self
            .engine
            .generations(workload_id)
            .await
            .map_err(|e| ProjectError::Engine(e.to_string()))?;
        Ok(generations.into_iter().max())
    }

    /// The state of one generation as its containers show it.
    pub async fn state_of(
        &self,
        workload_id: &str,
        generation: u64,
    ) -> Result<ContainerState, ProjectError> {
        let services = self
            .engine
            .state(workload_id, generation)
            .await
            .map_err(|e| ProjectError::Engine(e.to_string()))?;
        let revision = tokio::fs::read_to_string(self.revision_file(workload_id, generation))
            .await
            .ok();
        let (status, reason) = fold_status(&services);
        Ok(ContainerState {
            status,
            reason,
            project: Some(ProjectState { services, revision }),
            ..creating(workload_id, generation, None)
        })
    }

    /// Every project of this node, newest generation of each workload (for the full
    /// report); one being started shows as `ContainerCreating`.
    pub async fn states(&self) -> Result<Vec<ContainerState>, ProjectError> {
        let projects = self
            .engine
            .projects()
            .await
            .map_err(|e| ProjectError::Engine(e.to_string()))?;
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        for (w, g) in projects {
            let e = newest.entry(w).or_insert(g);
            *e = (*e).max(g);
        }
        let starting: Vec<(String, u64)> = self
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(w, s)| (w.clone(), s.generation))
            .collect();
        let mut states = Vec::with_capacity(newest.len() + starting.len());
        for (w, g) in &starting {
            if newest.get(w).is_none_or(|have| have <= g) {
                newest.remove(w);
                states.push(creating(w, *g, Some("the project is being started".into())));
            }
        }
        for (w, g) in newest {
            states.push(self.state_of(&w, g).await?);
        }
        Ok(states)
    }

    /// The state to push after an engine event of one of a project's containers
    /// (none while its start is still going on: the start reports when done).
    pub async fn state_for_event(
        &self,
        labels: &HashMap<String, String>,
    ) -> Option<ContainerState> {
        let workload = labels.get(persys_proto::labels::WORKLOAD_ID)?;
        let generation = labels
            .get(persys_proto::labels::GENERATION)?
            .parse::<u64>()
            .ok()?;
        if self.is_starting(workload, generation) {
            return None;
        }
        match self.state_of(workload, generation).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(workload = %workload, error = %e, "cannot read the project's state after an event");
                None
            }
        }
    }

    /// Whether `key` (a workload id or `<workload id>-g<generation>`) names a project
    /// of this node.
    pub async fn owns(&self, key: &str) -> bool {
        let workload = parse_copy_name(key).map_or(key, |(w, _)| w);
        if self.request_file(workload).exists() {
            return true;
        }
        matches!(self.engine.generations(workload).await, Ok(g) if !g.is_empty())
    }

    /// Stop every container of the workload's newest generation.
    pub async fn stop(
        &self,
        workload_id: &str,
        timeout: Duration,
    ) -> Result<ContainerState, ProjectError> {
        // A start still going on would start what this stops; an agent restart would too.
        self.cancel_start(workload_id).await;
        if self.workload_dir(workload_id).exists() {
            if let Err(e) = tokio::fs::write(self.stopped_marker(workload_id), b"").await {
                tracing::warn!(workload = workload_id, error = %e, "cannot mark the project stopped; an agent restart would start it again");
            }
        }
        let generation = self
            .newest_generation(workload_id)
            .await?
            .ok_or_else(|| ProjectError::NotFound(workload_id.to_string()))?;
        self.engine
            .stop(workload_id, generation, timeout)
            .await
            .map_err(|e| ProjectError::Engine(e.to_string()))?;
        let mut state = self.state_of(workload_id, generation).await?;
        if matches!(
            state.status,
            WorkloadStatus::Exited | WorkloadStatus::Failed
        ) {
            state.status = WorkloadStatus::Stopped;
        }
        Ok(state)
    }

    /// Remove a workload's project (`key` = its id: every generation, its volumes and
    /// its files) or one old copy (`<workload id>-g<generation>`).
    pub async fn remove(&self, key: &str) -> Result<ContainerState, ProjectError> {
        let (workload, generation) = match parse_copy_name(key) {
            Some((w, g)) if !self.request_file(key).exists() => (w.to_string(), Some(g)),
            _ => (key.to_string(), None),
        };
        match generation {
            // A start still going on would make containers after the removal.
            None => self.cancel_start(&workload).await,
            Some(g) if self.is_starting(&workload, g) => self.cancel_start(&workload).await,
            Some(_) => {}
        }
        self.engine
            .down(&workload, generation, generation.is_none())
            .await
            .map_err(|e| ProjectError::Engine(e.to_string()))?;
        if generation.is_none() {
            if let Err(e) = tokio::fs::remove_dir_all(self.workload_dir(&workload)).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(workload = %workload, error = %e, "cannot remove the project's files");
                }
            }
        }
        Ok(ContainerState {
            status: WorkloadStatus::Stopped,
            reason: Some("removed on request".into()),
            ..creating(&workload, generation.unwrap_or(0), None)
        })
    }

    /// Output of the newest generation's containers (one service, or all of them).
    pub async fn logs(
        &self,
        workload_id: &str,
        service: Option<&str>,
        options: LogOptions,
    ) -> Result<crate::runtime::LogStream, ProjectError> {
        let generation = self
            .newest_generation(workload_id)
            .await?
            .ok_or_else(|| ProjectError::NotFound(workload_id.to_string()))?;
        self.engine
            .logs(workload_id, generation, service, options)
            .await
            .map_err(|e| ProjectError::Engine(e.to_string()))
    }

    /// Wait for the start tasks (at shutdown).
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// A project state without services yet.
fn creating(workload_id: &str, generation: u64, reason: Option<String>) -> ContainerState {
    ContainerState {
        workload_id: workload_id.to_string(),
        generation,
        container_id: None,
        status: WorkloadStatus::ContainerCreating,
        exit_code: None,
        reason,
        restart_count: 0,
        observed_at: Utc::now(),
        project: Some(ProjectState::default()),
        health: None,
        health_output: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_copy_is_named_by_its_generation() {
        assert_eq!(parse_copy_name("abc-def-g12"), Some(("abc-def", 12)));
        assert_eq!(parse_copy_name("abc"), None);
        assert_eq!(parse_copy_name("abc-gx"), None);
    }
}
