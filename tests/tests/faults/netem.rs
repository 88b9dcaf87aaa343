//! A slow, lossy link (300 ms each way, 10 % loss) is not a dead node.

use crate::common::{ms, sleeper, submit};
use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the link stays bad (`PERSYS_NETEM_SECS`, default 60).
fn soak() -> Duration {
    let secs = std::env::var("PERSYS_NETEM_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[tokio::test]
async fn latency_and_loss_never_make_the_node_inactive() {
    let _serial = crate::common::serial().await;
    // The scheduler keeps its default 5 s node timeout and 1 s heartbeats.
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        netns: true,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let node = c.node_ids()[0].clone();
    let id = submit(&c, sleeper("always")).await;
    c.wait_status(&id, "Running", Duration::from_secs(30))
        .await
        .expect("Running");

    let mode = c.netem(0, "delay 300ms loss 10%").expect("netem");
    println!("netem mode: {mode:?}");
    // The link really is slow: a TCP handshake to the agent takes a round trip.
    let agent = format!("{}:{}", c.host(0).expect("host").node_ip, c.agents[0].port);
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(&agent),
        )
        .await;
        assert!(
            matches!(conn, Ok(Ok(_))),
            "agent reachable over the slow link"
        );
        fastest = fastest.min(t.elapsed());
    }
    println!("TCP connect over the link: {} ms", ms(fastest));
    assert!(
        fastest >= Duration::from_millis(550),
        "300 ms each way means >= 600 ms per connect, got {} ms",
        ms(fastest)
    );

    let start = Instant::now();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut workload_status: BTreeMap<String, usize> = BTreeMap::new();
    while start.elapsed() < soak() {
        let (s, n) = api.get(&format!("/nodes/{node}")).await.expect("GET node");
        assert_eq!(s, 200, "{n}");
        let status = n["status"].as_str().unwrap_or_default().to_string();
        assert_ne!(
            status,
            "Inactive",
            "false Inactive after {} ms of a slow link: {n}",
            ms(start.elapsed())
        );
        *seen.entry(status).or_default() += 1;
        let (_, w) = api.get(&format!("/workloads/{id}")).await.expect("GET");
        let ws = w["status"].as_str().unwrap_or_default().to_string();
        *workload_status.entry(ws).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("node statuses over {:?}: {seen:?}", soak());
    println!("workload statuses: {workload_status:?}");
    if let Some((delayed, dropped)) = c.host(0).expect("host").netem_stats() {
        let share = dropped as f64 / (delayed + dropped).max(1) as f64;
        println!(
            "user-space netem: {delayed} packets delayed, {dropped} dropped ({:.1} %)",
            share * 100.0
        );
        assert!(
            (0.04..0.18).contains(&share),
            "about 10 % of the packets were dropped"
        );
    }
    assert_eq!(
        workload_status.keys().collect::<Vec<_>>(),
        vec!["Running"],
        "the workload stayed Running where it was"
    );
    let w = api
        .get_json(&format!("/workloads/{id}"))
        .await
        .expect("GET");
    assert_eq!(w["nodeId"], node.as_str(), "not moved");
    c.clear_netem(0);
}
