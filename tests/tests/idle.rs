//! Liveness lives in memory: heartbeats never write to etcd.

use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use std::time::Duration;

#[tokio::test]
async fn idle_cluster_heartbeats_write_nothing_to_etcd() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(), AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = c.etcd.revision().await.expect("revision");
    // Eight heartbeat intervals of two agents.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = c.etcd.revision().await.expect("revision");
    assert_eq!(
        after,
        before,
        "an idle cluster wrote {} revisions",
        after - before
    );
    // And the nodes are still seen alive through those heartbeats.
    let nodes = c
        .api()
        .expect("api")
        .get_json("/nodes")
        .await
        .expect("nodes");
    let active = nodes["nodes"]
        .as_array()
        .map(|a| a.iter().filter(|n| n["status"] == "Active").count());
    assert_eq!(active, Some(2));
}
