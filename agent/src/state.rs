//! Engine state → workload status, the one mapping every report and answer uses. Pure.

use crate::runtime::{EngineStatus, Observed};
use chrono::{DateTime, Utc};
use persys_proto::{labels, ContainerState, WorkloadStatus};
use std::collections::HashMap;
use std::time::Duration;

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

/// A run shorter than this is a crash for the engine's restart back-off: Docker resets
/// its delay after a run at least this long.
pub const SHORT_RUN: Duration = Duration::from_secs(10);
/// Docker's first restart delay, doubled after every short run.
pub const RESTART_DELAY_MIN: Duration = Duration::from_millis(100);
/// Docker's longest restart delay.
pub const RESTART_DELAY_MAX: Duration = Duration::from_secs(60);
/// Restarts after short runs from which a container is reported as a crash loop.
pub const CRASH_LOOP_RESTARTS: u32 = 3;

/// The engine's delay before restart number `restart_count` (1 = the first), as Docker
/// computes it: 100 ms doubling per consecutive short run, at most a minute, back to
/// 100 ms after a run of [`SHORT_RUN`] or more. An estimate: the count is assumed to be
/// consecutive short runs unless the last run was long.
pub fn restart_delay(restart_count: u32, last_run: Option<Duration>) -> Duration {
    if last_run.is_some_and(|d| d >= SHORT_RUN) || restart_count <= 1 {
        return RESTART_DELAY_MIN;
    }
    let doublings = (restart_count - 1).min(16);
    RESTART_DELAY_MIN
        .saturating_mul(1 << doublings)
        .min(RESTART_DELAY_MAX)
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Why a container the engine is about to restart is in that state: a crash loop after
/// [`CRASH_LOOP_RESTARTS`] short runs, with the last exit code and the expected delay.
pub fn restarting_reason(
    restart_count: u32,
    exit_code: Option<i64>,
    last_run: Option<Duration>,
) -> String {
    let code = exit_code.map_or_else(|| "unknown".to_string(), |c| c.to_string());
    let delay = human(restart_delay(restart_count, last_run));
    let short = last_run.is_none_or(|d| d < SHORT_RUN);
    if restart_count >= CRASH_LOOP_RESTARTS && short {
        format!("crash loop: restarted {restart_count} times, last exit code {code}, next restart in {delay}")
    } else {
        format!(
            "restarting after exit code {code} (restart {restart_count}), next restart in {delay}"
        )
    }
}

/// The state to report for a container. `stopped_on_request` says whether the agent
/// stopped it, which turns an exit into `Stopped` rather than `Exited`/`Failed`.
/// `last_exit` is the exit code of its previous run, if the agent saw one: a running
/// container the engine restarted reports it (with the restart count in the reason), so
/// a flapping container stays visible while it runs.
pub fn container_state(
    o: &Observed,
    stopped_on_request: bool,
    last_exit: Option<i64>,
    now: DateTime<Utc>,
) -> ContainerState {
    let (workload_id, generation) = workload_of(&o.labels, &o.name);
    let exit_code = o.exit_code;
    let (status, reason, exit_code) = match o.status {
        EngineStatus::Running if o.restart_count > 0 => {
            let reason = match last_exit {
                Some(c) => format!("restarted {} times, last exit code {c}", o.restart_count),
                None => format!("restarted {} times", o.restart_count),
            };
            (WorkloadStatus::Running, Some(reason), last_exit)
        }
        EngineStatus::Running => (WorkloadStatus::Running, None, None),
        EngineStatus::Paused => (WorkloadStatus::Running, Some("paused".to_string()), None),
        EngineStatus::Restarting => (
            WorkloadStatus::Restarting,
            Some(restarting_reason(o.restart_count, exit_code, o.last_run)),
            exit_code,
        ),
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
        project: None,
        health: None,
        health_output: None,
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
        project: None,
        health: None,
        health_output: None,
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
            last_run: None,
            nano_cpus: 0,
            memory_bytes: 0,
        }
    }

    fn map(o: &Observed) -> ContainerState {
        container_state(o, false, None, Utc::now())
    }

    #[test]
    fn restart_delay_doubles_per_short_run_and_is_capped_at_a_minute() {
        assert_eq!(restart_delay(1, None), Duration::from_millis(100));
        assert_eq!(restart_delay(2, None), Duration::from_millis(200));
        assert_eq!(
            restart_delay(7, Some(Duration::from_secs(1))),
            Duration::from_millis(6400)
        );
        assert_eq!(restart_delay(40, None), RESTART_DELAY_MAX);
        assert_eq!(
            restart_delay(7, Some(Duration::from_secs(30))),
            RESTART_DELAY_MIN
        );
    }

    #[test]
    fn a_container_restarting_after_short_runs_is_a_crash_loop_with_its_exit_code() {
        let mut o = observed(EngineStatus::Restarting, 1);
        o.restart_count = 5;
        o.last_run = Some(Duration::from_millis(300));
        let s = map(&o);
        assert_eq!(
            (s.status, s.exit_code, s.restart_count),
            (WorkloadStatus::Restarting, Some(1), 5)
        );
        assert_eq!(
            s.reason.as_deref(),
            Some("crash loop: restarted 5 times, last exit code 1, next restart in 1.6s")
        );
        o.restart_count = 1;
        assert!(map(&o)
            .reason
            .is_some_and(|r| r.starts_with("restarting after exit code 1")));
    }

    #[test]
    fn a_running_container_that_was_restarted_keeps_its_last_exit_code_visible() {
        let o = observed(EngineStatus::Running, 0);
        let s = container_state(&o, false, Some(3), Utc::now());
        assert_eq!((s.status, s.exit_code), (WorkloadStatus::Running, Some(3)));
        assert_eq!(
            s.reason.as_deref(),
            Some("restarted 2 times, last exit code 3")
        );
        let mut fresh = o.clone();
        fresh.restart_count = 0;
        let s = container_state(&fresh, false, Some(3), Utc::now());
        assert_eq!((s.exit_code, s.reason), (None, None));
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
        let s = container_state(&observed(EngineStatus::Exited, 137), true, None, Utc::now());
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
