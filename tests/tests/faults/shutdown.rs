//! SIGTERM: every binary finishes what it is doing, then exits 0 promptly.
//!
//! A request is held in flight by freezing etcd (SIGSTOP) under a write, or by a
//! container that ignores SIGTERM under a stop; the signal arrives meanwhile.

use crate::common::{ms, sleeper};
use persys_tests::{AgentOptions, Api, Cluster, ClusterOptions};
use std::time::{Duration, Instant};

fn one_agent() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    }
}

/// POST a workload through `api` while etcd is frozen, `terminate` (send SIGTERM)
/// meanwhile, thaw etcd: the write must still be answered 201. When SIGTERM was sent.
async fn write_in_flight_during(c: &Cluster, api: Api, terminate: impl FnOnce()) -> Instant {
    c.etcd.pause().expect("freeze etcd");
    let req = tokio::spawn(async move { api.post("/workloads", &sleeper("always")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!req.is_finished(), "the write waits for etcd");
    terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.etcd.resume().expect("thaw etcd");
    let (s, v) = req
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(s, 201, "the in-flight write finished: {v}");
    let id = v["id"].as_str().expect("id");
    let mut etcd = c.etcd.client().await.expect("etcd");
    let got = etcd
        .get(format!("/workloads/{id}"), None)
        .await
        .expect("get");
    assert_eq!(got.kvs().len(), 1, "and it is stored");
    signalled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_finishes_in_flight_requests_and_exits_zero_on_sigterm() {
    let _serial = crate::common::serial().await;
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let signalled = write_in_flight_during(&c, api, || {
        let p = c.scheduler.as_ref().expect("scheduler");
        p.signal(libc::SIGTERM).expect("SIGTERM");
    })
    .await;
    let status = c
        .scheduler
        .as_mut()
        .expect("scheduler")
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits within 5 s of SIGTERM");
    println!(
        "scheduler exited {status} {} ms after SIGTERM",
        ms(signalled.elapsed())
    );
    assert!(status.success(), "exit 0, got {status}");
    // Its leader lease is closed, not left to expire.
    let mut etcd = c.etcd.client().await.expect("etcd");
    let got = etcd.get("/persys/leader", None).await.expect("get");
    assert!(
        got.kvs().is_empty(),
        "the leader key is released on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_finishes_an_in_flight_stop_and_exits_zero_on_sigterm() {
    let _serial = crate::common::serial().await;
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    let victim = crate::common::submit(&c, sleeper("always")).await;
    let bystander = crate::common::submit(&c, sleeper("always")).await;
    for id in [&victim, &bystander] {
        c.wait_status(id, "Running", Duration::from_secs(30))
            .await
            .expect("Running");
    }
    // Talk to the agent as the scheduler does (its client certificate).
    let d = c.scheduler_dir();
    let agent = Api::new(
        &format!("https://127.0.0.1:{}", c.agents[0].port),
        &d.join("ca.crt"),
        Some((&d.join("scheduler.crt"), &d.join("scheduler.key"))),
    )
    .expect("agent client");
    // `sleep` as PID 1 ignores SIGTERM: the stop lasts its whole 2 s timeout.
    let path = format!("/docker/stop/{victim}?timeout=2");
    let started = Instant::now();
    let req = tokio::spawn(async move { agent.post(&path, &serde_json::json!({})).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!req.is_finished(), "the stop is in flight");
    let p = c.agents[0].process.as_mut().expect("agent");
    p.signal(libc::SIGTERM).expect("SIGTERM");
    let signalled = Instant::now();
    let (s, v) = req.await.expect("task").expect("the stop is answered");
    println!("stop answered after {} ms: {s} {v}", ms(started.elapsed()));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "Stopped", "the stop finished: {v}");
    let status = p
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits within 5 s of SIGTERM");
    println!(
        "agent exited {status} {} ms after SIGTERM",
        ms(signalled.elapsed())
    );
    assert!(status.success(), "exit 0, got {status}");
    // Static stability: the agent's exit leaves the other containers running.
    assert_eq!(
        persys_tests::docker::running_workload_containers(&bystander).len(),
        1,
        "containers outlive their agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_finishes_in_flight_requests_and_exits_zero_on_sigterm() {
    let _serial = crate::common::serial().await;
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    c.start_gateway(&[], &[]).await.expect("gateway starts");
    let api = c.gateway_admin().expect("gateway client");
    let signalled = write_in_flight_during(&c, api, || {
        let g = c.gateway.as_ref().expect("gateway");
        g.process.signal(libc::SIGTERM).expect("SIGTERM");
    })
    .await;
    let g = c.gateway.as_mut().expect("gateway");
    let status = g
        .process
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits within 5 s of SIGTERM");
    println!(
        "gateway exited {status} {} ms after SIGTERM",
        ms(signalled.elapsed())
    );
    assert!(status.success(), "exit 0, got {status}");
}
