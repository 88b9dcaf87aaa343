//! The agent's container logic against the real Docker engine.

mod common;

use common::{docker_ids, request, supervisor, unique, Cleanup};
use futures::StreamExt;
use persys_agent::adopt::adopt;
use persys_agent::events::follow_events;
use persys_agent::runtime::{ContainerRuntime, EngineStatus, LogOptions, RuntimeError};
use persys_agent::supervisor::SupervisorError;
use persys_proto::{container_name, labels, Resources, RestartPolicy, WorkloadStatus};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn run_reaches_running_with_labels_and_limits() {
    let node = unique("t-run");
    let _cleanup = Cleanup(node.clone());
    let (sup, _inbox) = supervisor(&node).await;
    let workload = unique("w");
    let mut req = request(&workload, 1, "echo hello; sleep 30");
    req.resources = Resources {
        cpu: 250,
        memory: 64,
    };
    req.labels.insert("team".into(), "web".into());
    let state = sup.run(&req).await.expect("runs");
    assert_eq!(state.status, WorkloadStatus::Running);
    let name = container_name(&workload, 1);
    let c = sup.runtime().inspect(&name).await.expect("exists");
    assert_eq!(Some(c.id.as_str()), state.container_id.as_deref());
    assert_eq!(c.name, name, "named after workload and generation");
    assert_eq!(c.status, EngineStatus::Running);
    assert_eq!((c.nano_cpus, c.memory_bytes), (250_000_000, 64 << 20));
    assert_eq!(c.labels[labels::NODE_ID], node);
    assert_eq!(c.labels[labels::WORKLOAD_ID], workload);
    assert_eq!(c.labels[labels::GENERATION], "1");
    assert_eq!(c.labels[labels::MANAGED], "true");
    assert_eq!(c.labels["team"], "web");
}

#[tokio::test]
async fn an_exit_with_code_three_is_reported_failed_within_a_second() {
    let node = unique("t-exit");
    let _cleanup = Cleanup(node.clone());
    let (sup, mut inbox) = supervisor(&node).await;
    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(follow_events(sup.clone(), shutdown.clone()));
    let workload = unique("w");
    sup.run(&request(&workload, 1, "sleep 1; exit 3"))
        .await
        .expect("runs");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let failed = loop {
        let s = tokio::time::timeout_at(deadline.into(), inbox.next_state())
            .await
            .expect("a Failed report in time")
            .expect("inbox open");
        if s.workload_id == workload && s.status == WorkloadStatus::Failed {
            break s;
        }
    };
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.reason.as_deref(), Some("exited with code 3"));
    // The container lives 1 s; the report follows its exit, not a polling period.
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2500),
        "reported after {elapsed:?}"
    );
    let finished = sup
        .runtime()
        .inspect(&container_name(&workload, 1))
        .await
        .expect("exists");
    assert_eq!(finished.exit_code, Some(3));
    shutdown.cancel();
    follower.await.expect("joins");
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers_without_duplicates() {
    let node = unique("t-adopt");
    let _cleanup = Cleanup(node.clone());
    let workload = unique("w");
    let first_id = {
        let (sup, _inbox) = supervisor(&node).await;
        sup.run(&request(&workload, 1, "sleep 30"))
            .await
            .expect("runs")
            .container_id
    };
    let (sup, _inbox) = supervisor(&node).await;
    let adopted = adopt(&sup).await.expect("adopts");
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].status, WorkloadStatus::Running);
    assert_eq!(adopted[0].container_id, first_id);
    let again = sup
        .run(&request(&workload, 1, "sleep 30"))
        .await
        .expect("same run");
    assert_eq!(again.container_id, first_id);
    assert_eq!(docker_ids(&node).len(), 1);
}

