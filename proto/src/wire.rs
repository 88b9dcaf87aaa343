//! Request and response bodies exchanged over HTTP.

use crate::node::Node;
use crate::secret::{Redact, SecretEnv, SecretString};
use crate::status::WorkloadStatus;
use crate::workload::{Command, Resources, RestartPolicy, Workload};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every non-2xx answer: `{"error": "...", "code": "...", "requestId": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// Human message (lower case, names what failed).
    pub error: String,
    /// Machine-readable code, e.g. `not_found`, `invalid`, `unavailable`.
    pub code: String,
    /// Request id (`X-Request-Id`).
    #[serde(default)]
    pub request_id: String,
}

/// Machine-readable error codes.
pub mod codes {
    /// 400: a field failed validation.
    pub const INVALID: &str = "invalid";
    /// 400: the body is not JSON of the expected shape.
    pub const BAD_JSON: &str = "bad_json";
    /// 401.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// 403.
    pub const FORBIDDEN: &str = "forbidden";
    /// 404.
    pub const NOT_FOUND: &str = "not_found";
    /// 409: a concurrent change won.
    pub const CONFLICT: &str = "conflict";
    /// 413.
    pub const TOO_LARGE: &str = "too_large";
    /// 415.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 502: a node's agent failed.
    pub const AGENT_ERROR: &str = "agent_error";
    /// 503: etcd or a dependency is unavailable.
    pub const UNAVAILABLE: &str = "unavailable";
    /// 500.
    pub const INTERNAL: &str = "internal";
    /// 429: a client's rate limit is exhausted (the answer carries `Retry-After`).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 504: an upstream (the scheduler) did not answer in time.
    pub const TIMEOUT: &str = "timeout";
    /// 405: the route exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 403: the cluster's admission policy refuses what the workload asks for.
    pub const POLICY_DENIED: &str = "policy_denied";
}

/// Answer of `POST /workloads/schedule` (the original route). `node_id` is what the
/// original server sent; the other keys are what the original client reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScheduleResponse {
    /// Workload id.
    pub id: String,
    /// Workload id (what the original client reads).
    pub workload_id: String,
    /// Node id, `""` while `Pending`.
    pub node_id: String,
    /// Node id, original server spelling.
    #[serde(rename = "node_id")]
    pub node_id_snake: String,
    /// Status after placement (`Scheduled` or `Pending`).
    pub status: WorkloadStatus,
}

impl From<&Workload> for ScheduleResponse {
    fn from(w: &Workload) -> Self {
        let node = w.node_id.clone().unwrap_or_default();
        Self {
            id: w.id.clone(),
            workload_id: w.id.clone(),
            node_id: node.clone(),
            node_id_snake: node,
            status: w.status,
        }
    }
}

/// Answer of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeList {
    /// Nodes.
    pub nodes: Vec<Node>,
}

/// `POST /nodes/register` on the bootstrap port (with `Authorization: Bearer <join token>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// Requested node id (stable across restarts); the scheduler may assign one if absent.
    #[serde(default)]
    pub node_id: Option<String>,
    /// PEM CSR made from a key that never leaves the node.
    pub csr: String,
    /// Host name.
    pub hostname: String,
    /// Address the scheduler reaches the agent at.
    pub ip_address: String,
    /// Agent mTLS API port.
    pub agent_port: u16,
    /// OS name.
    #[serde(default)]
    pub os_name: String,
    /// Kernel version.
    #[serde(default)]
    pub kernel_version: String,
    /// CPU cores.
    pub total_cpu: f64,
    /// Memory in MB.
    pub total_memory: u64,
    /// Node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Answer of `POST /nodes/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// Assigned node id (certificate common name).
    pub node_id: String,
    /// PEM certificate signed by the cluster CA (client + server usage).
    pub certificate: String,
    /// PEM cluster CA certificate.
    pub ca_certificate: String,
    /// DNS name of the node.
    pub domain_name: String,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: u64,
}

/// `POST /nodes/heartbeat`: identity comes from the client certificate, not the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeHeartbeat {
    /// Free CPU in cores.
    pub available_cpu: f64,
    /// Free memory in MB.
    pub available_memory: u64,
    /// Number of persys containers the agent runs.
    #[serde(default)]
    pub running_containers: u32,
}

