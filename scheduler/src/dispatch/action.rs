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

/// Whether the old copies of a moved workload (`retiring`) are to be removed now: at
/// once when it no longer wants to run, or when its restart policy stops the old copy
/// before the new one starts (a job must never run twice at once); otherwise once the
/// new generation runs (make before break, for `always` and `unless-stopped`).
pub fn retire_due(w: &Workload) -> bool {
    !w.retiring.is_empty()
        && (w.desired_state != DesiredState::Running
            || !w.spec.restart_policy.make_before_break()
            || w.status == WorkloadStatus::Running)
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
    fn old_copies_of_a_service_are_retired_once_the_new_one_runs_and_of_a_job_at_once() {
        let copy = persys_proto::RetiringCopy {
            node_id: "old".into(),
            generation: 1,
        };
        let mut svc = w(DesiredState::Running, WorkloadStatus::Scheduled, Some("n"));
        svc.spec.restart_policy = persys_proto::RestartPolicy::Always;
        assert!(!retire_due(&svc), "nothing to retire");
        svc.retiring.push(copy.clone());
        assert!(
            !retire_due(&svc),
            "make before break: the new copy does not run yet"
        );
        svc.status = WorkloadStatus::Running;
        assert!(retire_due(&svc));
        let mut job = w(DesiredState::Running, WorkloadStatus::Scheduled, Some("n"));
        job.spec.restart_policy = persys_proto::RestartPolicy::OnFailure;
        job.retiring.push(copy.clone());
        assert!(retire_due(&job), "break before make");
        svc.status = WorkloadStatus::Scheduled;
        svc.desired_state = DesiredState::Deleted;
        assert!(retire_due(&svc), "a deleted workload removes every copy");
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
