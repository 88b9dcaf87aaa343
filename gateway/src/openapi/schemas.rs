//! Schemas of the public API, mirroring `persys_proto`'s wire types (which stay free
//! of documentation dependencies). A test in `super` serializes the real types and
//! checks every key they produce is described here, so the two cannot drift apart.
#![allow(dead_code)] // Fields exist only to be described.

use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Every non-2xx answer.
#[derive(ToSchema, Serialize)]
#[schema(as = ApiError)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorDoc {
    /// Human message.
    error: String,
    /// Machine-readable code: invalid, bad_json, unauthenticated, forbidden, not_found,
    /// conflict, too_large, rate_limited, method_not_allowed, unavailable, timeout,
    /// agent_error, upstream_error, internal.
    code: String,
    /// The request id (`X-Request-Id`).
    request_id: String,
}

/// Observed status of a workload.
#[derive(ToSchema, Serialize)]
#[schema(as = WorkloadStatus)]
pub enum WorkloadStatusDoc {
    Pending,
    Scheduled,
    Pulling,
    ImagePullBackOff,
    ContainerCreating,
    Running,
    Restarting,
    Stopping,
    Stopped,
    Exited,
    Failed,
    Missing,
    Unknown,
}

/// What the user wants for a workload.
#[derive(ToSchema, Serialize)]
#[schema(as = DesiredState)]
pub enum DesiredStateDoc {
    Running,
    Stopped,
    Deleted,
}

/// Scheduling status of a node.
#[derive(ToSchema, Serialize)]
#[schema(as = NodeStatus)]
pub enum NodeStatusDoc {
    Active,
    Inactive,
    Draining,
    Cordoned,
}

/// When the engine restarts an exited container.
#[derive(ToSchema, Serialize)]
#[schema(as = RestartPolicy)]
pub enum RestartPolicyDoc {
    #[serde(rename = "no")]
    No,
    #[serde(rename = "on-failure")]
    OnFailure,
    #[serde(rename = "always")]
    Always,
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
}

/// Workload type (only `docker-container` runs today).
#[derive(ToSchema, Serialize)]
#[schema(as = WorkloadType)]
pub enum WorkloadTypeDoc {
    #[serde(rename = "docker-container")]
    DockerContainer,
}

/// A string is the container's shell form (`/bin/sh -c`); an array the exec form.
#[derive(ToSchema, Serialize)]
#[schema(as = Command)]
#[serde(untagged)]
pub enum CommandDoc {
    /// Shell form.
    Shell(String),
    /// Exec form.
    Exec(Vec<String>),
}

/// Requested resources; 0 means no request and no limit.
#[derive(ToSchema, Serialize)]
#[schema(as = Resources)]
pub struct ResourcesDoc {
    /// Millicores.
    #[schema(minimum = 0)]
    cpu: u64,
    /// Megabytes.
    #[schema(minimum = 0)]
    memory: u64,
}

/// A workload as a client submits it. Server-owned keys the original CLI sends (`id`,
/// `status`, `createdAt`) and unknown keys are accepted and ignored.
#[derive(ToSchema, Serialize)]
#[schema(as = WorkloadRequest)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRequestDoc {
    /// Name (derived from the image when absent).
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
    name: Option<String>,
    /// Workload type.
    #[serde(rename = "type")]
    kind: Option<WorkloadTypeDoc>,
    /// Image reference.
    #[schema(pattern = r"^\S+$", min_length = 1)]
    image: String,
    /// Command.
    command: Option<CommandDoc>,
    /// Environment variables.
    env_vars: Option<BTreeMap<String, String>>,
    /// Port mappings `[ip:]host:container[/tcp|udp|sctp]`.
    ports: Option<Vec<String>>,
    /// Bind mounts `host:container[:ro|rw]`.
    volumes: Option<Vec<String>>,
    /// Docker network.
    network: Option<String>,
    /// Restart policy.
    restart_policy: Option<RestartPolicyDoc>,
    /// Resources.
    resources: Option<ResourcesDoc>,
    /// Labels (`persys.io/repo` and `persys.io/branch` subscribe to GitHub pushes).
    labels: Option<BTreeMap<String, String>>,
    /// Node labels the workload requires.
    node_selector: Option<BTreeMap<String, String>>,
    /// Environment variables whose values are secret: given to the container, shown
    /// as `"***"` in every answer and event, never logged.
    secret_env: Option<BTreeMap<String, String>>,
    /// Privileged container (needs the policy's `allowPrivileged`).
    privileged: Option<bool>,
    /// Capabilities to add, e.g. `NET_ADMIN` (needs `allowedCapabilities`).
    cap_add: Option<Vec<String>>,
    /// Host devices `host[:container[:rwm]]` (needs `allowDevices`).
    devices: Option<Vec<String>>,
    /// `host` (needs `allowHostPid`).
    pid_mode: Option<String>,
    /// `private`, `shareable`, `none` or `host` (`host` needs `allowHostIpc`).
    ipc_mode: Option<String>,
}

