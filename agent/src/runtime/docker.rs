//! `ContainerRuntime` over the Docker Engine API (bollard).

use super::{
    ContainerRuntime, ContainerSpec, ContainerStats, EngineStatus, EventAction, EventStream,
    ExecOutcome, Listed, LogOptions, LogStream, Observed, RuntimeError, RuntimeEvent,
};
use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    MemoryStatsStats, RemoveContainerOptions, StartContainerOptions, StatsOptions,
    StopContainerOptions,
};
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::image::CreateImageOptions;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, DeviceMapping, HostConfig, PortBinding,
    RestartPolicy as DockerRestartPolicy, RestartPolicyNameEnum,
};
use bollard::system::EventsOptions;
use bollard::Docker;
use futures::{StreamExt, TryStreamExt};
use persys_proto::{labels, RestartPolicy};
use std::collections::HashMap;
use std::time::Duration;

/// Seconds bollard waits for an answer's headers (not for streamed bodies).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Docker through its API socket. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// Connect to `docker_host` (`unix://…`, `tcp://…`, `http://…`), or the local socket
    /// (honouring `DOCKER_HOST`) when `None`, and negotiate the API version with the
    /// engine (it may be older than bollard's default, e.g. 1.41).
    pub async fn connect(docker_host: Option<&str>) -> Result<Self, RuntimeError> {
        let version = bollard::API_DEFAULT_VERSION;
        let docker = match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
            None => Docker::connect_with_local_defaults(),
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                Docker::connect_with_unix(h, REQUEST_TIMEOUT_SECS, version)
            }
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                Docker::connect_with_http(h, REQUEST_TIMEOUT_SECS, version)
            }
            Some(h) => {
                return Err(RuntimeError::Unavailable(format!(
                    "unsupported docker host {h:?} (expected unix://, tcp:// or http://)"
                )))
            }
        }
        .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
        Ok(Self { docker })
    }

    /// The underlying client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Every single-workload container (running or not) carrying all of
    /// `label_filters` (`k=v`). The containers of Compose projects (label
    /// `persys.service`) are not listed: `crate::compose` owns them, and to the
    /// one-container rules (one copy per generation) a project's several containers
    /// would look like duplicates.
    async fn list_labelled(&self, label_filters: Vec<String>) -> Result<Vec<Listed>, RuntimeError> {
        let filters = HashMap::from([("label".to_string(), label_filters)]);
        let options = ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| map_err(e, "containers"))?;
        Ok(summaries
            .into_iter()
            .filter(|s| {
                s.labels
                    .as_ref()
                    .is_none_or(|l| !l.contains_key(labels::SERVICE))
            })
            .map(|s| Listed {
                id: s.id.unwrap_or_default(),
                name: s
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                labels: s.labels.unwrap_or_default(),
                running: s.state.as_deref() == Some("running"),
            })
            .collect())
    }
}

/// Map a bollard error; `subject` names the container or image for `NotFound`.
pub(crate) fn map_err(e: BollardError, subject: &str) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => RuntimeError::NotFound(subject.to_string()),
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Engine(message),
        BollardError::DockerStreamError { error } => RuntimeError::Engine(error),
        e @ (BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_)) => RuntimeError::Unavailable(e.to_string()),
        e => RuntimeError::Engine(e.to_string()),
    }
}

