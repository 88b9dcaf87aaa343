//! Workloads: what a user asks for (`WorkloadRequest`), what validation accepts
//! (`WorkloadSpec`) and what the scheduler stores (`Workload`).

use crate::secret::{Redact, SecretEnv, SecretString};
use crate::status::{DesiredState, WorkloadStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The kind of workload: the original persys' three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkloadType {
    /// A single container run through the Docker API.
    #[default]
    #[serde(rename = "docker-container")]
    DockerContainer,
    /// A Compose project: the `compose` content and/or a `localPath` on the node.
    #[serde(rename = "docker-compose")]
    DockerCompose,
    /// A Compose project from a git repository (`gitRepo`, `gitBranch`).
    #[serde(rename = "git-compose")]
    GitCompose,
}

impl WorkloadType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DockerContainer => "docker-container",
            Self::DockerCompose => "docker-compose",
            Self::GitCompose => "git-compose",
        }
    }

    /// Whether the workload is a Compose project (several containers, `services`).
    pub fn is_compose(self) -> bool {
        !matches!(self, Self::DockerContainer)
    }
}

/// A container command: a string is the container's own shell form (`/bin/sh -c`,
/// as a Dockerfile's shell form), an array the exec form. Never run by a host shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Command {
    /// Shell form: run as `/bin/sh -c <string>` inside the container.
    Shell(String),
    /// Exec form: argv, no shell.
    Exec(Vec<String>),
}

impl Command {
    /// The argv handed to the container runtime.
    pub fn to_argv(&self) -> Vec<String> {
        match self {
            Self::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Self::Exec(v) => v.clone(),
        }
    }

    /// Whether the command carries nothing to run.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Shell(s) => s.trim().is_empty(),
            Self::Exec(v) => v.is_empty(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shell(s) => f.write_str(s),
            Self::Exec(v) => f.write_str(&v.join(" ")),
        }
    }
}

/// When the engine restarts a container that exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    #[serde(rename = "no")]
    No,
    /// Restart when the exit code is non-zero.
    #[serde(rename = "on-failure")]
    OnFailure,
    /// Always restart.
    #[serde(rename = "always")]
    Always,
    /// Restart unless stopped on request.
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
}

impl RestartPolicy {
    /// Wire name, as Docker spells it too.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::OnFailure => "on-failure",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
        }
    }

    /// Parse a wire name; empty means `no`, as in the original.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "no" => Some(Self::No),
            "on-failure" => Some(Self::OnFailure),
            "always" => Some(Self::Always),
            "unless-stopped" => Some(Self::UnlessStopped),
            _ => None,
        }
    }

    /// Whether a workload with this policy is moved to another node when its node is lost.
    pub fn reschedules_on_node_loss(self) -> bool {
        !matches!(self, Self::No)
    }

    /// Whether a move (drain, redeploy elsewhere) starts the new copy before the old one
    /// is removed: services that must stay up (`always`, `unless-stopped`). Others stop
    /// the old copy first, so a job never runs twice at once.
    pub fn make_before_break(self) -> bool {
        matches!(self, Self::Always | Self::UnlessStopped)
    }
}

/// Requested resources: `cpu` in millicores, `memory` in MB. `0` means no request and
/// no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    /// Millicores (1000 = one core).
    #[serde(default)]
    pub cpu: u64,
    /// Megabytes.
    #[serde(default)]
    pub memory: u64,
}

/// A workload as a client sends it. Lenient on purpose: the original CLI sends
/// server-owned keys (`id`, `status`, `createdAt`) and unknown keys, which are ignored.
/// Types are loose here so that validation can name the offending field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadRequest {
    /// Human name (DNS label).
    pub name: String,
    /// Workload type; `docker-container` when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Image reference.
    pub image: String,
    /// Shell-form string or exec-form array.
    // Loose here so validation can name the field; documented as what it must be.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Command>))]
    pub command: Option<serde_json::Value>,
    /// Environment variables.
    pub env_vars: BTreeMap<String, String>,
    /// Port mappings `host:container[/proto]`.
    pub ports: Vec<String>,
    /// Bind mounts `host:container[:ro|rw]`.
    pub volumes: Vec<String>,
    /// Docker network name.
    pub network: Option<String>,
    /// `no` | `on-failure` | `always` | `unless-stopped`.
    pub restart_policy: Option<String>,
    /// Requested resources (integers; negative values are refused by validation).
    pub resources: Option<ResourcesRequest>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Node labels the workload requires.
    pub node_selector: BTreeMap<String, String>,
    /// Environment variables whose values are secret: given to the container, never
    /// shown by any answer, event or log (answers show `"***"`).
    pub secret_env: BTreeMap<String, String>,
    /// Run privileged (needs the cluster policy's `allowPrivileged`).
    pub privileged: bool,
    /// Capabilities to add (needs `allowedCapabilities`).
    pub cap_add: Vec<String>,
    /// Host devices `host[:container[:perms]]` (needs `allowDevices`).
    pub devices: Vec<String>,
    /// `host` shares the host's PID namespace (needs `allowHostPid`).
    pub pid_mode: Option<String>,
    /// `private`, `shareable`, `none` or `host` (`host` needs `allowHostIpc`).
    pub ipc_mode: Option<String>,
    /// `docker-compose`: the Compose file, base64 (as the original CLI's `--compose`).
    pub compose: Option<String>,
    /// `docker-compose`: a directory on the node holding the project (needs the cluster
    /// policy's `allowedHostPaths` with `rw`).
    pub local_path: Option<String>,
    /// `git-compose`: the repository URL (`https://`, `http://`, `file://`).
    pub git_repo: Option<String>,
    /// `git-compose`: the branch followed (`main` when absent).
    pub git_branch: Option<String>,
    /// `git-compose`: a token for a private repository; never shown by any answer.
    pub git_token: Option<String>,
    /// `git-compose` (or `docker-compose` with `localPath`): the Compose file's path in
    /// the project, when not `compose.yaml` / `docker-compose.yml` at its root.
    pub compose_file: Option<String>,
    /// Health check.
    #[serde(default)]
    pub health_check: Option<crate::HealthCheck>,
    /// Every other key: ignored (the original CLI sends some), except security-relevant
    /// ones the API does not support, which validation refuses by name.
    #[serde(flatten)]
    // Not described: a schema's unnamed keys are allowed anyway, and an explicit
    // "anything" map sends schemathesis into arbitrarily nested extra keys (which hit a
    // recursion bug of its generator) without describing the API any better.
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Resources as sent, before validation (loose so validation can name the field).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ResourcesRequest {
    /// Millicores.
    pub cpu: serde_json::Value,
    /// Megabytes.
    pub memory: serde_json::Value,
}

