//! Scheduling a container end to end: store first, Running, logs and log follow.

use futures::StreamExt;
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn scheduled_workload_is_stored_before_its_container_exists_then_runs_and_logs() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");

    // Freeze the agent so that nothing can run before we look at etcd and Docker.
    let agent = c.agents[0].process.as_ref().expect("agent runs");
    agent.signal(libc::SIGSTOP).expect("SIGSTOP agent");
    let w = c
        .submit(json!({
            "name": "hello",
            "image": TEST_IMAGE,
            "command": "echo hello-from-persys; sleep 3; echo second-line; sleep 3600",
        }))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "id is a UUID: {id}");
    assert_eq!(w["nodeId"], c.agents[0].node_id.as_str());

    let mut etcd = c.etcd.client().await.expect("etcd client");
    let got = etcd
        .get(format!("/workloads/{id}"), None)
        .await
        .expect("etcd get");
    let kv = got.kvs().first().expect("etcd holds the record");
    let stored: serde_json::Value = serde_json::from_slice(kv.value()).expect("record is JSON");
    assert_eq!(stored["image"], TEST_IMAGE);
    assert!(
        docker::workload_containers(&id).is_empty(),
        "no container may exist before the agent acted"
    );

    c.agents[0]
        .process
        .as_ref()
        .expect("agent")
        .signal(libc::SIGCONT)
        .expect("SIGCONT agent");
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("reaches Running");
    assert!(running["containerId"].is_string());
    assert_eq!(docker::running_workload_containers(&id).len(), 1);

    // Plain logs show the first line.
    let api = c.api().expect("api");
    let logs = api
        .client()
        .get(api.url(&format!("/workloads/{id}/logs")))
        .send()
        .await
        .expect("logs answer");
    assert_eq!(logs.status(), 200);
    let text = logs.text().await.expect("logs body");
    assert!(text.contains("hello-from-persys"), "logs: {text:?}");

    // Follow: the second line, written ~3 s after start, arrives on the open stream.
    let resp = api
        .client()
        .get(api.url(&format!("/workloads/{id}/logs?follow=true")))
        .send()
        .await
        .expect("follow answers");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut first_line_alone = false;
    while !seen.contains("second-line") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.next())
            .await
            .expect("a log line within the deadline")
            .expect("stream not closed")
            .expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("hello-from-persys") && !seen.contains("second-line") {
            first_line_alone = true;
        }
    }
    assert!(
        first_line_alone,
        "follow must deliver the first line before the second is written: {seen:?}"
    );
}
