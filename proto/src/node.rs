//! Nodes (machines running an agent).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Scheduling status of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NodeStatus {
    /// Heartbeating; accepts placements.
    #[default]
    Active,
    /// No heartbeat within the node timeout.
    Inactive,
    /// Workloads are being moved off; no new placements.
    Draining,
    /// No new placements; running workloads stay.
    Cordoned,
}

impl NodeStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
            Self::Draining => "Draining",
            Self::Cordoned => "Cordoned",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node record, as stored in etcd (`/nodes/<id>`) and answered by the API.
/// It never carries a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Node id (also its certificate's common name).
    pub node_id: String,
    /// Host name the agent reported.
    pub hostname: String,
    /// Address the scheduler reaches the agent at.
    pub ip_address: String,
    /// Agent mTLS API port.
    pub agent_port: u16,
    /// Operating system name.
    #[serde(default)]
    pub os_name: String,
    /// Kernel version.
    #[serde(default)]
    pub kernel_version: String,
    /// Scheduling status.
    pub status: NodeStatus,
    /// Total CPU in cores (a number, as the original).
    pub total_cpu: f64,
    /// Total memory in MB.
    pub total_memory: u64,
    /// Free CPU in cores, from the last heartbeat.
    #[serde(default)]
    pub available_cpu: f64,
    /// Free memory in MB, from the last heartbeat.
    #[serde(default)]
    pub available_memory: u64,
    /// Millicores requested by workloads placed here.
    #[serde(default)]
    pub allocated_cpu: u64,
    /// MB requested by workloads placed here.
    #[serde(default)]
    pub allocated_memory: u64,
    /// Node labels (matched by `nodeSelector`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// DNS name served through CoreDNS (skydns records).
    #[serde(default)]
    pub domain_name: String,
    /// Last heartbeat seen (RFC 3339).
    #[serde(default)]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// First registration (RFC 3339).
    pub registered_at: DateTime<Utc>,
    /// Serial (hex) of the node's current certificate: the scheduler refuses every
    /// other certificate of this node (an older one is revoked by a re-registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
}

impl Node {
    /// CPU capacity in millicores.
    pub fn cpu_millis(&self) -> u64 {
        (self.total_cpu * 1000.0).round().max(0.0) as u64
    }

    /// Whether the node accepts new placements.
    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Active
    }

    /// `https://ip:port` of the agent API.
    pub fn agent_url(&self) -> String {
        if self.ip_address.contains(':') {
            format!("https://[{}]:{}", self.ip_address, self.agent_port)
        } else {
            format!("https://{}:{}", self.ip_address, self.agent_port)
        }
    }
}