/// Answer of a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    /// The scheduler does not know this node (e.g. its record was removed): re-register.
    #[serde(default)]
    pub reregister: bool,
}

/// One container's observed state, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// Workload id (the container's `persys.workloadId` label).
    pub workload_id: String,
    /// Generation label of the container.
    pub generation: u64,
    /// Docker container id, if one exists.
    #[serde(default)]
    pub container_id: Option<String>,
    /// Status in workload terms.
    pub status: WorkloadStatus,
    /// Exit code when exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why (engine message, e.g. the pull error).
    #[serde(default)]
    pub reason: Option<String>,
    /// Engine restart count.
    #[serde(default)]
    pub restart_count: u32,
    /// When the agent observed this state.
    pub observed_at: DateTime<Utc>,
    /// A Compose project's services and revision (then `status` is their fold, see
    /// [`crate::fold_status`], and `container_id` is absent). Absent for one container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectState>,
    /// Health from the agent's probes. Absent without a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::Health>,
    /// Output of the last failed probe. Absent when none failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
}

/// What a node observed of a Compose project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProjectState {
    /// One entry per service.
    pub services: Vec<crate::ServiceState>,
    /// The commit it runs (`git-compose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// `POST /nodes/{id}/status`: state changes pushed by an agent. With `full`, the list
/// is everything the agent runs (a resync), so workloads of this node missing from it
/// are `Missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Container states.
    pub containers: Vec<ContainerState>,
    /// Whether this is the agent's complete list.
    #[serde(default)]
    pub full: bool,
}

/// `POST /docker/run` on the agent (original shape plus `generation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// Workload id; the container is named `<id>-g<generation>` ([`container_name`]).
    pub workload_id: String,
    /// Image reference.
    pub image: String,
    /// Container name, [`container_name`] of the workload id and generation (agents
    /// derive it themselves; the field is informative).
    pub name: String,
    /// Human name (label `persys.displayName`).
    pub display_name: String,
    /// Command, if any.
    #[serde(default)]
    pub command: Option<Command>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Port mappings.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Bind mounts.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Docker network.
    #[serde(default)]
    pub network: Option<String>,
    /// Restart policy (applied by the engine).
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Placement generation (label `persys.generation`).
    pub generation: u64,
    /// CPU/memory limits.
    #[serde(default)]
    pub resources: Resources,
    /// Workload labels, copied onto the container.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Secret environment, merged into `env` by the agent (never logged or answered).
    #[serde(default, skip_serializing_if = "SecretEnv::is_empty")]
    pub secret_env: SecretEnv,
    /// Privileged container (admitted by the cluster policy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Added capabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Host devices `host[:container[:perms]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// PID namespace mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// IPC namespace mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    /// A Compose project to run instead of one container (`docker-compose`,
    /// `git-compose`); `env` are then the project's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectSource>,
    /// Health check the agent runs against the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<crate::HealthCheck>,
}

/// Where a Compose project comes from (the workload's own fields, token included:
/// the dispatch is the one place besides etcd it goes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSource {
    /// The Compose file, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<String>,
    /// The project's directory on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    /// The Compose file's path in the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<String>,
    /// Repository URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repo: Option<String>,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    /// Token of a private repository (`Debug` shows `***`).
    #[serde(default, skip_serializing_if = "SecretString::is_empty")]
    pub git_token: SecretString,
}

impl ProjectSource {
    /// The source of a Compose workload; `None` for a single container.
    pub fn of(spec: &crate::WorkloadSpec) -> Option<Self> {
        spec.kind.is_compose().then(|| Self {
            compose: spec.compose.clone(),
            local_path: spec.local_path.clone(),
            compose_file: spec.compose_file.clone(),
            git_repo: spec.git_repo.clone(),
            git_branch: spec.git_branch.clone(),
            git_token: spec.git_token.clone(),
        })
    }
}