pub(crate) fn restart_policy(p: RestartPolicy) -> DockerRestartPolicy {
    let name = match p {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    DockerRestartPolicy {
        name: Some(name),
        maximum_retry_count: None,
    }
}

/// Every container runs with this: no process in it gains privileges through setuid
/// binaries or file capabilities.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// The engine's create body for a spec.
fn create_config(spec: &ContainerSpec) -> Config<String> {
    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        exposed.insert(p.key(), HashMap::new());
        let binding = PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
        };
        bindings
            .entry(p.key())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let host_config = HostConfig {
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
        network_mode: spec.network.clone(),
        restart_policy: Some(restart_policy(spec.restart_policy)),
        nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus),
        memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes),
        security_opt: Some(vec![NO_NEW_PRIVILEGES.to_string()]),
        privileged: spec.privileged.then_some(true),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        pid_mode: spec.pid_mode.clone(),
        ipc_mode: spec.ipc_mode.clone(),
        ..Default::default()
    };
    let mut env = spec.env.clone();
    env.extend(spec.secret_env.expose().map(|(k, v)| format!("{k}={v}")));
    Config {
        image: Some(spec.image.clone()),
        cmd: spec.cmd.clone(),
        env: (!env.is_empty()).then_some(env),
        labels: Some(spec.labels.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn engine_status(s: Option<ContainerStateStatusEnum>) -> EngineStatus {
    match s {
        Some(ContainerStateStatusEnum::RUNNING) => EngineStatus::Running,
        Some(ContainerStateStatusEnum::PAUSED) => EngineStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => EngineStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => EngineStatus::Removing,
        Some(ContainerStateStatusEnum::EXITED) => EngineStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => EngineStatus::Dead,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY) | None => {
            EngineStatus::Created
        }
    }
}

/// Duration between two RFC 3339 engine times; `None` when either is absent or the zero
/// time Docker uses for "never" (or the finish precedes the start: a run in progress).
fn run_time(started: Option<&str>, finished: Option<&str>) -> Option<Duration> {
    let parse = |s: Option<&str>| {
        chrono::DateTime::parse_from_rfc3339(s?)
            .ok()
            .filter(|t| t.timestamp() > 0)
    };
    (parse(finished)? - parse(started)?).to_std().ok()
}

pub(crate) fn observed(r: ContainerInspectResponse) -> Observed {
    let state = r.state.unwrap_or_default();
    let status = engine_status(state.status);
    let last_run = (status != EngineStatus::Running)
        .then(|| run_time(state.started_at.as_deref(), state.finished_at.as_deref()))
        .flatten();
    let config = r.config.unwrap_or_default();
    let host = r.host_config.unwrap_or_default();
    Observed {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
        status,
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
        restart_count: r
            .restart_count
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
        last_run,
        nano_cpus: host.nano_cpus.unwrap_or(0),
        memory_bytes: host.memory.unwrap_or(0),
    }
}

/// Refuse host paths that resolve through a symlink: the engine would mount the
/// link's target, which admission never saw (a writable allowed directory could hold
/// a link to `/`). Paths that do not exist yet are created by the engine as given.
fn check_bind_targets(binds: &[String]) -> Result<(), RuntimeError> {
    for b in binds {
        let source = b.split(':').next().unwrap_or_default();
        let Some(normal) = persys_proto::policy::normalize_host_path(source) else {
            continue;
        };
        if let Ok(real) = std::fs::canonicalize(&normal) {
            if real.as_os_str() != std::ffi::OsStr::new(&normal) {
                return Err(RuntimeError::Engine(format!(
                    "host path {source:?} resolves through a symbolic link to {:?}; mount the real path",
                    real.display()
                )));
            }
        }
    }
    Ok(())
}

impl ContainerRuntime for DockerRuntime {
    async fn run(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        check_bind_targets(&spec.binds)?;
        let options = CreateContainerOptions {
            name: spec.name.clone(),
            platform: None,
        };
        let created = self
            .docker
            .create_container(Some(options), create_config(spec))
            .await
            .map_err(|e| match e {
                BollardError::DockerResponseServerError {
                    status_code: 404, ..
                } => RuntimeError::ImageNotFound(spec.image.clone()),
                BollardError::DockerResponseServerError {
                    status_code: 409, ..
                } => RuntimeError::NameConflict(spec.name.clone()),
                e => map_err(e, &spec.name),
            })?;
        match self.start(&created.id).await {
            Ok(()) => Ok(created.id),
            Err(RuntimeError::Engine(message)) => Err(RuntimeError::StartFailed {
                id: created.id,
                message,
            }),
            Err(e) => Err(e),
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| map_err(e, id))
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let options = CreateImageOptions {
            from_image: image.to_string(),
            ..Default::default()
        };
        self.docker
            .create_image(Some(options), None, None)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| RuntimeError::Pull {
                image: image.to_string(),
                message: match e {
                    BollardError::DockerResponseServerError { message, .. } => message,
                    BollardError::DockerStreamError { error } => error,
                    e => e.to_string(),
                },
            })
    }

    async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let t = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        match self
            .docker
            .stop_container(id, Some(StopContainerOptions { t }))
            .await
        {
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            r => r.map_err(|e| map_err(e, id)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(|e| map_err(e, id))
    }

    async fn inspect(&self, name_or_id: &str) -> Result<Observed, RuntimeError> {
        self.docker
            .inspect_container(name_or_id, None::<InspectContainerOptions>)
            .await
            .map(observed)
            .map_err(|e| map_err(e, name_or_id))
    }

    async fn list(&self, node_id: &str) -> Result<Vec<Listed>, RuntimeError> {
        self.list_labelled(vec![format!("{}={node_id}", labels::NODE_ID)])
            .await
    }

    async fn list_workload(
        &self,
        node_id: &str,
        workload_id: &str,
    ) -> Result<Vec<Listed>, RuntimeError> {
        // Several label filters must all match.
        self.list_labelled(vec![
            format!("{}={node_id}", labels::NODE_ID),
            format!("{}={workload_id}", labels::WORKLOAD_ID),
        ])
        .await
    }

    async fn exec(&self, id: &str, argv: &[String]) -> Result<ExecOutcome, RuntimeError> {
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions::<String> {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| map_err(e, id))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| map_err(e, id))?
        {
            while let Some(chunk) = out.next().await {
                let Ok(chunk) = chunk else { break };
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                // Only the tail is kept; a chatty command must not grow the agent.
                if output.len() > 4 * persys_proto::healthcheck::MAX_OUTPUT {
                    output = persys_proto::healthcheck::clip_output(&output);
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| map_err(e, id))?;
        Ok(ExecOutcome {
            exit_code: inspected.exit_code.unwrap_or(-1),
            output: persys_proto::healthcheck::clip_output(&output),
        })
    }

    async fn address(&self, id: &str) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| map_err(e, id))?;
        let host_network = info
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            == Some("host");
        if host_network {
            return Ok(Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
        }
        let networks = info.network_settings.and_then(|n| n.networks);
        Ok(networks
            .into_iter()
            .flat_map(|n| n.into_values())
            .filter_map(|n| n.ip_address)
            .find_map(|ip| ip.parse().ok()))
    }

    fn logs(&self, id: &str, options: LogOptions) -> LogStream {
        let options = LogsOptions::<String> {
            follow: options.follow,
            stdout: true,
            stderr: true,
            timestamps: options.timestamps,
            tail: options
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let id = id.to_string();
        self.docker
            .logs(&id, Some(options))
            .map(move |item| {
                item.map(|out| out.into_bytes())
                    .map_err(|e| map_err(e, &id))
            })
            .boxed()
    }

    fn events(&self, node_id: &str) -> EventStream {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{}={node_id}", labels::NODE_ID)],
            ),
            (
                "event".to_string(),
                EventAction::DOCKER_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        ]);
        let options = EventsOptions::<String> {
            since: None,
            until: None,
            filters,
        };
        let node = node_id.to_string();
        self.docker
            .events(Some(options))
            .filter_map(move |item| {
                let node = node.clone();
                async move {
                    let msg = match item {
                        Ok(m) => m,
                        Err(e) => return Some(Err(map_err(e, "events"))),
                    };
                    let action = EventAction::parse(msg.action.as_deref()?)?;
                    let actor = msg.actor?;
                    let attributes = actor.attributes.unwrap_or_default();
                    // The engine filters already; this guards against a filter it ignored.
                    if attributes.get(labels::NODE_ID) != Some(&node) {
                        return None;
                    }
                    let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
                    let at = msg
                        .time_nano
                        .and_then(|n| u64::try_from(n).ok())
                        .map(|n| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n));
                    Some(Ok(RuntimeEvent {
                        container_id: actor.id.unwrap_or_default(),
                        action,
                        labels: attributes,
                        exit_code,
                        at,
                    }))
                }
            })
            .boxed()
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let stats = self
            .docker
            .stats(id, Some(options))
            .next()
            .await
            .ok_or_else(|| RuntimeError::Engine(format!("no stats for {id}")))?
            .map_err(|e| map_err(e, id))?;
        // As `docker stats` counts memory: without the inactive page cache.
        let m = &stats.memory_stats;
        let cache = match m.stats {
            Some(MemoryStatsStats::V2(v2)) => v2.inactive_file,
            Some(MemoryStatsStats::V1(v1)) => v1.total_inactive_file,
            None => 0,
        };
        let usage = m.usage.unwrap_or(0);
        Ok(ContainerStats {
            cpu_total_ns: stats.cpu_stats.cpu_usage.total_usage,
            memory_bytes: if cache < usage { usage - cache } else { usage },
        })
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        self.docker.ping().await.map_err(|e| map_err(e, "ping"))?;
        Ok(self.docker.client_version().to_string())
    }
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
