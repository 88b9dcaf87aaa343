//! Health checks of single containers: one probe loop per running container whose
//! [`labels::HEALTH_CHECK`] label carries a check. HTTP and TCP probes are made by the
//! agent against the container's address, `exec` runs in the container through the
//! engine. A container that fails `retries` probes in a row is unhealthy: that is
//! reported, then the container is restarted (liveness); its start begins a new loop
//! in `starting`. Only transitions are reported, so a healthy fleet sends nothing.

use super::ledger::Intent;
use super::Supervisor;
use crate::metrics::ContainerOp;
use crate::runtime::ContainerRuntime;
use persys_proto::healthcheck::clip_output;
use persys_proto::{labels, Health, HealthCheck, Probe};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an unhealthy container is given to stop before it is killed.
const RESTART_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probes found for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    /// Current health; `None` while the container does not run.
    pub health: Option<Health>,
    /// Output of the last failed probe.
    pub output: Option<String>,
    /// Restarts the agent made because the container was unhealthy.
    pub restarts: u32,
}

/// The probe loops of one node and what they found, by container id.
#[derive(Default)]
pub struct HealthMonitors {
    states: Mutex<HashMap<String, HealthState>>,
    loops: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl std::fmt::Debug for HealthMonitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitors").finish_non_exhaustive()
    }
}

impl HealthMonitors {
    fn states(&self) -> MutexGuard<'_, HashMap<String, HealthState>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn loops(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of container `id`.
    pub fn state(&self, id: &str) -> Option<HealthState> {
        self.states().get(id).cloned()
    }

    /// Set `id`'s health (keeping its output unless `output` is given); whether it
    /// changed.
    fn set(&self, id: &str, health: Option<Health>, output: Option<String>) -> bool {
        let mut states = self.states();
        let s = states.entry(id.to_string()).or_default();
        let changed = s.health != health || (output.is_some() && s.output != output);
        s.health = health;
        if output.is_some() {
            s.output = output;
        }
        changed
    }

    fn count_restart(&self, id: &str) {
        self.states().entry(id.to_string()).or_default().restarts += 1;
    }

    /// End every probe loop and wait for them (agent shutdown).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// An error with its causes (reqwest's own message omits why a connection failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The check a container's labels carry, if any (a label that does not parse is no
/// check: the scheduler validated it before it was sent).
pub fn check_of(labels: &HashMap<String, String>) -> Option<HealthCheck> {
    let json = labels.get(labels::HEALTH_CHECK)?;
    serde_json::from_str::<HealthCheck>(json)
        .ok()
        .filter(|c| c.validate().is_ok())
}

impl<R: ContainerRuntime> Supervisor<R> {
    /// Container `id` (with `labels`) started: probe it from `starting` if it has a
    /// check. Replaces a loop it already had.
    pub fn watch_health(self: &Arc<Self>, id: &str, labels: &HashMap<String, String>) {
        let Some(check) = check_of(labels) else {
            return;
        };
        if self.ledger.intent(id) == Some(Intent::Restart) {
            // Its liveness restart is done.
            let sup = self.clone();
            let id = id.to_string();
            self.health
                .tasks
                .spawn(async move { sup.ledger.forget(&id).await });
        }
        let token = self.health.stop.child_token();
        if let Some(old) = self.health.loops().insert(id.to_string(), token.clone()) {
            old.cancel();
        }
        self.health.set(id, Some(Health::Starting), None);
        let sup = self.clone();
        let id = id.to_string();
        self.health
            .tasks
            .spawn(async move { sup.probe_loop(&id, check, token).await });
    }

    /// Container `id` stopped running (`gone`: it was removed): its loop ends.
    pub fn unwatch_health(&self, id: &str, gone: bool) {
        if let Some(token) = self.health.loops().remove(id) {
            token.cancel();
        }
        if gone {
            self.health.states().remove(id);
        } else {
            self.health.set(id, None, None);
        }
    }