#[tokio::test]
async fn a_stale_generation_is_removed_and_replaced() {
    let node = unique("t-fence");
    let _cleanup = Cleanup(node.clone());
    let (sup, _inbox) = supervisor(&node).await;
    let workload = unique("w");
    let old = sup
        .run(&request(&workload, 1, "sleep 30"))
        .await
        .expect("runs");
    let new = sup
        .run(&request(&workload, 2, "sleep 30"))
        .await
        .expect("runs newer");
    assert_ne!(old.container_id, new.container_id);
    let old_id = old.container_id.expect("id");
    assert!(matches!(
        sup.runtime().inspect(&old_id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert_eq!(docker_ids(&node).len(), 1);
    let c = sup
        .runtime()
        .inspect(&container_name(&workload, 2))
        .await
        .expect("exists");
    assert_eq!(c.labels[labels::GENERATION], "2");
    let refused = sup.run(&request(&workload, 1, "sleep 30")).await;
    assert!(
        matches!(refused, Err(SupervisorError::Conflict(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn agents_with_different_node_ids_never_see_or_touch_each_others_containers() {
    let (a, b) = (unique("t-a"), unique("t-b"));
    let _ca = Cleanup(a.clone());
    let _cb = Cleanup(b.clone());
    let (sup_a, _ia) = supervisor(&a).await;
    let (sup_b, _ib) = supervisor(&b).await;
    let (wa, wb) = (unique("wa"), unique("wb"));
    sup_a
        .run(&request(&wa, 1, "sleep 30"))
        .await
        .expect("a runs");
    sup_b
        .run(&request(&wb, 1, "sleep 30"))
        .await
        .expect("b runs");
    let listed: Vec<String> = sup_a
        .list()
        .await
        .expect("lists")
        .into_iter()
        .map(|s| s.workload_id)
        .collect();
    assert_eq!(listed, vec![wa.clone()]);
    assert_eq!(
        sup_a
            .stop(&wb, Duration::from_secs(1))
            .await
            .expect("answers")
            .status,
        WorkloadStatus::Missing
    );
    assert_eq!(
        sup_a.remove(&wb).await.expect("answers").status,
        WorkloadStatus::Missing
    );
    let err = sup_a
        .run(&request(&wb, 1, "sleep 30"))
        .await
        .expect_err("name of the same generation held by b");
    assert!(err.to_string().contains(&b), "{err}");
    assert_eq!(
        sup_b
            .runtime()
            .inspect(&container_name(&wb, 1))
            .await
            .expect("b's container")
            .status,
        EngineStatus::Running
    );
    assert!(matches!(
        sup_a.logs(&wb, None, LogOptions::default()).await,
        Err(SupervisorError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_missing_image_gives_image_pull_back_off_with_the_engine_reason() {
    let node = unique("t-pull");
    let _cleanup = Cleanup(node.clone());
    let (sup, _inbox) = supervisor(&node).await;
    let mut req = request(&unique("w"), 1, "true");
    req.image = "persys-absent-image:nope".into();
    let state = sup.run(&req).await.expect("answers with a state");
    assert_eq!(state.status, WorkloadStatus::ImagePullBackOff);
    let reason = state.reason.expect("reason");
    assert!(!reason.is_empty());
    assert!(docker_ids(&node).is_empty());
}

#[tokio::test]
async fn logs_tail_and_follow_stream_new_lines() {
    let node = unique("t-logs");
    let _cleanup = Cleanup(node.clone());
    let (sup, _inbox) = supervisor(&node).await;
    let workload = unique("w");
    sup.run(&request(
        &workload,
        1,
        "echo first; echo err >&2; sleep 1; echo second; sleep 30",
    ))
    .await
    .expect("runs");
    let follow = LogOptions {
        tail: None,
        follow: true,
        timestamps: false,
    };
    let mut stream = sup.logs(&workload, None, follow).await.expect("logs");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("second") {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .expect("second line streamed in time")
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // stdout and stderr are separate pipes: their relative order is not guaranteed.
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some("second"), "{text:?}");
    lines.sort_unstable();
    assert_eq!(lines, vec!["err", "first"], "{text:?}");
    let tail = LogOptions {
        tail: Some(1),
        follow: false,
        timestamps: true,
    };
    let last: Vec<_> = sup
        .logs(&workload, None, tail)
        .await
        .expect("logs")
        .collect()
        .await;
    let last: String = last
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.expect("chunk")).to_string())
        .collect();
    assert!(last.ends_with(" second\n"), "{last:?}");
    assert!(last.starts_with("20"), "timestamped: {last:?}");
}

#[tokio::test]
async fn a_requested_stop_is_reported_stopped_not_failed() {
    let node = unique("t-stop");
    let _cleanup = Cleanup(node.clone());
    let (sup, mut inbox) = supervisor(&node).await;
    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(follow_events(sup.clone(), shutdown.clone()));
    let workload = unique("w");
    sup.run(&request(&workload, 1, "sleep 30"))
        .await
        .expect("runs");
    let stopped = sup
        .stop(&workload, Duration::from_secs(1))
        .await
        .expect("stops");
    assert_eq!(stopped.status, WorkloadStatus::Stopped);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = tokio::time::timeout_at(deadline.into(), inbox.next_state())
            .await
            .expect("a report in time")
            .expect("inbox open");
        assert_ne!(
            s.status,
            WorkloadStatus::Failed,
            "a requested stop is no failure"
        );
        if s.status == WorkloadStatus::Stopped {
            break;
        }
    }
    let removed = sup.remove(&workload).await.expect("removes");
    assert_eq!(
        (removed.status, removed.container_id),
        (WorkloadStatus::Stopped, None)
    );
    assert!(docker_ids(&node).is_empty());
    shutdown.cancel();
    follower.await.expect("joins");
}

#[tokio::test]
async fn on_failure_restarts_with_growing_delays_and_reports_a_crash_loop() {
    let node = unique("t-crash");
    let _cleanup = Cleanup(node.clone());
    let (sup, mut inbox) = supervisor(&node).await;
    let shutdown = CancellationToken::new();
    let follower = tokio::spawn(follow_events(sup.clone(), shutdown.clone()));
    let workload = unique("w");
    let mut req = request(&workload, 1, "exit 1");
    req.restart_policy = RestartPolicy::OnFailure;
    sup.run(&req).await.expect("runs");
    // Docker restarts after 0.1, 0.2, 0.4, 0.8, 1.6 s: five restarts within ~4 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut restarting: Vec<(u32, Instant)> = Vec::new();
    let mut crash_loop = None;
    while restarting.last().is_none_or(|(n, _)| *n < 5) {
        let s = tokio::time::timeout_at(deadline.into(), inbox.next_state())
            .await
            .expect("restarts in time")
            .expect("inbox open");
        if s.workload_id != workload || s.status != WorkloadStatus::Restarting {
            continue;
        }
        assert_eq!(s.exit_code, Some(1), "{s:?}");
        if restarting.last().is_none_or(|(n, _)| *n < s.restart_count) {
            restarting.push((s.restart_count, Instant::now()));
        }
        if s.restart_count >= 3 {
            crash_loop = s.reason.clone();
        }
    }
    let reason = crash_loop.expect("a crash-loop reason");
    assert!(
        reason.starts_with("crash loop: restarted ") && reason.contains("last exit code 1"),
        "{reason}"
    );
    // Growing delays: the later restarts are further apart than the first ones.
    let gap = |i: usize| restarting[i + 1].1 - restarting[i].1;
    let last = restarting.len() - 2;
    assert!(gap(last) > gap(0), "{restarting:?}");
    shutdown.cancel();
    follower.await.expect("joins");
}

#[tokio::test]
async fn on_failure_with_exit_zero_is_exited_and_not_restarted() {
    let node = unique("t-exit0");
    let _cleanup = Cleanup(node.clone());
    let (sup, _inbox) = supervisor(&node).await;
    let workload = unique("w");
    let mut req = request(&workload, 1, "exit 0");
    req.restart_policy = RestartPolicy::OnFailure;
    sup.run(&req).await.expect("runs");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let states = sup.list().await.expect("lists");
    let s = states
        .iter()
        .find(|s| s.workload_id == workload)
        .expect("listed");
    assert_eq!(
        (s.status, s.exit_code, s.restart_count),
        (WorkloadStatus::Exited, Some(0), 0)
    );
}