/// A stored workload record.
#[derive(ToSchema, Serialize)]
#[schema(as = Workload)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadDoc {
    /// UUID.
    id: String,
    /// Name.
    name: String,
    /// Workload type.
    #[serde(rename = "type")]
    kind: WorkloadTypeDoc,
    /// Image reference.
    image: String,
    /// Command, absent when the image's own runs.
    command: Option<CommandDoc>,
    /// Environment variables.
    env_vars: BTreeMap<String, String>,
    /// Port mappings.
    ports: Vec<String>,
    /// Bind mounts.
    volumes: Vec<String>,
    /// Docker network, absent for the default.
    network: Option<String>,
    /// Restart policy.
    restart_policy: RestartPolicyDoc,
    /// Resources.
    resources: ResourcesDoc,
    /// Labels.
    labels: BTreeMap<String, String>,
    /// Required node labels.
    node_selector: BTreeMap<String, String>,
    /// Secret environment variable names, each with the value `"***"`; absent when none.
    secret_env: Option<BTreeMap<String, String>>,
    /// Privileged; absent when false.
    privileged: Option<bool>,
    /// Added capabilities; absent when none.
    cap_add: Option<Vec<String>>,
    /// Host devices; absent when none.
    devices: Option<Vec<String>>,
    /// PID namespace mode; absent when unset.
    pid_mode: Option<String>,
    /// IPC namespace mode; absent when unset.
    ipc_mode: Option<String>,
    /// Node the workload is placed on; null while Pending.
    node_id: Option<String>,
    /// Observed status.
    status: WorkloadStatusDoc,
    /// Desired state.
    desired_state: DesiredStateDoc,
    /// Creation time.
    #[schema(format = DateTime)]
    created_at: String,
    /// Last change.
    #[schema(format = DateTime)]
    updated_at: String,
    /// Placement generation.
    #[schema(minimum = 0)]
    generation: u64,
    /// Why the workload is in its status.
    status_reason: Option<String>,
    /// Exit code of the last exit.
    exit_code: Option<i64>,
    /// Restarts by the engine.
    #[schema(minimum = 0)]
    restart_count: u32,
    /// Docker container id on the node.
    container_id: Option<String>,
}

/// Answer of `POST /workloads/schedule` (the original route).
#[derive(ToSchema, Serialize)]
#[schema(as = ScheduleResponse)]
pub struct ScheduleResponseDoc {
    /// Workload id.
    id: String,
    /// Workload id (what the original client reads).
    #[serde(rename = "workloadId")]
    workload_id: String,
    /// Node id, empty while Pending.
    #[serde(rename = "nodeId")]
    node_id: String,
    /// Node id, original server spelling.
    #[serde(rename = "node_id")]
    node_id_snake: String,
    /// Status after placement.
    status: WorkloadStatusDoc,
}

/// A node.
#[derive(ToSchema, Serialize)]
#[schema(as = Node)]
#[serde(rename_all = "camelCase")]
pub struct NodeDoc {
    node_id: String,
    hostname: String,
    ip_address: String,
    agent_port: u16,
    os_name: String,
    kernel_version: String,
    status: NodeStatusDoc,
    /// Cores.
    total_cpu: f64,
    /// MB.
    #[schema(minimum = 0)]
    total_memory: u64,
    /// Free cores at the last heartbeat.
    available_cpu: f64,
    /// Free MB at the last heartbeat.
    #[schema(minimum = 0)]
    available_memory: u64,
    /// Millicores requested by workloads placed here.
    #[schema(minimum = 0)]
    allocated_cpu: u64,
    /// MB requested by workloads placed here.
    #[schema(minimum = 0)]
    allocated_memory: u64,
    labels: BTreeMap<String, String>,
    domain_name: String,
    #[schema(format = DateTime)]
    last_heartbeat: Option<String>,
    #[schema(format = DateTime)]
    registered_at: String,
}

/// Answer of `GET /nodes`.
#[derive(ToSchema, Serialize)]
#[schema(as = NodeList)]
pub struct NodeListDoc {
    nodes: Vec<NodeDoc>,
}