    /// Probe loops for the running containers of this node that have checks (agent
    /// start: a restarted agent resumes what it was probing).
    pub async fn resume_health_checks(self: &Arc<Self>) {
        let listed = match self.runtime.list(&self.node_id).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers to resume health checks");
                return;
            }
        };
        for c in listed.iter().filter(|c| c.running) {
            self.watch_health(&c.id, &c.labels);
        }
    }

    /// The health part of a running container's state.
    pub(super) fn health_of(&self, id: &str, labels: &HashMap<String, String>) -> HealthState {
        match self.health.state(id) {
            Some(s) => s,
            // Running with a check whose loop has not begun yet.
            None if labels.contains_key(labels::HEALTH_CHECK) => HealthState {
                health: Some(Health::Starting),
                ..HealthState::default()
            },
            None => HealthState::default(),
        }
    }

    async fn probe_loop(self: Arc<Self>, id: &str, check: HealthCheck, token: CancellationToken) {
        let interval = Duration::from_secs(u64::from(check.interval_seconds));
        let timeout = Duration::from_secs(u64::from(check.timeout_seconds));
        let start_period = Duration::from_secs(u64::from(check.start_period_seconds));
        let started = Instant::now();
        let mut failures = 0u32;
        let mut health = Health::Starting;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let result = tokio::select! {
                () = token.cancelled() => return,
                r = tokio::time::timeout(timeout, self.probe_once(id, &check)) => r
                    .unwrap_or_else(|_| Err(format!("timed out after {}s", check.timeout_seconds))),
            };
            match result {
                Ok(()) => {
                    failures = 0;
                    if health != Health::Healthy {
                        health = Health::Healthy;
                        self.health.set(id, Some(health), None);
                        tracing::info!(container = %id, "health check passes: healthy");
                        self.push_state(id).await;
                    }
                }
                Err(output) => {
                    let output = clip_output(&output);
                    if health == Health::Starting && started.elapsed() < start_period {
                        self.health.set(id, Some(health), Some(output));
                        continue;
                    }
                    failures += 1;
                    self.health.set(id, Some(health), Some(output.clone()));
                    if failures < check.retries {
                        continue;
                    }
                    self.health.set(id, Some(Health::Unhealthy), None);
                    tracing::warn!(container = %id, failures, %output, "health check failed: unhealthy; restarting");
                    self.push_state(id).await;
                    self.restart_unhealthy(id).await;
                    return;
                }
            }
        }
    }

    async fn probe_once(&self, id: &str, check: &HealthCheck) -> Result<(), String> {
        match check.probe() {
            Some(Probe::Exec(argv)) => {
                let out =
                    crate::metrics::container_op(ContainerOp::Exec, self.runtime.exec(id, argv))
                        .await
                        .map_err(|e| e.to_string())?;
                if out.exit_code == 0 {
                    Ok(())
                } else if out.output.is_empty() {
                    Err(format!("exit code {}", out.exit_code))
                } else {
                    Err(format!("exit code {}: {}", out.exit_code, out.output))
                }
            }
            Some(Probe::Tcp { port }) => {
                let ip = self.probe_address(id).await?;
                tokio::net::TcpStream::connect((ip, port))
                    .await
                    .map(drop)
                    .map_err(|e| format!("tcp {ip}:{port}: {e}"))
            }
            Some(Probe::Http { path, port }) => {
                let ip = self.probe_address(id).await?;
                let url = match ip {
                    std::net::IpAddr::V4(v4) => format!("http://{v4}:{port}{path}"),
                    std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}{path}"),
                };
                let answer = self
                    .probe_http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
                let status = answer.status();
                // Kubernetes' rule: any 2xx or 3xx passes (redirects are not followed).
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    let body = answer.text().await.unwrap_or_default();
                    Err(format!("GET {url}: {status} {}", clip_output(&body)))
                }
            }
            None => Err("invalid health check".to_string()),
        }
    }

    async fn probe_address(&self, id: &str) -> Result<std::net::IpAddr, String> {
        self.runtime
            .address(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the container has no network address".to_string())
    }

    async fn push_state(&self, id: &str) {
        match self.runtime.inspect(id).await {
            Ok(o) if self.is_ours(&o) => {
                let state = self.state_of(&o);
                self.reports.push(state);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "cannot inspect after a health change")
            }
        }
    }

    /// Liveness: stop the unhealthy container and start it again. Its stop is reported
    /// as `Restarting` (ledger intent), its start begins a new probe loop.
    async fn restart_unhealthy(&self, id: &str) {
        self.ledger.record(id, Intent::Restart).await;
        self.health.count_restart(id);
        if let Err(e) = crate::metrics::container_op(
            ContainerOp::Stop,
            self.runtime.stop(id, RESTART_STOP_TIMEOUT),
        )
        .await
        {
            tracing::warn!(container = %id, error = %e, "stopping the unhealthy container failed");
        }
        if let Err(e) =
            crate::metrics::container_op(ContainerOp::Start, self.runtime.start(id)).await
        {
            tracing::warn!(container = %id, error = %e, "starting the unhealthy container again failed");
            self.ledger.forget(id).await;
        }
    }
}
