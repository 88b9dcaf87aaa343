//! Placement across real agents: node selectors and capacity, Pending until it fits.

use persys_tests::{AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn node_selector_is_respected_and_oversized_workload_waits_pending_until_capacity_frees() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![
            AgentOptions {
                cpu: Some(1.0),
                memory_mb: Some(512),
                ..Default::default()
            }
            .label("REGION", "eu"),
            AgentOptions {
                cpu: Some(1.0),
                memory_mb: Some(512),
                ..Default::default()
            }
            .label("REGION", "us"),
        ],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let (eu, us) = (c.agents[0].node_id.clone(), c.agents[1].node_id.clone());

    for _ in 0..3 {
        let w = c
            .submit(json!({"image": TEST_IMAGE, "command": "sleep 3600", "nodeSelector": {"REGION": "us"}}))
            .await
            .expect("submitted");
        assert_eq!(w["nodeId"], us.as_str(), "nodeSelector REGION=us");
    }
    let w = c
        .submit(
            json!({"image": TEST_IMAGE, "command": "sleep 3600", "nodeSelector": {"REGION": "eu"}}),
        )
        .await
        .expect("submitted");
    assert_eq!(w["nodeId"], eu.as_str());

    let none = c
        .submit(json!({"image": TEST_IMAGE, "command": "sleep 3600", "nodeSelector": {"REGION": "mars"}}))
        .await
        .expect("submitted");
    assert_eq!(none["status"], "Pending");
    assert!(none["nodeId"].is_null());

    // Fill the eu node, then ask for more than any node has free.
    let filler = c
        .submit(
            json!({"image": TEST_IMAGE, "command": "sleep 3600", "nodeSelector": {"REGION": "eu"},
                       "resources": {"cpu": 800, "memory": 64}}),
        )
        .await
        .expect("submitted");
    assert_eq!(filler["nodeId"], eu.as_str());
    let big = c
        .submit(
            json!({"image": TEST_IMAGE, "command": "sleep 3600", "nodeSelector": {"REGION": "eu"},
                       "resources": {"cpu": 600, "memory": 64}}),
        )
        .await
        .expect("submitted");
    let big_id = big["id"].as_str().expect("id").to_string();
    assert_eq!(big["status"], "Pending", "{big}");
    assert!(big["nodeId"].is_null());
    let reason = big["statusReason"].as_str().unwrap_or_default();
    assert!(
        reason.to_lowercase().contains("cpu"),
        "pending reason names cpu: {reason:?}"
    );

    // Still pending a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = c
        .api()
        .expect("api")
        .get_json(&format!("/workloads/{big_id}"))
        .await
        .expect("get");
    assert_eq!(again["status"], "Pending");

    // Free the capacity: the pending workload is placed and runs.
    let filler_id = filler["id"].as_str().expect("id");
    let (s, _) = c
        .api()
        .expect("api")
        .delete(&format!("/workloads/{filler_id}"))
        .await
        .expect("delete");
    assert!(s == 200 || s == 202 || s == 204, "delete answered {s}");
    let placed = c
        .wait_status(&big_id, "Running", Duration::from_secs(20))
        .await
        .expect("pending workload placed after capacity freed");
    assert_eq!(placed["nodeId"], eu.as_str());
}
