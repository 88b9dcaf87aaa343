//! The container engine behind a trait, so the agent's logic runs against Docker in
//! production and against an in-memory fake in unit tests and benchmarks.
//!
//! The trait is deliberately low level (create+start, stop, remove, inspect, …): the
//! decisions (idempotent run, generation fencing, ownership) live in `supervisor` once,
//! not in every runtime.

pub mod docker;
pub mod fake;
pub mod spec;

use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

pub use spec::{ContainerSpec, PortMapping};

/// What went wrong talking to the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// No container with that name or id.
    #[error("no such container {0:?}")]
    NotFound(String),
    /// The image is not present locally (create refused it).
    #[error("image {0:?} is not present on this node")]
    ImageNotFound(String),
    /// The container name is taken.
    #[error("container name {0:?} is already in use")]
    NameConflict(String),
    /// Pulling the image failed; the message is the engine's.
    #[error("pulling image {image:?} failed: {message}")]
    Pull {
        /// Image reference.
        image: String,
        /// Engine message.
        message: String,
    },
    /// The container was created but did not start (message is the engine's).
    #[error("container {id} did not start: {message}")]
    StartFailed {
        /// Engine container id (the container is left in place).
        id: String,
        /// Engine message.
        message: String,
    },
    /// The engine refused or failed an operation (message is the engine's).
    #[error("docker engine: {0}")]
    Engine(String),
    /// The engine could not be reached.
    #[error("docker engine unreachable: {0}")]
    Unavailable(String),
}

/// Engine-level state of a container (Docker's `State.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineStatus {
    /// Created, never started (or start failed).
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the engine's restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Dead (removal failed half-way).
    Dead,
}

/// A container as the engine describes it (an inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Engine container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference it was created from.
    pub image: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Engine state.
    pub status: EngineStatus,
    /// Exit code of the last run (0 while running).
    pub exit_code: Option<i64>,
    /// Killed by the OOM killer.
    pub oom_killed: bool,
    /// Engine error (e.g. why start failed).
    pub error: Option<String>,
    /// How often the engine restarted it.
    pub restart_count: u32,
    /// How long the last run lasted, when the container is not running (from the
    /// engine's start and finish times); the engine's restart back-off depends on it.
    pub last_run: Option<Duration>,
    /// CPU limit in nano CPUs (0 = none).
    pub nano_cpus: i64,
    /// Memory limit in bytes (0 = none).
    pub memory_bytes: i64,
}

/// One entry of a container list (cheap: no inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Engine container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Whether it runs now.
    pub running: bool,
}

/// Container lifecycle actions the agent follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// Started (also after an engine restart).
    Start,
    /// The process exited.
    Die,
    /// The OOM killer struck.
    Oom,
    /// Stopped on request.
    Stop,
    /// Removed.
    Destroy,
    /// Restarted on request.
    Restart,
}

impl EventAction {
    /// Parse Docker's action name; `None` for actions the agent ignores.
    pub fn parse(action: &str) -> Option<Self> {
        match action {
            "start" => Some(Self::Start),
            "die" => Some(Self::Die),
            "oom" => Some(Self::Oom),
            "stop" => Some(Self::Stop),
            "destroy" => Some(Self::Destroy),
            "restart" => Some(Self::Restart),
            _ => None,
        }
    }

    /// Docker's action names for the event filter.
    pub const DOCKER_NAMES: [&'static str; 6] =
        ["start", "die", "oom", "stop", "destroy", "restart"];
}

/// A container event from the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// Engine container id.
    pub container_id: String,
    /// What happened.
    pub action: EventAction,
    /// Container labels (the event carries them, so a destroyed container is still known).
    pub labels: HashMap<String, String>,
    /// Exit code, on `die`.
    pub exit_code: Option<i64>,
    /// When the engine says it happened (its event timestamp), if it says.
    pub at: Option<std::time::SystemTime>,
}

/// Options of a log read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOptions {
    /// Last N lines only (all when `None`).
    pub tail: Option<u64>,
    /// Keep streaming new output.
    pub follow: bool,
    /// Prefix lines with RFC 3339 timestamps.
    pub timestamps: bool,
}

/// What a command run in a container gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Its exit code (`-1` when the engine did not say).
    pub exit_code: i64,
    /// Its output, stdout and stderr merged, clipped to its tail.
    pub output: String,
}

/// What a running container has used, as the engine counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerStats {
    /// CPU time used since it started, nanoseconds (a counter).
    pub cpu_total_ns: u64,
    /// Memory in use, page cache that can be dropped left out, bytes.
    pub memory_bytes: u64,
}

/// A stream of log bytes (stdout and stderr merged, without Docker's framing).
pub type LogStream = BoxStream<'static, Result<Bytes, RuntimeError>>;

/// A stream of container events.
pub type EventStream = BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;

/// A container engine. Implementations are cheap to clone behind an `Arc`.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Create and start a container; returns its id. `ImageNotFound` when the image is
    /// absent, `NameConflict` when the name is taken. A container that was created but
    /// failed to start is left in place and the start error returned as `StartFailed`.
    fn run(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    /// Start an existing container.
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Pull an image.
    fn pull(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Stop a container, killing it after `timeout`.
    fn stop(
        &self,
        id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Force-remove a container.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Describe a container by name or id.
    fn inspect(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<Observed, RuntimeError>> + Send;
    /// All containers (running or not) labelled with `persys.nodeId=<node_id>`.
    fn list(&self, node_id: &str)
        -> impl Future<Output = Result<Vec<Listed>, RuntimeError>> + Send;
    /// The containers (running or not) of one workload on this node: labelled
    /// `persys.nodeId=<node_id>` and `persys.workloadId=<workload_id>`.
    fn list_workload(
        &self,
        node_id: &str,
        workload_id: &str,
    ) -> impl Future<Output = Result<Vec<Listed>, RuntimeError>> + Send;
    /// Container output.
    fn logs(&self, id: &str, options: LogOptions) -> LogStream;
    /// Lifecycle events of containers labelled `persys.nodeId=<node_id>`.
    fn events(&self, node_id: &str) -> EventStream;
    /// Run `argv` in the running container `id` and wait for it (health checks).
    fn exec(
        &self,
        id: &str,
        argv: &[String],
    ) -> impl Future<Output = Result<ExecOutcome, RuntimeError>> + Send;
    /// The address the agent reaches the container's ports at (its address on its
    /// network; loopback for the host network); `None` when it has none.
    fn address(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<std::net::IpAddr>, RuntimeError>> + Send;
    /// What running container `id` has used (one read, no waiting for a second one).
    fn stats(&self, id: &str) -> impl Future<Output = Result<ContainerStats, RuntimeError>> + Send;
    /// The engine's API version in use (also a liveness probe).
    fn version(&self) -> impl Future<Output = Result<String, RuntimeError>> + Send;
}
