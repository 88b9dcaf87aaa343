//! Crashes: agent and scheduler kill -9, heartbeat loss.

use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

fn one_agent() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    }
}

#[tokio::test]
async fn agent_killed_and_restarted_adopts_its_containers_without_duplicates() {
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let w = c
            .submit(
                json!({"image": TEST_IMAGE, "command": "sleep 3600", "restartPolicy": "always"}),
            )
            .await
            .expect("submitted");
        ids.push(w["id"].as_str().expect("id").to_string());
    }
    let mut containers = Vec::new();
    for id in &ids {
        let w = c
            .wait_status(id, "Running", Duration::from_secs(20))
            .await
            .expect("Running");
        containers.push(w["containerId"].as_str().expect("cid").to_string());
    }

    c.kill_agent(0);
    c.start_agent(0).await.expect("agent restarts");
    // Give the restarted agent time to reconcile; then exactly the same containers run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (id, cid) in ids.iter().zip(&containers) {
        let w = c
            .wait_status(id, "Running", Duration::from_secs(10))
            .await
            .expect("Running");
        assert_eq!(
            w["containerId"].as_str(),
            Some(cid.as_str()),
            "adopted, not replaced"
        );
        let all = docker::workload_containers(id);
        assert_eq!(all.len(), 1, "exactly one container for {id}: {all:?}");
        assert!(all[0].starts_with(cid.as_str()) || cid.starts_with(all[0].as_str()));
    }
}

#[tokio::test]
async fn scheduler_killed_right_after_acknowledging_runs_the_workload_exactly_once() {
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    // Hold the agent so the dispatch cannot complete before the scheduler dies.
    c.agents[0]
        .process
        .as_ref()
        .expect("agent")
        .signal(libc::SIGSTOP)
        .expect("stop agent");
    let w = c
        .submit(json!({"image": TEST_IMAGE, "command": "sleep 3600"}))
        .await
        .expect("acknowledged");
    let id = w["id"].as_str().expect("id").to_string();
    c.kill_scheduler();
    c.agents[0]
        .process
        .as_ref()
        .expect("agent")
        .signal(libc::SIGCONT)
        .expect("resume agent");
    c.start_scheduler().await.expect("scheduler restarts");
    c.wait_status(&id, "Running", Duration::from_secs(30))
        .await
        .expect("the acknowledged workload runs after the restart");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let all = docker::workload_containers(&id);
        assert_eq!(all.len(), 1, "exactly one container: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_agent_process_that_dies_is_inactive_in_about_a_second_through_its_broken_heartbeat_stream(
) {
    // A node timeout of 5 s: only the broken stream can explain a faster transition.
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        node_timeout_ms: Some(5000),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let node = c.agents[0].node_id.clone();
    // Let the agent open its stream (at its first heartbeat).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill_agent(0);
    let killed = Instant::now();
    let inactive_after = loop {
        let n = api.get_json(&format!("/nodes/{node}")).await.expect("node");
        if n["status"] == "Inactive" {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "still {} after 4 s: the broken stream was not noticed",
            n["status"]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        inactive_after <= Duration::from_millis(1500),
        "Inactive after {inactive_after:?}"
    );
    eprintln!("killed agent's node Inactive after {inactive_after:?}");
}

#[tokio::test]
async fn agent_that_stops_heartbeating_is_inactive_within_timeout_plus_one_second() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        node_timeout_ms: Some(5000),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let node = c.agents[0].node_id.clone();
    c.agents[0]
        .process
        .as_ref()
        .expect("agent")
        .signal(libc::SIGSTOP)
        .expect("freeze agent");
    let frozen = Instant::now();
    let inactive_after = loop {
        let n = api.get_json(&format!("/nodes/{node}")).await.expect("node");
        if n["status"] == "Inactive" {
            break frozen.elapsed();
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(6),
            "still {} after 6 s",
            n["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        inactive_after >= Duration::from_secs(3),
        "Inactive too early ({inactive_after:?}): heartbeats were flowing until the freeze"
    );
    let mut etcd = c.etcd.client().await.expect("etcd");
    let got = etcd.get(format!("/nodes/{node}"), None).await.expect("get");
    let rec: serde_json::Value = serde_json::from_slice(got.kvs()[0].value()).expect("json");
    assert_eq!(rec["status"], "Inactive", "the transition is stored");

    c.agents[0]
        .process
        .as_ref()
        .expect("agent")
        .signal(libc::SIGCONT)
        .expect("thaw agent");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = api.get_json(&format!("/nodes/{node}")).await.expect("node");
        if n["status"] == "Active" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Active again after heartbeats resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_back_from_a_crash_loses_the_old_copy_of_a_moved_workload_at_its_first_heartbeat() {
    // The backstop's interval is the default 30 s: the old copy must go sooner.
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(), AgentOptions::default()],
        node_timeout_ms: Some(2000),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let w = c
        .submit(json!({"image": TEST_IMAGE, "command": "sleep 3600", "restartPolicy": "always"}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let first = c
        .wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running");
    let first_node = first["nodeId"].as_str().expect("node").to_string();
    let idx = c
        .node_ids()
        .iter()
        .position(|n| *n == first_node)
        .expect("one of ours");
    c.kill_agent(idx);
    // It moves to the other node while this one is lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, w) = c
            .api()
            .expect("api")
            .get(&format!("/workloads/{id}"))
            .await
            .expect("get");
        if w["status"] == "Running" && w["nodeId"] != first_node.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "did not move: {w}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        docker::running_workload_containers(&id).len(),
        2,
        "the old copy still runs on the lost node"
    );
    c.start_agent(idx).await.expect("agent restarts");
    let back = Instant::now();
    let deadline = back + Duration::from_secs(10);
    while docker::workload_containers(&id).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the old copy outlived the node's return by 10 s: {:?}",
            docker::workload_containers(&id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "old copy removed {:.1} s after the node came back",
        back.elapsed().as_secs_f64()
    );
}