/// A validated workload: what the user owns in a stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Human name.
    pub name: String,
    /// Workload type.
    #[serde(rename = "type")]
    pub kind: WorkloadType,
    /// Image reference.
    pub image: String,
    /// Command, if any (otherwise the image's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Environment variables.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Port mappings.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Bind mounts.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Docker network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Requested resources.
    #[serde(default)]
    pub resources: Resources,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Required node labels.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Secret environment variables (values redacted in every answer; see
    /// [`crate::Public`]). Absent when empty.
    #[serde(default, skip_serializing_if = "SecretEnv::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub secret_env: SecretEnv,
    /// Privileged container. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Added capabilities (canonical names, no `CAP_`). Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Host devices. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// PID namespace mode (`host`). Absent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// IPC namespace mode. Absent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    /// The Compose file as sent, base64 (`docker-compose`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<String>,
    /// The project's directory on the node (`docker-compose`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    /// Repository URL (`git-compose`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repo: Option<String>,
    /// Branch followed (`git-compose`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    /// Token of a private repository (answers show `"***"`). Absent when none.
    #[serde(default, skip_serializing_if = "SecretString::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub git_token: SecretString,
    /// Path of the Compose file in the project. Absent for the default names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<String>,
    /// Health check run by the agent (absent: none; the container counts as healthy
    /// while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Box<crate::HealthCheck>>,
}

/// A stored workload record: the spec plus what the server owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// UUID v4 assigned by the scheduler.
    pub id: String,
    /// What the user asked for.
    #[serde(flatten)]
    // Inline, so the gateway can merge it into one flat object as the JSON is.
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub spec: WorkloadSpec,
    /// Node the workload is placed on; `null` while `Pending`.
    pub node_id: Option<String>,
    /// Observed status.
    pub status: WorkloadStatus,
    /// What the user wants.
    pub desired_state: DesiredState,
    /// Creation time (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// Last change (RFC 3339).
    pub updated_at: DateTime<Utc>,
    /// Bumped on every placement; containers of older generations are stale (fencing).
    pub generation: u64,
    /// Why the workload is in its status (e.g. why it is `Pending`).
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Exit code of the last container exit.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// How many times the container was restarted.
    #[serde(default)]
    pub restart_count: u32,
    /// Docker container id on the node.
    #[serde(default)]
    pub container_id: Option<String>,
    /// Older copies on other nodes still to be removed after a move (drain, redeploy
    /// elsewhere): at once, or once this generation runs (make-before-break). Absent
    /// when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringCopy>,
    /// When the agent observed the container state the status comes from, and of
    /// which generation: a state observed earlier, arriving later (a push racing the
    /// run's own answer), does not overwrite it. Absent before the first state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// A Compose project's services as its node last saw them. Absent for single
    /// containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<crate::project::ServiceState>,
    /// The commit a `git-compose` project runs (full sha). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The container's health as its agent last probed it. Absent without a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::Health>,
    /// Output of the last failed probe (clipped). Absent when none failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
    /// The service this workload is a replica of. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// The service revision the replica runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_revision: Option<u64>,
    /// The replica's index in its service (`<service>-<index>` is its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
}

/// When a workload's container state was observed by its agent (the agent's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// The generation whose container it was.
    pub generation: u64,
    /// When.
    pub at: DateTime<Utc>,
}

/// A previous placement of a workload whose container is still to be removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RetiringCopy {
    /// Node that runs the old copy.
    pub node_id: String,
    /// Its generation (its container is `container_name(id, generation)`).
    pub generation: u64,
}

impl Redact for Workload {
    fn redact(&mut self) {
        self.spec.secret_env.redact();
        self.spec.git_token.redact();
    }
}

impl Workload {
    /// A new record for a validated spec, not yet placed.
    pub fn new(id: String, spec: WorkloadSpec, now: DateTime<Utc>) -> Self {
        Self {
            id,
            spec,
            node_id: None,
            status: WorkloadStatus::Pending,
            desired_state: DesiredState::Running,
            created_at: now,
            updated_at: now,
            generation: 0,
            status_reason: None,
            exit_code: None,
            restart_count: 0,
            container_id: None,
            retiring: Vec::new(),
            observed: None,
            services: Vec::new(),
            revision: None,
            health: None,
            health_output: None,
            service_id: None,
            service_revision: None,
            replica: None,
        }
    }
}
