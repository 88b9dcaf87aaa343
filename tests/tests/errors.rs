//! Bad input and outages get the contract's JSON errors and lose nothing.

use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::Duration;

fn assert_error(status: u16, body: &Value, want_status: u16, what: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: error string in {body}");
    assert!(body["code"].is_string(), "{what}: code in {body}");
    assert!(body["requestId"].is_string(), "{what}: requestId in {body}");
}

#[tokio::test]
async fn bad_input_gets_json_errors_with_the_right_status() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let api = c.api().expect("api");

    let (s, v) = api
        .post("/workloads", &json!({"name": "x"}))
        .await
        .expect("answer");
    assert_error(s, &v, 400, "missing image");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("image"),
        "names the field: {v}"
    );

    let (s, v) = api
        .post(
            "/workloads/schedule",
            &json!({"image": TEST_IMAGE, "type": "vm"}),
        )
        .await
        .expect("answer");
    assert_error(s, &v, 400, "unknown type");
    assert!(v["error"].as_str().unwrap_or_default().contains("type"));

    let (s, v) = api
        .post_raw("/workloads", b"{\"image\": ".to_vec(), "application/json")
        .await
        .expect("answer");
    assert_error(s, &v, 400, "malformed JSON");

    let big = format!(
        "{{\"image\":\"{TEST_IMAGE}\",\"labels\":{{\"x\":\"{}\"}}}}",
        "a".repeat(2 << 20)
    );
    let (s, v) = api
        .post_raw("/workloads", big.into_bytes(), "application/json")
        .await
        .expect("answer");
    assert_error(s, &v, 413, "oversized body");

    let (s, v) = api
        .get("/workloads/00000000-0000-4000-8000-000000000000")
        .await
        .expect("answer");
    assert_error(s, &v, 404, "unknown workload");

    let list = api.get_json("/workloads").await.expect("list");
    assert_eq!(list, json!([]), "nothing was stored by bad requests");
}

#[tokio::test]
async fn schedule_with_etcd_stopped_gets_503_and_starts_no_container() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let node = c.agents[0].node_id.clone();
    c.etcd.stop();
    for path in ["/workloads", "/workloads/schedule"] {
        let (s, v) = api
            .post(path, &json!({"image": TEST_IMAGE, "command": "sleep 3600"}))
            .await
            .expect("answer");
        assert_error(s, &v, 503, "etcd down");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        docker::containers_with_label("persys.nodeId", &node).is_empty(),
        "no container may start for an unacknowledged workload"
    );

    c.etcd.restart().await.expect("etcd restarts");
    let mut accepted = None;
    for _ in 0..100 {
        let (s, v) = api
            .post(
                "/workloads",
                &json!({"image": TEST_IMAGE, "command": "sleep 3600"}),
            )
            .await
            .expect("answer");
        if s == 201 {
            accepted = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let w = accepted.expect("schedule works again once etcd is back");
    c.wait_status(
        w["id"].as_str().expect("id"),
        "Running",
        Duration::from_secs(20),
    )
    .await
    .expect("runs");
}
