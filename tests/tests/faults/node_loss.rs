//! A host dies (kill -9 of its agent, its containers gone): its workloads run elsewhere.

use crate::common::{ms, node_action, sleeper, submit, wait_running_on, workload};
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Node timeout of these tests: detection is most of the 5 s budget, so it is shorter
/// than the default, with heartbeats often enough that a live node never looks dead.
pub const NODE_TIMEOUT_MS: u64 = 2500;
/// Heartbeat interval told to the agents.
pub const HEARTBEAT_MS: u64 = 500;

/// Three hosts with the short timeout.
pub fn three_hosts() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default(); 3],
        node_timeout_ms: Some(NODE_TIMEOUT_MS),
        scheduler_args: vec!["--heartbeat-interval-ms".into(), HEARTBEAT_MS.to_string()],
        netns: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn killed_host_workloads_run_on_another_node_within_five_seconds() {
    let _serial = crate::common::serial().await;
    let mut c = Cluster::start(three_hosts()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let nodes = c.node_ids();
    let victim = nodes[0].clone();
    // Everything lands on the victim: the others are cordoned while submitting.
    for n in &nodes[1..] {
        node_action(&api, n, "cordon").await;
    }
    let mut always = Vec::new();
    for _ in 0..3 {
        always.push(submit(&c, sleeper("always")).await);
    }
    let no = vec![submit(&c, sleeper("no")).await];
    wait_running_on(&c, &always, &victim).await;
    wait_running_on(&c, &no, &victim).await;
    let mut before = BTreeMap::new();
    for id in &always {
        before.insert(id.clone(), workload(&api, id).await["generation"].clone());
    }
    for n in &nodes[1..] {
        node_action(&api, n, "uncordon").await;
    }

    c.kill_host(0);
    let killed = Instant::now();
    let mut moved: BTreeMap<String, Duration> = BTreeMap::new();
    while moved.len() < always.len() && killed.elapsed() < Duration::from_secs(15) {
        for id in &always {
            if moved.contains_key(id) {
                continue;
            }
            let w = workload(&api, id).await;
            let elsewhere = w["nodeId"].as_str().is_some_and(|n| n != victim);
            if w["status"] == "Running" && elsewhere {
                moved.insert(id.clone(), killed.elapsed());
                let gen_before = before[id].as_u64().unwrap_or_default();
                assert!(
                    w["generation"].as_u64().unwrap_or_default() > gen_before,
                    "a move is a new generation: {w}"
                );
                let running = docker::running_workload_containers(id);
                assert_eq!(running.len(), 1, "one running container for {id}: {w}");
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for (id, t) in &moved {
        println!("node death -> {id} Running elsewhere: {} ms", ms(*t));
    }
    assert_eq!(moved.len(), always.len(), "every `always` workload moved");
    let worst = moved.values().max().copied().unwrap_or_default();
    assert!(
        worst <= Duration::from_secs(5),
        "replacements Running within 5 s of the kill (slowest {} ms)",
        ms(worst)
    );

    // restartPolicy `no` is not moved: it is Unknown while its node is lost.
    let w = c
        .wait_workload(&no[0], Duration::from_secs(5), "Unknown", |w| {
            w["status"] == "Unknown"
        })
        .await
        .expect("a `no` workload of a lost node is Unknown");
    assert_eq!(w["nodeId"], victim.as_str(), "not moved: {w}");
    assert!(docker::running_workload_containers(&no[0]).is_empty());
}
