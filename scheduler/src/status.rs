//! Pure status transitions: applying an agent's observed container state to a workload
//! record. No I/O; the caller writes the result with a compare-and-swap.

use chrono::{DateTime, Utc};
use persys_proto::{ContainerState, DesiredState, Observed, Workload, WorkloadStatus};

/// The record after applying `state`, or `None` when the state is stale (another
/// generation) or changes nothing (so nothing is written).
pub fn apply_container_state(
    w: &Workload,
    state: &ContainerState,
    now: DateTime<Utc>,
) -> Option<Workload> {
    if state.generation != w.generation || w.node_id.is_none() {
        return None;
    }
    // Older than what the record shows (it raced a newer one and lost the write).
    if w.observed
        .is_some_and(|o| o.generation == w.generation && state.observed_at < o.at)
    {
        return None;
    }
    let mut status = state.status;
    // A container stopped on request exits; the user asked for Stopped, so show that.
    if w.desired_state == DesiredState::Stopped
        && matches!(status, WorkloadStatus::Exited | WorkloadStatus::Failed)
    {
        status = WorkloadStatus::Stopped;
    }
    // While a stop is in flight, a late "Running" push must not hide the Stopping.
    if w.status == WorkloadStatus::Stopping
        && w.desired_state == DesiredState::Stopped
        && matches!(status, WorkloadStatus::Running | WorkloadStatus::Restarting)
    {
        return None;
    }
    // A stop answered after the user already asked to start again: the run follows.
    if w.desired_state == DesiredState::Running
        && w.status == WorkloadStatus::Scheduled
        && status == WorkloadStatus::Stopped
    {
        return None;
    }
    // Pending is the scheduler's own status; an agent cannot report it.
    if status == WorkloadStatus::Pending {
        return None;
    }
    // Pulling comes before this generation's container exists: once the record has
    // seen that container, a Pulling push that arrives late (it raced the run's own
    // answer) would take it back, and nothing else would come to correct it.
    if status == WorkloadStatus::Pulling && w.container_id.is_some() {
        return None;
    }
    let mut next = w.clone();
    next.status = status;
    next.exit_code = match state.exit_code {
        // Restarted by the engine and running again: keep the exit that made it restart
        // when the agent no longer knows it (it restarted itself since).
        None if status == WorkloadStatus::Running
            && state.restart_count > 0
            && state.container_id.is_some()
            && state.container_id == w.container_id =>
        {
            w.exit_code
        }
        code => code,
    };
    next.status_reason = state.reason.clone().filter(|r| !r.is_empty());
    next.restart_count = state.restart_count;
    if state.container_id.is_some() {
        next.container_id = state.container_id.clone();
    }
    // Health is the agent's probe of this container; a container that does not run
    // has none (its last failure's output stays, as the reason it was restarted).
    next.health = state.health.filter(|_| status == WorkloadStatus::Running);
    if state.health_output.is_some() {
        next.health_output = state.health_output.clone();
    }
    if let Some(project) = &state.project {
        next.services = project.services.clone();
        if project.revision.is_some() {
            next.revision = project.revision.clone();
        }
    }
    if same_observed(&next, w) {
        return None;
    }
    next.observed = Some(Observed {
        generation: w.generation,
        at: state.observed_at,
    });
    next.updated_at = now;
    Some(next)
}

/// Whether a workload of this node should appear in the agent's full list: anything
/// that had a container. Just-placed or still-pulling workloads may have none yet, and
/// a workload whose container could never be created (`Failed` without a container,
/// e.g. an invalid image) has none to list: it keeps its status and reason.
pub fn expects_container(w: &Workload) -> bool {
    if w.status == WorkloadStatus::Failed && w.container_id.is_none() {
        return false;
    }
    !matches!(
        w.status,
        WorkloadStatus::Pending
            | WorkloadStatus::Scheduled
            | WorkloadStatus::Pulling
            | WorkloadStatus::ContainerCreating
            | WorkloadStatus::ImagePullBackOff
            | WorkloadStatus::Missing
    ) && w.desired_state != DesiredState::Deleted
}

/// The record marked `Missing` (the node says it has no such container), or `None`
/// when it is not expected to have one.
pub fn mark_missing(w: &Workload, now: DateTime<Utc>) -> Option<Workload> {
    if !expects_container(w) {
        return None;
    }
    let mut next = w.clone();
    next.status = WorkloadStatus::Missing;
    // The reason it was in its status is worth more than ours: keep it.
    next.status_reason = Some(match w.status_reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => format!("the node reports no such container (was {}: {r})", w.status),
        None => "the node reports no such container".into(),
    });
    next.container_id = None;
    next.updated_at = now;
    Some(next)
}

