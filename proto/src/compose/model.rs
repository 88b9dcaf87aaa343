//! A Compose project as persys runs it: services in start order, each with only the
//! settings persys applies.

use crate::workload::{Resources, RestartPolicy};
use std::collections::BTreeMap;
use std::time::Duration;

/// A checked project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeProject {
    /// Services, each after the services it depends on.
    pub services: Vec<ComposeService>,
    /// Named volumes declared at the top level (one engine volume each per workload).
    pub volumes: Vec<String>,
}

impl ComposeProject {
    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ComposeService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// What the project reserves on its node: the sum of every replica's limits.
    pub fn limits(&self) -> Resources {
        self.services.iter().fold(Resources::default(), |acc, s| {
            let n = u64::from(s.replicas);
            Resources {
                cpu: acc.cpu.saturating_add(s.limits.cpu.saturating_mul(n)),
                memory: acc.memory.saturating_add(s.limits.memory.saturating_mul(n)),
            }
        })
    }
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// Service name (also its host name on the project's network).
    pub name: String,
    /// Image to run, or to tag the build with.
    pub image: Option<String>,
    /// Built from the project's directory when set.
    pub build: Option<Build>,
    /// Cmd, split as Compose splits a string (no shell).
    pub command: Option<Vec<String>>,
    /// Entrypoint, split likewise.
    pub entrypoint: Option<Vec<String>>,
    /// `environment`, after interpolation (values from `env_file` come first, these win).
    pub environment: BTreeMap<String, String>,
    /// `env_file` paths, relative to the project directory.
    pub env_files: Vec<String>,
    /// Published ports as `[ip:][host:]container[/proto]`.
    pub ports: Vec<String>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Services started (or healthy, or done) before this one.
    pub depends_on: Vec<Dependency>,
    /// The container's health check (the image's own when `None`).
    pub healthcheck: Option<HealthCheck>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// `on-failure:N`: at most N restarts.
    pub max_restarts: Option<u32>,
    /// Copies to run (`deploy.replicas`, default 1).
    pub replicas: u32,
    /// Per-replica limits (`deploy.resources.limits`): millicores, MB.
    pub limits: Resources,
    /// Labels (persys adds its own beside them).
    pub labels: BTreeMap<String, String>,
    /// Working directory in the container.
    pub working_dir: Option<String>,
}

/// `build:` of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Context directory, relative to the project directory (`.` for itself).
    pub context: String,
    /// Dockerfile, relative to the context.
    pub dockerfile: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
}

/// A mount of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The source of a [`Mount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume declared at the top level.
    Volume(String),
    /// A path relative to the project directory (never outside it).
    Bind(String),
    /// An anonymous volume (`- /data`).
    Anonymous,
}

/// A `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// What it must have reached.
    pub condition: DependsCondition,
}

/// `depends_on.<service>.condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependsCondition {
    /// `service_started` (the default).
    Started,
    /// `service_healthy`: its health check passes.
    Healthy,
    /// `service_completed_successfully`: it exited 0.
    CompletedSuccessfully,
}

/// A container health check, in the engine's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]` (disables the image's check).
    pub test: Vec<String>,
    /// Between checks.
    pub interval: Option<Duration>,
    /// Of one check.
    pub timeout: Option<Duration>,
    /// Failures in a row before `unhealthy`.
    pub retries: Option<u32>,
    /// Grace time after start during which failures do not count.
    pub start_period: Option<Duration>,
}
