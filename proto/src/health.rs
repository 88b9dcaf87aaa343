//! Container health as the engine's health check reports it.

use serde::{Deserialize, Serialize};

/// The state of a container's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Within the start period, or no check has passed yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// The check failed `retries` times in a row.
    Unhealthy,
}

impl Health {
    /// The engine's word for it (`starting`, `healthy`, `unhealthy`); `None` for
    /// anything else (`none`: no check).
    pub fn from_engine(s: &str) -> Option<Self> {
        match s {
            "starting" => Some(Self::Starting),
            "healthy" => Some(Self::Healthy),
            "unhealthy" => Some(Self::Unhealthy),
            _ => None,
        }
    }
}
