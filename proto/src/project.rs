//! What the record of a Compose project (`docker-compose`, `git-compose`) shows of it:
//! one entry per service, folded into the workload's own status by [`fold_status`].

use crate::health::Health;
use crate::status::WorkloadStatus;
use serde::{Deserialize, Serialize};

/// One service of a project as its node observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    /// Service name in the Compose file.
    pub name: String,
    /// `Running` when every replica runs; otherwise the state of the first that does not.
    pub status: WorkloadStatus,
    /// Engine ids of its containers (one per replica).
    #[serde(default)]
    pub container_ids: Vec<String>,
    /// Exit code of the last replica that exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Health of its replicas when it has a health check (the worst of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Why it is in its status (the engine's or the build's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The workload's status and reason from its services': `Running` when all run,
/// `Degraded` (naming those that do not) when some run, otherwise the first service's
/// own status. A service that runs to completion (`Exited` 0, as a migration does)
/// counts as done, not as down.
pub fn fold_status(services: &[ServiceState]) -> (WorkloadStatus, Option<String>) {
    if services.is_empty() {
        return (WorkloadStatus::ContainerCreating, None);
    }
    let done = |s: &ServiceState| s.status == WorkloadStatus::Exited && s.exit_code == Some(0);
    let up = |s: &ServiceState| s.status == WorkloadStatus::Running || done(s);
    let down: Vec<&ServiceState> = services.iter().filter(|s| !up(s)).collect();
    if down.is_empty() {
        return (WorkloadStatus::Running, None);
    }
    let reason = down
        .iter()
        .map(|s| match &s.reason {
            Some(r) => format!("{} is {} ({r})", s.name, s.status),
            None => format!("{} is {}", s.name, s.status),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if down.len() < services.len() && services.iter().any(|s| s.status == WorkloadStatus::Running) {
        (WorkloadStatus::Degraded, Some(reason))
    } else {
        (down[0].status, Some(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, status: WorkloadStatus, exit: Option<i64>) -> ServiceState {
        ServiceState {
            name: name.into(),
            status,
            container_ids: vec![],
            exit_code: exit,
            health: None,
            reason: None,
        }
    }

    #[test]
    fn all_running_is_running_some_is_degraded_none_is_the_first_state() {
        use WorkloadStatus::*;
        let run = fold_status(&[svc("a", Running, None), svc("m", Exited, Some(0))]);
        assert_eq!(run, (Running, None));
        let (status, reason) = fold_status(&[svc("a", Running, None), svc("b", Exited, Some(2))]);
        assert_eq!(status, Degraded);
        assert_eq!(reason.as_deref(), Some("b is Exited"));
        let (status, _) = fold_status(&[svc("a", Failed, None), svc("b", Exited, Some(1))]);
        assert_eq!(status, Failed);
        assert_eq!(fold_status(&[]).0, ContainerCreating);
    }
}