impl RunRequest {
    /// The run request for a placed workload.
    pub fn for_workload(w: &Workload) -> Self {
        Self {
            workload_id: w.id.clone(),
            image: w.spec.image.clone(),
            name: container_name(&w.id, w.generation),
            display_name: w.spec.name.clone(),
            command: w.spec.command.clone(),
            env: w.spec.env_vars.clone(),
            ports: w.spec.ports.clone(),
            volumes: w.spec.volumes.clone(),
            network: w.spec.network.clone(),
            restart_policy: w.spec.restart_policy,
            generation: w.generation,
            resources: w.spec.resources,
            labels: w.spec.labels.clone(),
            secret_env: w.spec.secret_env.clone(),
            privileged: w.spec.privileged,
            cap_add: w.spec.cap_add.clone(),
            devices: w.spec.devices.clone(),
            pid_mode: w.spec.pid_mode.clone(),
            ipc_mode: w.spec.ipc_mode.clone(),
            project: ProjectSource::of(&w.spec),
            health_check: w.spec.health_check.as_deref().cloned(),
        }
    }
}

/// The Docker container name of one generation of a workload: `<workload id>-g<generation>`.
/// One name per generation lets an old copy and its replacement coexist on one engine
/// (make-before-break moves, nodes sharing an engine); containers are found by their
/// labels, never by this name alone.
pub fn container_name(workload_id: &str, generation: u64) -> String {
    format!("{workload_id}-g{generation}")
}

/// Answer of `POST /docker/run`, `/docker/stop/{id}`, `/docker/remove/{id}`: the state
/// after the action.
pub type RunResponse = ContainerState;

/// Query of `GET .../logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LogsQuery {
    /// Last N lines only.
    pub tail: Option<u64>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// A Compose project's service (all of them, each line prefixed with its service
    /// and replica, when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Agent health (`GET /api/v1/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentHealth {
    /// `ok` when the Docker engine answers.
    pub status: String,
    /// Node id.
    pub node_id: String,
    /// Docker API version negotiated.
    pub docker_api_version: String,
}

/// A change in the cluster, as sent on `GET /events` (server-sent events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ClusterEvent {
    /// A workload record was written.
    Workload {
        /// The record after the change (shared with the scheduler's cache).
        workload: std::sync::Arc<Workload>,
    },
    /// A workload record was removed.
    WorkloadDeleted {
        /// Its id.
        id: String,
    },
    /// A node record was written.
    Node {
        /// The record after the change (shared with the scheduler's cache).
        node: std::sync::Arc<Node>,
    },
}

impl Redact for ClusterEvent {
    fn redact(&mut self) {
        if let Self::Workload { workload } = self {
            std::sync::Arc::make_mut(workload).redact();
        }
    }
}