/// Answer of `GET /cluster/metrics`.
#[derive(ToSchema, Serialize)]
#[schema(as = ClusterMetrics)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetricsDoc {
    nodes: Vec<NodeDoc>,
    workloads_by_status: BTreeMap<String, u64>,
    #[schema(minimum = 0)]
    total_workloads: u64,
    #[schema(minimum = 0)]
    total_cpu_millis: u64,
    #[schema(minimum = 0)]
    total_memory_mb: u64,
    #[schema(minimum = 0)]
    allocated_cpu_millis: u64,
    #[schema(minimum = 0)]
    allocated_memory_mb: u64,
}

/// A node's placement verdict.
#[derive(ToSchema, Serialize)]
#[schema(as = Verdict)]
#[serde(rename_all = "lowercase")]
pub enum VerdictDoc {
    /// A filter refused the node.
    Rejected,
    /// It passed every filter; another node scored better.
    Eligible,
    /// The node placement chooses.
    Winner,
}

/// A placement filter, in the order they run.
#[derive(ToSchema, Serialize)]
#[schema(as = PlacementFilter)]
#[serde(rename_all = "camelCase")]
pub enum PlacementFilterDoc {
    /// The node must be Active.
    Status,
    /// The node must carry every label of the node selector.
    NodeSelector,
    /// The request must fit in the CPU and memory the node has left.
    Resources,
}

/// How placement judged one node.
#[derive(ToSchema, Serialize)]
#[schema(as = NodeVerdict)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdictDoc {
    node_id: String,
    verdict: VerdictDoc,
    /// The first filter the node failed; only when rejected.
    filter: Option<PlacementFilterDoc>,
    /// Why that filter rejected it; only when rejected.
    reason: Option<String>,
    /// Its score under the strategy (higher is better, about 0 to 1); only when it
    /// passed every filter.
    score: Option<f64>,
    /// Millicores requested by the workloads placed on it (the explained workload's
    /// own reservation left out).
    #[schema(minimum = 0)]
    allocated_cpu: u64,
    /// MB requested by the workloads placed on it.
    #[schema(minimum = 0)]
    allocated_memory: u64,
    /// Millicores left.
    #[schema(minimum = 0)]
    available_cpu: u64,
    /// MB left.
    #[schema(minimum = 0)]
    available_memory: u64,
    /// Workloads placed on it.
    #[schema(minimum = 0)]
    workloads: u32,
}

/// Answer of `GET /workloads/{id}/placement`.
#[derive(ToSchema, Serialize)]
#[schema(as = PlacementExplanation)]
#[serde(rename_all = "camelCase")]
pub struct PlacementExplanationDoc {
    workload_id: String,
    name: String,
    /// Its current status.
    status: WorkloadStatusDoc,
    /// The node it is placed on now; null while Pending.
    node_id: Option<String>,
    /// `spread` or `binpack`.
    strategy: String,
    /// What it requests.
    request: ResourcesDoc,
    /// The node labels it requires.
    node_selector: BTreeMap<String, String>,
    /// One verdict per node, by node id.
    nodes: Vec<NodeVerdictDoc>,
    /// The node placement would choose now; absent when none fits.
    winner: Option<String>,
    /// When no node fits: what would make it fit.
    hint: Option<String>,
}

/// How an allowed host path may be mounted.
#[derive(ToSchema, Serialize)]
#[schema(as = MountMode)]
pub enum MountModeDoc {
    /// Read-only: the volume must say `:ro`.
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read-write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One host path prefix workloads may bind mount.
#[derive(ToSchema, Serialize)]
#[schema(as = HostPathRule)]
pub struct HostPathRuleDoc {
    /// Absolute path; it and everything under it (whole path components).
    prefix: String,
    /// `ro` (default) or `rw`.
    mode: Option<MountModeDoc>,
}

/// The cluster's admission policy. Everything is refused by default; the container
/// engine's socket (or a directory holding it) is never allowed.
#[derive(ToSchema, Serialize)]
#[schema(as = ClusterPolicy)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicyDoc {
    /// Host path prefixes `volumes` may bind mount.
    allowed_host_paths: Vec<HostPathRuleDoc>,
    /// `network: host`.
    allow_host_network: bool,
    /// `network: container:<id>`.
    allow_container_network: bool,
    /// `pidMode: host`.
    allow_host_pid: bool,
    /// `ipcMode: host`.
    allow_host_ipc: bool,
    /// `privileged: true`.
    allow_privileged: bool,
    /// Capabilities `capAdd` may name; `ALL` allows any.
    allowed_capabilities: Vec<String>,
    /// `devices`.
    allow_devices: bool,
}

/// Answer of `/healthz` and `/readyz`.
#[derive(ToSchema, Serialize)]
#[schema(as = Health)]
pub struct HealthDoc {
    /// `ok` or `ready`.
    status: String,
}
