//! The leader scheduler dies (kill -9) in the middle of 200 submissions: nothing
//! acknowledged is lost or run twice.

use crate::common::ms;
use persys_tests::{docker, AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUBMISSIONS: usize = 200;
const SUBMITTERS: usize = 4;

/// What the submitters saw.
#[derive(Default)]
struct Outcome {
    /// Acknowledged (201) ids by submission number.
    acked: BTreeMap<usize, String>,
    /// (sent, answered) of each acknowledged attempt.
    acked_at: Vec<(Instant, Instant)>,
    /// Attempts that got no answer, or a 5xx, and were retried.
    retries: usize,
    /// Submissions never acknowledged.
    gave_up: Vec<usize>,
}

/// Submit `n` to the replicas in turn from `first`, until acknowledged: a request
/// without an answer (or with a 5xx: nothing was stored) goes to the next replica.
async fn submit_one(apis: &[Api], n: usize, out: &Mutex<Outcome>) {
    let body =
        json!({"name": format!("ha-{n}"), "image": TEST_IMAGE, "command": ["sleep", "3600"]});
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut r = n % apis.len();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match apis[r].post("/workloads", &body).await {
            Ok((201, v)) => {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                o.acked.insert(n, id);
                o.acked_at.push((sent, Instant::now()));
                return;
            }
            Ok((s, v)) => assert!(s >= 500, "submission {n} refused with {s}: {v}"),
            Err(_) => {}
        }
        out.lock().unwrap_or_else(|e| e.into_inner()).retries += 1;
        r = (r + 1) % apis.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out.lock()
        .unwrap_or_else(|e| e.into_inner())
        .gave_up
        .push(n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_submissions_loses_and_doubles_no_acknowledged_workload() {
    let _serial = crate::common::serial().await;
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(); 2],
        schedulers: 3,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let leader = c
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let apis: Vec<Api> = (0..c.replica_count())
        .map(|i| c.replica_api(i).expect("api"))
        .collect();
    let out = Arc::new(Mutex::new(Outcome::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SUBMITTERS {
        let (apis, out, next) = (apis.clone(), out.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= SUBMISSIONS {
                    break;
                }
                submit_one(&apis, n, &out).await;
            }
        }));
    }
    // Kill the leader half way through.
    let t0 = Instant::now();
    while out.lock().unwrap_or_else(|e| e.into_inner()).acked.len() < SUBMISSIONS / 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "submissions stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.kill_replica(leader);
    let killed = Instant::now();
    for t in tasks {
        t.await.expect("submitter");
    }
    let o = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    // Failover as a client sees it: the first acknowledgement of a request sent after
    // the kill.
    let first_after = o
        .acked_at
        .iter()
        .filter(|(sent, _)| *sent > killed)
        .map(|(_, answered)| *answered)
        .min();
    let new_leader = c
        .wait_leader(Duration::from_secs(10))
        .await
        .expect("new leader");
    println!(
        "acknowledged {} of {SUBMISSIONS}, {} retries; leader r{leader} killed, r{new_leader} leads; first acknowledgement after the kill: {:?} ms",
        o.acked.len(),
        o.retries,
        first_after.map(|t| ms(t.duration_since(killed)))
    );
    assert_ne!(new_leader, leader);
    assert!(o.gave_up.is_empty(), "never acknowledged: {:?}", o.gave_up);

    // Every acknowledged id is stored.
    let mut etcd = c.etcd.client().await.expect("etcd");
    for id in o.acked.values() {
        let got = etcd
            .get(format!("/workloads/{id}"), None)
            .await
            .expect("etcd get");
        assert_eq!(got.kvs().len(), 1, "acknowledged {id} is in etcd");
    }
    // ... ends Running ...
    let api = &apis[new_leader];
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = api.get_json("/workloads").await.expect("list");
        let running: Vec<&str> = list
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|w| w["status"] == "Running")
                    .filter_map(|w| w["id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let missing = o
            .acked
            .values()
            .filter(|id| !running.contains(&id.as_str()))
            .count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged workloads not Running after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ... exactly once.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let running = docker::running_by_workload();
        for id in o.acked.values() {
            let n = running.get(id).map_or(0, Vec::len);
            assert_eq!(n, 1, "acknowledged {id} has {n} running containers");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
