//! Cordon stops placements on a node; drain moves its workloads off, starting each new
//! copy before stopping the old one, and leaves the node drained.

use crate::common::{ms, node_action, node_status, sleeper, submit, wait_running_on, workload};
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[tokio::test]
async fn cordoned_node_gets_no_new_workloads() {
    let _serial = crate::common::serial().await;
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(); 2],
        netns: true,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let nodes = c.node_ids();
    let n = node_action(&api, &nodes[0], "cordon").await;
    assert_eq!(n["status"], "Cordoned", "{n}");
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(submit(&c, sleeper("always")).await);
    }
    wait_running_on(&c, &ids, &nodes[1]).await;
    node_action(&api, &nodes[0], "uncordon").await;
    assert_eq!(node_status(&api, &nodes[0]).await, "Active");
    // Spread placement now prefers the emptier node again.
    let after = submit(&c, sleeper("always")).await;
    wait_running_on(&c, std::slice::from_ref(&after), &nodes[0]).await;
}

#[tokio::test]
async fn drain_moves_workloads_off_make_before_break_and_marks_the_node_drained() {
    let _serial = crate::common::serial().await;
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(); 2],
        netns: true,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let nodes = c.node_ids();
    let (draining, target) = (nodes[0].clone(), nodes[1].clone());
    node_action(&api, &target, "cordon").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(submit(&c, sleeper("always")).await);
    }
    let before = wait_running_on(&c, &ids, &draining).await;
    node_action(&api, &target, "uncordon").await;
    let old: BTreeMap<String, (u64, String)> = ids
        .iter()
        .zip(&before)
        .map(|(id, w)| {
            let gen = w["generation"].as_u64().unwrap_or_default();
            (
                id.clone(),
                (gen, w["containerId"].as_str().unwrap_or("").to_string()),
            )
        })
        .collect();

    let since = docker::unix_now() - 0.5;
    let n = node_action(&api, &draining, "drain").await;
    assert_eq!(n["status"], "Draining", "{n}");
    let t = Instant::now();
    // Sample the engine: at every moment each workload has a running copy.
    loop {
        let running = docker::running_by_workload();
        for id in &ids {
            assert!(
                running.get(id).is_some_and(|c| !c.is_empty()),
                "{id} had no running copy {} ms into the drain",
                ms(t.elapsed())
            );
        }
        let mut done = true;
        for id in &ids {
            let w = workload(&api, id).await;
            let moved = w["status"] == "Running"
                && w["nodeId"] == target.as_str()
                && w["generation"].as_u64().unwrap_or_default() > old[id].0;
            let old_gone = docker::inspect(&old[id].1).is_none();
            done &= moved && old_gone && running.get(id).map_or(0, Vec::len) == 1;
        }
        if done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "drain not finished in 40 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("drain of 2 workloads: {} ms", ms(t.elapsed()));

    // The engine's own record: each new copy started before its old copy was stopped.
    for id in &ids {
        let label = format!("label=persys.workloadId={id}");
        let evs = docker::events(since, docker::unix_now(), &[&label]);
        let at = |action: &str, gen: &str| {
            evs.iter()
                .filter(|e| {
                    e["Action"] == action && e["Actor"]["Attributes"]["persys.generation"] == gen
                })
                .filter_map(|e| e["timeNano"].as_f64())
                .fold(f64::NAN, f64::min)
        };
        let old_gen = old[id].0.to_string();
        let w = workload(&api, id).await;
        let new_gen = w["generation"].to_string();
        let new_start = at("start", &new_gen);
        let old_stop = ["kill", "stop", "die", "destroy"]
            .iter()
            .map(|a| at(a, &old_gen))
            .fold(f64::NAN, f64::min);
        println!(
            "{id}: new copy started {:.0} ms before the old one was stopped",
            (old_stop - new_start) / 1e6
        );
        assert!(
            new_start < old_stop,
            "make-before-break for {id}: new start {new_start}, old stop {old_stop}"
        );
    }

    // Drained: nothing left on it, still not placeable.
    let list = api.get_json("/workloads").await.expect("list");
    let left: Vec<_> = list
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|w| w["nodeId"] == draining.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "workloads left on the drained node: {left:?}"
    );
    // Marked drained (the status stays Draining: still no placements there).
    let t = Instant::now();
    loop {
        let n = api
            .get_json(&format!("/nodes/{draining}"))
            .await
            .expect("node");
        assert_eq!(n["status"], "Draining", "{n}");
        if n["drained"] == true {
            println!("drained node: {n}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the node is never marked drained: {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let extra = submit(&c, sleeper("always")).await;
    wait_running_on(&c, std::slice::from_ref(&extra), &target).await;
}
