//! Several scheduler URLs (one per replica): the agent registers, heartbeats and
//! reports through the one that answers.

mod common;

use common::scheduler::{eventually, FakeScheduler};
use common::{ensure_image, unique, Cleanup};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A loopback URL nothing listens on (connection refused).
fn dead_url() -> String {
    let port = persys_testports::free_port();
    format!("https://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_agent_with_a_dead_replica_first_in_its_lists_joins_and_heartbeats_through_the_next() {
    ensure_image();
    let node = unique("t-failover");
    let _cleanup = Cleanup(node.clone());
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = sched.config(&node, dir.path(), &sched.token.to_string());
    config.scheduler_urls = vec![dead_url(), sched.api_url.clone()];
    config.bootstrap_urls = vec![dead_url(), sched.bootstrap_url.clone()];
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(persys_agent::run(config, shutdown.clone()));
    eventually("registration through the second bootstrap URL", || {
        sched.seen(|s| s.registrations.first().cloned())
    })
    .await;
    eventually("heartbeats through the second API URL", || {
        sched.seen(|s| (s.heartbeats.len() >= 2).then_some(()))
    })
    .await;
    eventually("a status report", || {
        sched.seen(|s| (!s.reports.is_empty()).then_some(()))
    })
    .await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("stops")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
    sched.shutdown.cancel();
}
