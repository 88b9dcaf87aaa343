//! Workload statuses and desired states.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Observed status of a workload (the original persys set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkloadStatus {
    /// Stored; no node fits yet.
    #[default]
    Pending,
    /// Placed on a node, not yet confirmed by its agent.
    Scheduled,
    /// The agent is pulling the image.
    Pulling,
    /// The image is absent and cannot be pulled.
    ImagePullBackOff,
    /// The container is being created.
    ContainerCreating,
    /// The container runs (for a Compose project: every service runs).
    Running,
    /// Some of a Compose project's services run and some do not (`statusReason` and
    /// `services` say which).
    Degraded,
    /// The engine is restarting the container (restart policy).
    Restarting,
    /// A stop was requested and is in progress.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// The container exited with code 0.
    Exited,
    /// The container exited non-zero or could not be started.
    Failed,
    /// The node reports no such container.
    Missing,
    /// The node is lost; state unknown.
    Unknown,
}

impl WorkloadStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [WorkloadStatus; 14] = [
        Self::Pending,
        Self::Scheduled,
        Self::Pulling,
        Self::ImagePullBackOff,
        Self::ContainerCreating,
        Self::Running,
        Self::Degraded,
        Self::Restarting,
        Self::Stopping,
        Self::Stopped,
        Self::Exited,
        Self::Failed,
        Self::Missing,
        Self::Unknown,
    ];

    /// Name as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Scheduled => "Scheduled",
            Self::Pulling => "Pulling",
            Self::ImagePullBackOff => "ImagePullBackOff",
            Self::ContainerCreating => "ContainerCreating",
            Self::Running => "Running",
            Self::Degraded => "Degraded",
            Self::Restarting => "Restarting",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Exited => "Exited",
            Self::Failed => "Failed",
            Self::Missing => "Missing",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether the container is finished (no longer running and not about to).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Stopped | Self::Exited | Self::Failed | Self::ImagePullBackOff
        )
    }

    /// Parse the wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for WorkloadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user wants for a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DesiredState {
    /// Keep the container running.
    #[default]
    Running,
    /// Keep the container stopped (record and container kept).
    Stopped,
    /// Remove the container, then the record.
    Deleted,
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Deleted => "Deleted",
        })
    }
}