/// A workload of a node whose complete container list does not include it. If it was
/// `Unknown` (its node was away) and should run, no container exists, so it is run again
/// (`Scheduled`; nothing can run twice); otherwise it is `Missing` if it had a container.
pub fn resolve_unlisted(w: &Workload, now: DateTime<Utc>) -> Option<Workload> {
    if w.status == WorkloadStatus::Unknown && w.desired_state == DesiredState::Running {
        let mut next = w.clone();
        next.status = WorkloadStatus::Scheduled;
        next.status_reason = Some("node is back without this container; running it again".into());
        next.container_id = None;
        next.updated_at = now;
        return Some(next);
    }
    mark_missing(w, now)
}

/// The record marked `Unknown` because its node was lost, or `None` if nothing changes.
pub fn mark_unknown(w: &Workload, node_id: &str, now: DateTime<Utc>) -> Option<Workload> {
    if w.node_id.as_deref() != Some(node_id)
        || matches!(w.status, WorkloadStatus::Unknown | WorkloadStatus::Pending)
    {
        return None;
    }
    let mut next = w.clone();
    next.status = WorkloadStatus::Unknown;
    next.status_reason = Some(format!("node {node_id} stopped heartbeating"));
    next.updated_at = now;
    Some(next)
}

fn same_observed(a: &Workload, b: &Workload) -> bool {
    a.status == b.status
        && a.exit_code == b.exit_code
        && a.status_reason == b.status_reason
        && a.restart_count == b.restart_count
        && a.container_id == b.container_id
        && a.services == b.services
        && a.revision == b.revision
        && a.health == b.health
        && a.health_output == b.health_output
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::WorkloadRequest;

    fn placed(status: WorkloadStatus, generation: u64) -> Workload {
        let spec = WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let mut w = Workload::new("w".into(), spec, Utc::now());
        w.node_id = Some("n1".into());
        w.status = status;
        w.generation = generation;
        w
    }

    fn state(status: WorkloadStatus, generation: u64) -> ContainerState {
        ContainerState {
            workload_id: "w".into(),
            generation,
            container_id: Some("c1".into()),
            status,
            exit_code: None,
            reason: None,
            restart_count: 0,
            observed_at: Utc::now(),
            project: None,
            health: None,
            health_output: None,
        }
    }

    #[test]
    fn health_is_recorded_only_while_running_and_a_failure_output_stays() {
        use persys_proto::Health;
        let w = placed(WorkloadStatus::Scheduled, 1);
        let mut s = state(WorkloadStatus::Running, 1);
        s.health = Some(Health::Starting);
        let starting = apply_container_state(&w, &s, Utc::now()).expect("applied");
        assert_eq!(starting.health, Some(Health::Starting));
        // A health change alone is a change.
        s.health = Some(Health::Unhealthy);
        s.health_output = Some("connection refused".into());
        let sick = apply_container_state(&starting, &s, Utc::now()).expect("applied");
        assert_eq!(sick.health, Some(Health::Unhealthy));
        assert_eq!(sick.health_output.as_deref(), Some("connection refused"));
        // Restarted: not running, so no health; the output says why it restarted.
        let mut restarting = state(WorkloadStatus::Restarting, 1);
        restarting.health = Some(Health::Unhealthy);
        let r = apply_container_state(&sick, &restarting, Utc::now()).expect("applied");
        assert_eq!(r.health, None);
        assert_eq!(r.health_output.as_deref(), Some("connection refused"));
    }

    #[test]
    fn a_project_state_brings_its_services_and_revision() {
        let w = placed(WorkloadStatus::Scheduled, 1);
        let svc = persys_proto::ServiceState {
            name: "web".into(),
            status: WorkloadStatus::Running,
            container_ids: vec!["c1".into(), "c2".into()],
            exit_code: None,
            health: Some(persys_proto::Health::Healthy),
            reason: None,
        };
        let mut s = state(WorkloadStatus::Running, 1);
        s.container_id = None;
        s.project = Some(persys_proto::ProjectState {
            services: vec![svc.clone()],
            revision: Some("abc123".into()),
        });
        let next = apply_container_state(&w, &s, Utc::now()).expect("applied");
        assert_eq!(next.services, std::slice::from_ref(&svc));
        assert_eq!(next.revision.as_deref(), Some("abc123"));
        // The same services again, observed later, change nothing.
        let mut again = s.clone();
        again.observed_at = Utc::now();
        assert!(apply_container_state(&next, &again, Utc::now()).is_none());
        // A service going down is a change.
        let mut down = again.clone();
        if let Some(p) = down.project.as_mut() {
            p.services[0].status = WorkloadStatus::Exited;
        }
        down.status = WorkloadStatus::Exited;
        assert!(apply_container_state(&next, &down, Utc::now()).is_some());
    }

    #[test]
    fn a_state_observed_before_the_one_shown_does_not_overwrite_it() {
        let started = Utc::now();
        let mut failed = state(WorkloadStatus::Failed, 1);
        failed.exit_code = Some(3);
        failed.observed_at = started + chrono::Duration::milliseconds(5);
        let w = apply_container_state(&placed(WorkloadStatus::Scheduled, 1), &failed, started)
            .expect("applied");
        assert_eq!(w.status, WorkloadStatus::Failed);
        // The run's answer, "Running as of the start", arrives after the exit.
        let mut running = state(WorkloadStatus::Running, 1);
        running.observed_at = started;
        assert_eq!(apply_container_state(&w, &running, Utc::now()), None);
        // A later observation still applies.
        let mut restarted = state(WorkloadStatus::Running, 1);
        restarted.restart_count = 1;
        restarted.observed_at = started + chrono::Duration::seconds(1);
        assert!(apply_container_state(&w, &restarted, Utc::now()).is_some());
        // The next generation is not held to the old one's clock (another node's).
        let mut next_gen = w.clone();
        next_gen.generation = 2;
        next_gen.status = WorkloadStatus::Scheduled;
        let mut earlier = state(WorkloadStatus::Running, 2);
        earlier.observed_at = started - chrono::Duration::seconds(10);
        assert!(apply_container_state(&next_gen, &earlier, Utc::now()).is_some());
    }

    #[test]
    fn a_late_pulling_push_does_not_take_back_a_running_container() {
        let mut w = placed(WorkloadStatus::Running, 1);
        w.container_id = Some("c1".into());
        let mut pulling = state(WorkloadStatus::Pulling, 1);
        pulling.container_id = None;
        assert_eq!(apply_container_state(&w, &pulling, Utc::now()), None);
        // Before the container, Pulling is news.
        let fresh = placed(WorkloadStatus::Scheduled, 1);
        let next = apply_container_state(&fresh, &pulling, Utc::now()).expect("applied");
        assert_eq!(next.status, WorkloadStatus::Pulling);
    }

    #[test]
    fn state_of_another_generation_is_ignored() {
        let w = placed(WorkloadStatus::Scheduled, 2);
        assert!(
            apply_container_state(&w, &state(WorkloadStatus::Running, 1), Utc::now()).is_none()
        );
    }

    #[test]
    fn running_state_moves_scheduled_to_running() {
        let w = placed(WorkloadStatus::Scheduled, 1);
        let next = apply_container_state(&w, &state(WorkloadStatus::Running, 1), Utc::now())
            .expect("changes");
        assert_eq!(next.status, WorkloadStatus::Running);
        assert_eq!(next.container_id.as_deref(), Some("c1"));
    }

    #[test]
    fn identical_state_writes_nothing() {
        let w = placed(WorkloadStatus::Scheduled, 1);
        let next = apply_container_state(&w, &state(WorkloadStatus::Running, 1), Utc::now())
            .expect("changes");
        assert!(
            apply_container_state(&next, &state(WorkloadStatus::Running, 1), Utc::now()).is_none()
        );
    }

    #[test]
    fn exit_code_is_recorded() {
        let w = placed(WorkloadStatus::Running, 1);
        let mut s = state(WorkloadStatus::Failed, 1);
        s.exit_code = Some(3);
        let next = apply_container_state(&w, &s, Utc::now()).expect("changes");
        assert_eq!(
            (next.status, next.exit_code),
            (WorkloadStatus::Failed, Some(3))
        );
    }

    #[test]
    fn a_restart_keeps_restart_count_reason_and_the_last_exit_code() {
        let w = placed(WorkloadStatus::Running, 1);
        let mut s = state(WorkloadStatus::Restarting, 1);
        s.exit_code = Some(1);
        s.restart_count = 4;
        s.reason =
            Some("crash loop: restarted 4 times, last exit code 1, next restart in 0.8s".into());
        let restarting = apply_container_state(&w, &s, Utc::now()).expect("changes");
        assert_eq!(
            (
                restarting.status,
                restarting.exit_code,
                restarting.restart_count
            ),
            (WorkloadStatus::Restarting, Some(1), 4)
        );
        assert!(restarting
            .status_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("crash loop")));
        // Running again, reported by an agent that no longer knows the exit code.
        let mut again = state(WorkloadStatus::Running, 1);
        again.restart_count = 4;
        again.reason = Some("restarted 4 times".into());
        let running = apply_container_state(&restarting, &again, Utc::now()).expect("changes");
        assert_eq!(
            (running.status, running.exit_code, running.restart_count),
            (WorkloadStatus::Running, Some(1), 4)
        );
    }

    #[test]
    fn exit_after_stop_request_shows_stopped() {
        let mut w = placed(WorkloadStatus::Stopping, 1);
        w.desired_state = DesiredState::Stopped;
        let next = apply_container_state(&w, &state(WorkloadStatus::Exited, 1), Utc::now())
            .expect("changes");
        assert_eq!(next.status, WorkloadStatus::Stopped);
    }

    #[test]
    fn late_running_push_does_not_undo_stopping() {
        let mut w = placed(WorkloadStatus::Stopping, 1);
        w.desired_state = DesiredState::Stopped;
        assert!(
            apply_container_state(&w, &state(WorkloadStatus::Running, 1), Utc::now()).is_none()
        );
    }

    #[test]
    fn stop_answer_after_a_new_start_is_ignored() {
        let w = placed(WorkloadStatus::Scheduled, 1);
        assert!(
            apply_container_state(&w, &state(WorkloadStatus::Stopped, 1), Utc::now()).is_none()
        );
    }

    #[test]
    fn just_scheduled_workload_is_not_marked_missing() {
        assert!(mark_missing(&placed(WorkloadStatus::Scheduled, 1), Utc::now()).is_none());
        let m = mark_missing(&placed(WorkloadStatus::Running, 1), Utc::now()).expect("missing");
        assert_eq!(m.status, WorkloadStatus::Missing);
    }

    #[test]
    fn unlisted_unknown_workload_is_run_again_and_others_go_missing() {
        let w = placed(WorkloadStatus::Unknown, 1);
        assert_eq!(
            resolve_unlisted(&w, Utc::now()).map(|w| w.status),
            Some(WorkloadStatus::Scheduled)
        );
        let r = placed(WorkloadStatus::Running, 1);
        assert_eq!(
            resolve_unlisted(&r, Utc::now()).map(|w| w.status),
            Some(WorkloadStatus::Missing)
        );
    }

    #[test]
    fn a_failure_without_a_container_keeps_its_status_and_reason_when_unlisted() {
        let w = placed(WorkloadStatus::Scheduled, 1);
        let mut s = state(WorkloadStatus::Failed, 1);
        s.container_id = None;
        s.reason = Some("invalid reference format".into());
        let failed = apply_container_state(&w, &s, Utc::now()).expect("changes");
        assert_eq!(failed.container_id, None);
        assert!(!expects_container(&failed));
        // Every later full list (agent report, backstop reconcile) leaves it alone.
        for _ in 0..3 {
            assert!(resolve_unlisted(&failed, Utc::now()).is_none());
        }
        let bad_pull = placed(WorkloadStatus::ImagePullBackOff, 1);
        assert!(resolve_unlisted(&bad_pull, Utc::now()).is_none());
    }

    #[test]
    fn a_container_that_vanished_goes_missing_but_keeps_the_earlier_reason() {
        let mut w = placed(WorkloadStatus::Failed, 1);
        w.container_id = Some("c1".into());
        w.exit_code = Some(2);
        w.status_reason = Some("exited with code 2".into());
        let m = resolve_unlisted(&w, Utc::now()).expect("missing");
        assert_eq!(m.status, WorkloadStatus::Missing);
        let reason = m.status_reason.expect("reason");
        assert!(
            reason.contains("exited with code 2") && reason.contains("Failed"),
            "{reason}"
        );
    }

    #[test]
    fn unknown_only_for_workloads_of_the_lost_node() {
        let w = placed(WorkloadStatus::Running, 1);
        assert!(mark_unknown(&w, "other", Utc::now()).is_none());
        assert_eq!(
            mark_unknown(&w, "n1", Utc::now()).expect("unknown").status,
            WorkloadStatus::Unknown
        );
    }
}
