//! persys domain model and wire types.
//!
//! Everything the scheduler, agent, gateway and CLI exchange is defined here once.
//! JSON is camelCase and compatible with the original persys (Go) payloads; see
//! `shared/spec/api.md`. This crate does no I/O.

pub mod autoscale;
pub mod compose;
pub mod dns;
pub mod health;
pub mod healthcheck;
pub mod leader;
pub mod limits;
pub mod names;
pub mod node;
pub mod placement;
pub mod policy;
pub mod ports;
pub mod project;
pub mod schedule;
pub mod secret;
pub mod service;
pub mod snapshot;
pub mod status;
pub mod validate;
pub mod wire;
pub mod workload;

pub use health::Health;
pub use healthcheck::{HealthCheck, HttpCheck, Probe, TcpCheck};
pub use leader::{LeaderInfo, LeaderRecord};
pub use names::{Role, ADMIN_NAME, GATEWAY_NAME, REQUEST_ID_HEADER, SCHEDULER_NAME};
pub use node::{Node, NodeStatus};
pub use placement::{NodeVerdict, PlacementExplanation, PlacementFilter, Verdict};
pub use policy::{ClusterPolicy, HostPathRule, MountMode};
pub use project::{fold_status, ServiceState};
pub use secret::{Public, Redact, SecretEnv, SecretString};
pub use service::{
    ApplyResult, FailureAction, RolloutState, ScaleRequest, Service, ServiceApplied,
    ServiceRequest, ServiceRevision, ServiceStatus, UpdateConfig, UpdateOrder,
};
pub use status::{DesiredState, WorkloadStatus};
pub use validate::ValidationError;
pub use wire::*;
pub use workload::{
    Command, Observed, Resources, RestartPolicy, RetiringCopy, Workload, WorkloadRequest,
    WorkloadSpec, WorkloadType,
};

/// Labels every persys container carries (see "Agent API" in the contract).
pub mod labels {
    /// Workload id the container runs.
    pub const WORKLOAD_ID: &str = "persys.workloadId";
    /// Human name of the workload.
    pub const DISPLAY_NAME: &str = "persys.displayName";
    /// Placement generation; a container with an older generation than the record is stale.
    pub const GENERATION: &str = "persys.generation";
    /// Node (agent) that owns the container; agents sharing one engine never touch others'.
    pub const NODE_ID: &str = "persys.nodeId";
    /// Service of a Compose project the container runs (absent for single containers).
    pub const SERVICE: &str = "persys.service";
    /// Replica index of that service's container (`0`, `1`, …).
    pub const REPLICA: &str = "persys.replica";
    /// Marks a container as managed by persys.
    pub const MANAGED: &str = "persys.managed";
    /// The container's health check as JSON ([`crate::HealthCheck`]); the agent probes
    /// every running container that has one, also after it restarts.
    pub const HEALTH_CHECK: &str = "persys.healthCheck";
    /// Workload label: the git repository (`owner/name`) it is built from. A GitHub push
    /// to that repository and [`BRANCH`] redeploys it (gateway webhook).
    pub const REPO: &str = "persys.io/repo";
    /// Workload label: the git branch it follows (see [`REPO`]).
    pub const BRANCH: &str = "persys.io/branch";
}

/// etcd key layout (original keys kept).
pub mod keys {
    /// Prefix of workload records.
    pub const WORKLOADS: &str = "/workloads/";
    /// Prefix of node records.
    pub const NODES: &str = "/nodes/";
    /// Prefix of CoreDNS (skydns) records.
    pub const SKYDNS: &str = "/skydns/";
    /// Prefix of token metadata (hash only).
    pub const TOKENS: &str = "/persys/tokens/";
    /// Leader election key for scheduler replicas.
    pub const LEADER: &str = "/persys/leader";
    /// The cluster's admission policy ([`crate::ClusterPolicy`]).
    pub const POLICY: &str = "/persys/policy";
    /// Prefix of service records ([`crate::Service`]).
    pub const SERVICES: &str = "/persys/services/";

    /// The first key after every key that starts with `prefix` (the end of etcd's
    /// prefix range: the last byte that can be incremented, incremented, and what
    /// follows cut; all `0xff` or empty: to the end of the key space).
    pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        vec![0]
    }

    #[cfg(test)]
    #[test]
    fn the_range_of_a_prefix_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/skydns/dev/"), b"/skydns/dev0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    /// Key of one service record.
    pub fn service(name: &str) -> String {
        format!("{SERVICES}{name}")
    }

    /// Key of one workload record.
    pub fn workload(id: &str) -> String {
        format!("{WORKLOADS}{id}")
    }
    /// Key of one node record.
    pub fn node(id: &str) -> String {
        format!("{NODES}{id}")
    }
    /// Key of a token record by the hex sha256 of its secret.
    pub fn token(hash_hex: &str) -> String {
        format!("{TOKENS}{hash_hex}")
    }
}
