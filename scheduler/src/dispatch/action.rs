//! Pure decision of what the agent must be asked for a workload: desired vs observed.

use persys_proto::{DesiredState, Workload, WorkloadStatus};

/// What the agent must be asked to do for a workload, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create/adopt/start the container.
    Run,
    /// Stop it.
    Stop,
    /// Remove the container, then delete the record.
    Remove,
    /// No container to touch: only the record changes (stop of an unplaced workload →
    /// `Stopped`; delete → record removed).
    RecordOnly,
}

/// Pure decision: desired vs observed.
pub fn action_for(w: &Workload) -> Option<Action> {
    let placed = w.node_id.is_some() && w.status != WorkloadStatus::Pending;
    match w.desired_state {
        // Stopped while wanted running: a stop that finished after a start request.
        DesiredState::Running => (placed
            && matches!(
                w.status,
                WorkloadStatus::Scheduled | WorkloadStatus::Stopped
            ))
        .then_some(Action::Run),
        DesiredState::Stopped => match w.status {
            WorkloadStatus::Stopped => None,
            _ if !placed => Some(Action::RecordOnly),
            // Nothing runs: nothing to stop, but the record should say Stopped.
            WorkloadStatus::Exited
            | WorkloadStatus::Failed
            | WorkloadStatus::Missing
            | WorkloadStatus::ImagePullBackOff => Some(Action::RecordOnly),
            _ => Some(Action::Stop),
        },
        DesiredState::Deleted if !placed => Some(Action::RecordOnly),
        DesiredState::Deleted => Some(Action::Remove),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use persys_proto::WorkloadRequest;

    fn w(desired: DesiredState, status: WorkloadStatus, node: Option<&str>) -> Workload {
        let spec = WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let mut w = Workload::new("w".into(), spec, Utc::now());
        w.desired_state = desired;
        w.status = status;
        w.node_id = node.map(String::from);
        w
    }

    #[test]
    fn scheduled_but_unconfirmed_workload_is_run() {
        assert_eq!(
            action_for(&w(
                DesiredState::Running,
                WorkloadStatus::Scheduled,
                Some("n")
            )),
            Some(Action::Run)
        );
        assert_eq!(
            action_for(&w(
                DesiredState::Running,
                WorkloadStatus::Running,
                Some("n")
            )),
            None
        );
        assert_eq!(
            action_for(&w(DesiredState::Running, WorkloadStatus::Pending, None)),
            None
        );
        assert_eq!(
            action_for(&w(
                DesiredState::Running,
                WorkloadStatus::Stopped,
                Some("n")
            )),
            Some(Action::Run)
        );
    }

    #[test]
    fn stop_touches_the_agent_only_when_something_may_run() {
        assert_eq!(
            action_for(&w(
                DesiredState::Stopped,
                WorkloadStatus::Stopping,
                Some("n")
            )),
            Some(Action::Stop)
        );
        assert_eq!(
            action_for(&w(DesiredState::Stopped, WorkloadStatus::Pending, None)),
            Some(Action::RecordOnly)
        );
        assert_eq!(
            action_for(&w(DesiredState::Stopped, WorkloadStatus::Exited, Some("n"))),
            Some(Action::RecordOnly)
        );
        assert_eq!(
            action_for(&w(
                DesiredState::Stopped,
                WorkloadStatus::Stopped,
                Some("n")
            )),
            None
        );
    }

    #[test]
    fn delete_removes_the_container_of_a_placed_workload() {
        assert_eq!(
            action_for(&w(
                DesiredState::Deleted,
                WorkloadStatus::Running,
                Some("n")
            )),
            Some(Action::Remove)
        );
        assert_eq!(
            action_for(&w(DesiredState::Deleted, WorkloadStatus::Pending, None)),
            Some(Action::RecordOnly)
        );
    }
}
