//! Engine state → workload status, the one mapping every report and answer uses. Pure.

use crate::runtime::{EngineStatus, Observed};
use chrono::{DateTime, Utc};
use persys_proto::{labels, ContainerState, WorkloadStatus};
use std::collections::HashMap;

/// The workload id and generation a container's labels name (name as fallback id).
pub fn workload_of(labels_map: &HashMap<String, String>, name: &str) -> (String, u64) {
    let id = labels_map
        .get(labels::WORKLOAD_ID)
        .cloned()
        .unwrap_or_else(|| name.to_string());
    (id, generation_of(labels_map))
}

/// The generation label (0 when absent or malformed).
pub fn generation_of(labels_map: &HashMap<String, String>) -> u64 {
    labels_map
        .get(labels::GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// The state to report for a container. `stopped_on_request` says whether the agent
/// stopped it, which turns an exit into `Stopped` rather than `Exited`/`Failed`.
pub fn container_state(
    o: &Observed,
    stopped_on_request: bool,
    now: DateTime<Utc>,
) -> ContainerState {
    let (workload_id, generation) = workload_of(&o.labels, &o.name);
    let exit_code = o.exit_code;
    let (status, reason, exit_code) = match o.status {
        EngineStatus::Running => (WorkloadStatus::Running, None, None),
        EngineStatus::Paused => (WorkloadStatus::Running, Some("paused".to_string()), None),
        EngineStatus::Restarting => (WorkloadStatus::Restarting, None, exit_code),
        EngineStatus::Removing => (WorkloadStatus::Stopping, None, exit_code),
        EngineStatus::Created => match &o.error {
            Some(e) => (WorkloadStatus::Failed, Some(e.clone()), None),
            None => (WorkloadStatus::ContainerCreating, None, None),
        },
        EngineStatus::Exited if stopped_on_request => (
            WorkloadStatus::Stopped,
            Some("stopped on request".into()),
            exit_code,
        ),
        EngineStatus::Exited => match exit_code.unwrap_or(0) {
            0 if !o.oom_killed => (WorkloadStatus::Exited, None, Some(0)),
            code if o.oom_killed => (
                WorkloadStatus::Failed,
                Some(format!("out of memory (exit code {code})")),
                Some(code),
            ),
            code => (
                WorkloadStatus::Failed,
                Some(format!("exited with code {code}")),
                Some(code),
            ),
        },
        EngineStatus::Dead => (
            WorkloadStatus::Failed,
            Some(
                o.error
                    .clone()
                    .unwrap_or_else(|| "container is dead".into()),
            ),
            exit_code,
        ),
    };
    ContainerState {
        workload_id,
        generation,
        container_id: Some(o.id.clone()),
        status,
        exit_code,
        reason,
        restart_count: o.restart_count,
        observed_at: now,
    }
}

/// A state without a container (`Missing`, `Stopped` after removal, pull failures).
pub fn without_container(
    workload_id: &str,
    generation: u64,
    status: WorkloadStatus,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> ContainerState {
    ContainerState {
        workload_id: workload_id.to_string(),
        generation,
        container_id: None,
        status,
        exit_code: None,
        reason,
        restart_count: 0,
        observed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(status: EngineStatus, exit_code: i64) -> Observed {
        Observed {
            id: "c1".into(),
            name: "w1".into(),
            image: "busybox:local".into(),
            labels: HashMap::from([
                (labels::WORKLOAD_ID.to_string(), "w1".to_string()),
                (labels::GENERATION.to_string(), "4".to_string()),
            ]),
            status,
            exit_code: Some(exit_code),
            oom_killed: false,
            error: None,
            restart_count: 2,
            nano_cpus: 0,
            memory_bytes: 0,
        }
    }

    fn map(o: &Observed) -> ContainerState {
        container_state(o, false, Utc::now())
    }

    #[test]
    fn running_maps_to_running_with_labels_and_restart_count() {
        let s = map(&observed(EngineStatus::Running, 0));
        assert_eq!(s.status, WorkloadStatus::Running);
        assert_eq!(
            (s.workload_id.as_str(), s.generation, s.restart_count),
            ("w1", 4, 2)
        );
        assert_eq!(s.container_id.as_deref(), Some("c1"));
        assert_eq!(s.exit_code, None);
    }

    #[test]
    fn exit_zero_is_exited_and_non_zero_is_failed_with_code_and_reason() {
        let s = map(&observed(EngineStatus::Exited, 0));
        assert_eq!((s.status, s.exit_code), (WorkloadStatus::Exited, Some(0)));
        let s = map(&observed(EngineStatus::Exited, 3));
        assert_eq!((s.status, s.exit_code), (WorkloadStatus::Failed, Some(3)));
        assert_eq!(s.reason.as_deref(), Some("exited with code 3"));
    }

    #[test]
    fn an_exit_after_a_requested_stop_is_stopped() {
        let s = container_state(&observed(EngineStatus::Exited, 137), true, Utc::now());
        assert_eq!(s.status, WorkloadStatus::Stopped);
        assert_eq!(s.exit_code, Some(137));
    }

    #[test]
    fn restarting_created_dead_and_removing_map_to_their_statuses() {
        assert_eq!(
            map(&observed(EngineStatus::Restarting, 1)).status,
            WorkloadStatus::Restarting
        );
        assert_eq!(
            map(&observed(EngineStatus::Created, 0)).status,
            WorkloadStatus::ContainerCreating
        );
        assert_eq!(
            map(&observed(EngineStatus::Dead, 0)).status,
            WorkloadStatus::Failed
        );
        assert_eq!(
            map(&observed(EngineStatus::Removing, 0)).status,
            WorkloadStatus::Stopping
        );
    }

    #[test]
    fn a_created_container_whose_start_failed_is_failed_with_the_engine_error() {
        let mut o = observed(EngineStatus::Created, 128);
        o.error = Some("port is already allocated".into());
        let s = map(&o);
        assert_eq!(s.status, WorkloadStatus::Failed);
        assert_eq!(s.reason.as_deref(), Some("port is already allocated"));
    }

    #[test]
    fn oom_kill_is_failed_with_an_oom_reason() {
        let mut o = observed(EngineStatus::Exited, 137);
        o.oom_killed = true;
        let s = map(&o);
        assert_eq!(s.status, WorkloadStatus::Failed);
        assert!(s.reason.unwrap_or_default().contains("out of memory"));
    }

    #[test]
    fn missing_labels_fall_back_to_name_and_generation_zero() {
        let mut o = observed(EngineStatus::Running, 0);
        o.labels.clear();
        let s = map(&o);
        assert_eq!((s.workload_id.as_str(), s.generation), ("w1", 0));
    }
}