/// Answer of `GET /cluster/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetrics {
    /// Nodes, as `GET /nodes`.
    pub nodes: Vec<Node>,
    /// Workload counts by status name.
    pub workloads_by_status: BTreeMap<String, u64>,
    /// Total workloads.
    pub total_workloads: u64,
    /// Sum of node CPU, millicores.
    pub total_cpu_millis: u64,
    /// Sum of node memory, MB.
    pub total_memory_mb: u64,
    /// Sum of allocated CPU, millicores.
    pub allocated_cpu_millis: u64,
    /// Sum of allocated memory, MB.
    pub allocated_memory_mb: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{WorkloadRequest, WorkloadSpec};

    fn sample() -> Workload {
        let spec: WorkloadSpec = serde_json::from_str::<WorkloadRequest>(
            r#"{"name":"web","image":"busybox:local","command":"echo hi","resources":{"cpu":250,"memory":64},"labels":{"team":"web"}}"#,
        )
        .expect("parses")
        .validate()
        .expect("valid");
        Workload::new("id-1".into(), spec, Utc::now())
    }

    #[test]
    fn workload_record_is_camel_case_with_original_shapes() {
        let v = serde_json::to_value(sample()).expect("serializes");
        assert_eq!(v["type"], "docker-container");
        assert_eq!(v["command"], "echo hi");
        assert_eq!(v["resources"]["cpu"], 250);
        assert_eq!(v["envVars"], serde_json::json!({}));
        assert_eq!(v["ports"], serde_json::json!([]));
        assert_eq!(v["nodeId"], serde_json::Value::Null);
        assert_eq!(v["desiredState"], "Running");
        assert_eq!(v["status"], "Pending");
        assert!(v["createdAt"].as_str().is_some_and(|s| s.ends_with('Z')));
        let back: Workload = serde_json::from_value(v).expect("round trips");
        assert_eq!(back, sample_with_times(&back));
    }

    fn sample_with_times(w: &Workload) -> Workload {
        let mut s = sample();
        s.created_at = w.created_at;
        s.updated_at = w.updated_at;
        s
    }

    #[test]
    fn schedule_response_has_every_key_the_original_reads() {
        let mut w = sample();
        w.node_id = Some("node-1".into());
        w.status = WorkloadStatus::Scheduled;
        let v = serde_json::to_value(ScheduleResponse::from(&w)).expect("serializes");
        for k in ["id", "workloadId", "nodeId", "node_id", "status"] {
            assert!(v[k].is_string(), "{k}");
        }
    }

    #[test]
    fn container_names_differ_per_generation_and_retiring_is_omitted_when_empty() {
        assert_eq!(container_name("w1", 3), "w1-g3");
        let mut w = sample();
        w.generation = 2;
        assert_eq!(RunRequest::for_workload(&w).name, "id-1-g2");
        let v = serde_json::to_value(&w).expect("serializes");
        assert!(v.get("retiring").is_none());
        w.retiring.push(crate::RetiringCopy {
            node_id: "n1".into(),
            generation: 1,
        });
        let v = serde_json::to_value(&w).expect("serializes");
        assert_eq!(v["retiring"][0]["nodeId"], "n1");
    }

    #[test]
    fn public_answers_and_events_never_carry_secret_values() {
        let mut w = sample();
        w.spec.secret_env = SecretEnv::new([("DB_PASSWORD".into(), "hunter2".into())].into());
        let stored = serde_json::to_string(&w).expect("stored form");
        assert!(stored.contains("hunter2"), "the record keeps the value");
        assert!(RunRequest::for_workload(&w)
            .secret_env
            .expose()
            .any(|(_, v)| v == "hunter2"));
        let answer = serde_json::to_value(crate::Public::new(w.clone())).expect("answer");
        assert_eq!(answer["secretEnv"]["DB_PASSWORD"], crate::secret::REDACTED);
        let list = serde_json::to_string(&crate::Public::new(vec![w.clone()])).expect("list");
        assert!(!list.contains("hunter2"));
        let ev = ClusterEvent::Workload {
            workload: std::sync::Arc::new(w.clone()),
        };
        let ev = serde_json::to_string(&crate::Public::new(ev)).expect("event");
        assert!(!ev.contains("hunter2") && ev.contains("DB_PASSWORD"));
        assert!(
            !format!("{w:?}").contains("hunter2"),
            "Debug shows names only"
        );
        assert!(!format!("{:?}", RunRequest::for_workload(&w)).contains("hunter2"));
    }

    #[test]
    fn the_dispatch_of_the_largest_record_fits_the_agent_limit() {
        // A record of the largest accepted size, all of it in fields the dispatch copies.
        let mut w = sample();
        let chunk = "x".repeat(1000);
        let mut i = 0;
        while serde_json::to_vec(&w).expect("encodes").len() < crate::limits::MAX_WORKLOAD_BYTES {
            w.spec.labels.insert(format!("l{i}"), chunk.clone());
            w.spec.env_vars.insert(format!("E{i}"), chunk.clone());
            i += 1;
        }
        let run = serde_json::to_vec(&RunRequest::for_workload(&w)).expect("encodes");
        assert!(
            run.len() <= crate::limits::MAX_DISPATCH_BYTES,
            "{}",
            run.len()
        );
        const { assert!(crate::limits::MAX_REQUEST_BYTES < crate::limits::MAX_WORKLOAD_BYTES) };
    }

    #[test]
    fn cluster_event_is_tagged_by_kind() {
        let v = serde_json::to_value(ClusterEvent::WorkloadDeleted { id: "x".into() })
            .expect("serializes");
        assert_eq!(v["kind"], "workloadDeleted");
    }
}
