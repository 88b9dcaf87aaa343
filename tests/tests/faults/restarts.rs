//! Restart policies on the same node: `on-failure` backs off, `no` stays down.

use crate::common::{ms, submit, workload};
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

fn one_agent() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    }
}

/// Unix times (s) of the engine's `start` events of workload `id` since `since`.
fn starts(id: &str, since: f64) -> Vec<f64> {
    let label = format!("label=persys.workloadId={id}");
    docker::events(since, docker::unix_now(), &[&label, "event=start"])
        .iter()
        .filter_map(|e| e["timeNano"].as_f64().map(|t| t / 1e9))
        .collect()
}

#[tokio::test]
async fn on_failure_restarts_with_growing_delays_and_a_visible_restart_count() {
    let _serial = crate::common::serial().await;
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let since = docker::unix_now() - 1.0;
    let id = submit(
        &c,
        json!({"image": TEST_IMAGE, "command": "exit 2", "restartPolicy": "on-failure"}),
    )
    .await;
    let first = c
        .wait_workload(&id, Duration::from_secs(20), "restarted", |w| {
            w["restartCount"].as_u64().unwrap_or_default() >= 1
        })
        .await
        .expect("restartCount counts restarts");
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = workload(&api, &id).await;
    let (rc1, rc2) = (
        first["restartCount"].as_u64().unwrap_or_default(),
        later["restartCount"].as_u64().unwrap_or_default(),
    );
    println!(
        "restartCount {rc1} -> {rc2} in {} ms; last: {later}",
        ms(t1.elapsed())
    );
    assert!(rc2 > rc1, "restartCount grows ({rc1} -> {rc2})");
    assert_eq!(
        later["nodeId"], first["nodeId"],
        "restarts stay on the node"
    );
    assert_eq!(later["exitCode"], 2, "the last exit code is kept: {later}");
    let reason = later["statusReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("restart") || reason.contains("crash loop"),
        "the restarts are visible in statusReason: {later}"
    );

    let times = starts(&id, since);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("start gaps (s): {gaps:?}");
    assert!(gaps.len() >= 4, "at least five starts in ~9 s: {times:?}");
    let first_gap = gaps[0];
    let last_gap = gaps[gaps.len() - 1];
    assert!(
        last_gap > 3.0 * first_gap,
        "delays grow: first {first_gap:.3} s, last {last_gap:.3} s"
    );
    for w in gaps.windows(2) {
        // Doubling delays; 150 ms covers the engine's own start-up jitter.
        assert!(w[1] + 0.15 >= w[0], "delays never shrink: {gaps:?}");
    }
}

#[tokio::test]
async fn restart_policy_no_stays_failed_with_its_exit_code() {
    let _serial = crate::common::serial().await;
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let id = submit(
        &c,
        json!({"image": TEST_IMAGE, "command": "sleep 1; exit 4", "restartPolicy": "no"}),
    )
    .await;
    let w = c
        .wait_workload(&id, Duration::from_secs(20), "Exited/Failed", |w| {
            w["status"] == "Failed" || w["status"] == "Exited"
        })
        .await
        .expect("it stops");
    assert_eq!(w["exitCode"], 4, "{w}");
    let cid = w["containerId"].as_str().expect("cid").to_string();
    let started = docker::inspect(&cid).expect("inspect")["State"]["StartedAt"].clone();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = workload(&api, &id).await;
    assert_eq!(after["status"], w["status"], "it stays down: {after}");
    assert_eq!(after["exitCode"], 4);
    assert_eq!(after["restartCount"], 0, "{after}");
    let info = docker::inspect(&cid).expect("inspect");
    assert_eq!(info["State"]["Running"], false);
    assert_eq!(info["State"]["ExitCode"], 4);
    assert_eq!(info["RestartCount"], 0);
    assert_eq!(info["State"]["StartedAt"], started, "never started again");
}
