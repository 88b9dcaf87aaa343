//! A host cut off for longer than the node timeout, then reconnected: its workloads
//! move, and after the heal its stale copies go and never two copies run.

use crate::common::{ms, node_action, sleeper, submit, wait_running_on, workload};
use crate::node_loss::{HEARTBEAT_MS, NODE_TIMEOUT_MS};
use persys_tests::{docker, AgentOptions, Api, Cluster, ClusterOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sample `GET /workloads` until `stop`: every id of `ids` must appear exactly once
/// with one node id. Violations are collected.
fn watch_api(
    api: Api,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<usize>, Arc<Mutex<Vec<String>>>) {
    let bad = Arc::new(Mutex::new(Vec::new()));
    let out = bad.clone();
    let task = tokio::spawn(async move {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(list) = api.get_json("/workloads").await {
                samples += 1;
                let list = list.as_array().cloned().unwrap_or_default();
                for id in &ids {
                    let recs: Vec<_> = list.iter().filter(|w| w["id"] == id.as_str()).collect();
                    let one_node = recs.first().is_some_and(|w| w["nodeId"].is_string());
                    if recs.len() != 1 || !one_node {
                        let mut b = out.lock().unwrap_or_else(|e| e.into_inner());
                        b.push(format!("{id}: {recs:?}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples
    });
    (task, bad)
}

#[tokio::test]
async fn partitioned_node_loses_its_workloads_and_its_stale_copies_go_after_the_heal() {
    let _serial = crate::common::serial().await;
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(); 2],
        node_timeout_ms: Some(NODE_TIMEOUT_MS),
        scheduler_args: vec!["--heartbeat-interval-ms".into(), HEARTBEAT_MS.to_string()],
        netns: true,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let nodes = c.node_ids();
    let (victim, other) = (nodes[0].clone(), nodes[1].clone());
    node_action(&api, &other, "cordon").await;
    let mut always = Vec::new();
    for _ in 0..3 {
        always.push(submit(&c, sleeper("always")).await);
    }
    let no = submit(&c, sleeper("no")).await;
    let before = wait_running_on(&c, &always, &victim).await;
    let no_before = wait_running_on(&c, std::slice::from_ref(&no), &victim).await;
    node_action(&api, &other, "uncordon").await;
    let stale: BTreeMap<String, String> = always
        .iter()
        .zip(&before)
        .map(|(id, w)| {
            (
                id.clone(),
                w["containerId"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut all_ids = always.clone();
    all_ids.push(no.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (sampler, bad) = watch_api(api.clone(), all_ids, stop.clone());

    c.partition(0).expect("partition");
    let cut = Instant::now();
    for (id, w) in always.iter().zip(&before) {
        let gen = w["generation"].as_u64().unwrap_or_default();
        c.wait_workload(id, Duration::from_secs(20), "moved", |w| {
            w["status"] == "Running"
                && w["nodeId"] == other.as_str()
                && w["generation"].as_u64().unwrap_or_default() > gen
        })
        .await
        .expect("moved off the partitioned node with a new generation");
    }
    println!("partition -> all moved: {} ms", ms(cut.elapsed()));
    let w = workload(&api, &no).await;
    assert_eq!(
        w["status"], "Unknown",
        "a `no` workload of a lost node: {w}"
    );
    // Stay cut off well past the timeout, as a real partition would.
    let hold = Duration::from_millis(NODE_TIMEOUT_MS * 2);
    tokio::time::sleep(hold.saturating_sub(cut.elapsed())).await;

    c.heal(0).expect("heal");
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(10);
    loop {
        let left: Vec<&String> = stale
            .values()
            .filter(|cid| docker::inspect(cid).is_some())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stale containers still there 10 s after the heal: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("heal -> stale copies removed: {} ms", ms(healed.elapsed()));

    // From now on, never two running copies of one workload.
    let ids: BTreeSet<&String> = always.iter().collect();
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let running = docker::running_by_workload();
        for id in &ids {
            let n = running.get(*id).map_or(0, Vec::len);
            assert_eq!(n, 1, "{id} has {n} running containers after the heal");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The `no` workload kept running on its node and is reported again.
    let w = c
        .wait_status(&no, "Running", Duration::from_secs(10))
        .await
        .expect("the `no` workload is Running again after the heal");
    assert_eq!(w["nodeId"], victim.as_str());
    assert_eq!(
        w["containerId"], no_before[0]["containerId"],
        "same container"
    );
    assert_eq!(docker::running_workload_containers(&no).len(), 1);

    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let bad = bad.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(samples > 10, "the API was sampled ({samples})");
    assert!(bad.is_empty(), "the API showed duplicates: {bad:?}");
}
