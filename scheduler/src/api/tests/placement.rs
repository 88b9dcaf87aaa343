//! `GET /workloads/{id}/placement` (`persys why`).

use super::{api, assert_error, send};
use crate::api::router;
use crate::testutil::TestApp;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn create(app: &TestApp, body: Value) -> Value {
    let r = api(app, Method::POST, "/workloads", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

fn verdict<'a>(explained: &'a Value, node: &str) -> &'a Value {
    explained["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|v| v["nodeId"] == node))
        .unwrap_or_else(|| panic!("no verdict for {node}: {explained}"))
}

#[tokio::test]
async fn a_placed_workload_wins_on_its_own_node_and_other_nodes_say_why_not() {
    let app = TestApp::start().await;
    app.add_node("eu-1", 1.0, 1024, &[("zone", "eu")]).await;
    app.add_node("us-1", 1.0, 1024, &[("zone", "us")]).await;
    // 800m of a 1000m node: explained against the node without its own reservation,
    // the node it is on still takes it.
    let w = create(
        &app,
        json!({"name": "web", "image": "busybox:local", "nodeSelector": {"zone": "eu"},
               "resources": {"cpu": 800, "memory": 64}}),
    )
    .await;
    assert_eq!(w["nodeId"], "eu-1");
    let id = w["id"].as_str().expect("id");
    let r = api(
        &app,
        Method::GET,
        &format!("/workloads/{id}/placement"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = &r.body;
    assert_eq!(e["workloadId"], id);
    assert_eq!(e["nodeId"], "eu-1");
    assert_eq!(e["strategy"], "spread");
    assert_eq!(e["winner"], "eu-1");
    assert!(e.get("hint").is_none(), "{e}");
    let eu = verdict(e, "eu-1");
    assert_eq!(eu["verdict"], "winner");
    assert!(eu["score"].is_f64(), "{eu}");
    assert_eq!(eu["availableCpu"], 1000, "its own 800m are left out");
    let us = verdict(e, "us-1");
    assert_eq!(us["verdict"], "rejected");
    assert_eq!(us["filter"], "nodeSelector");
    assert_eq!(us["reason"], "lacks label zone=eu");
}

#[tokio::test]
async fn a_pending_workload_has_every_node_rejected_and_a_hint() {
    let app = TestApp::start().await;
    app.add_node("eu-1", 1.0, 1024, &[("zone", "eu")]).await;
    app.add_node("us-1", 1.0, 1024, &[("zone", "us")]).await;
    let filler = create(
        &app,
        json!({"image": "busybox:local", "nodeSelector": {"zone": "eu"}, "resources": {"cpu": 800}}),
    )
    .await;
    assert_eq!(filler["nodeId"], "eu-1");
    let big = create(
        &app,
        json!({"image": "busybox:local", "nodeSelector": {"zone": "eu"}, "resources": {"cpu": 500}}),
    )
    .await;
    assert_eq!(big["status"], "Pending", "{big}");
    let id = big["id"].as_str().expect("id");
    let r = api(
        &app,
        Method::GET,
        &format!("/workloads/{id}/placement"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = &r.body;
    assert_eq!(e["status"], "Pending");
    assert!(e["nodeId"].is_null());
    assert!(e.get("winner").is_none(), "{e}");
    for n in e["nodes"].as_array().expect("nodes") {
        assert_eq!(n["verdict"], "rejected", "{n}");
        assert!(n["filter"].is_string() && n["reason"].is_string(), "{n}");
    }
    assert_eq!(verdict(e, "eu-1")["filter"], "resources");
    assert_eq!(verdict(e, "eu-1")["reason"], "needs 500m CPU, 200m free");
    let hint = e["hint"].as_str().expect("hint");
    assert!(
        hint.starts_with("needs 300m more CPU on node eu-1"),
        "{hint}"
    );

    let nowhere = create(
        &app,
        json!({"image": "busybox:local", "nodeSelector": {"zone": "mars"}}),
    )
    .await;
    let id = nowhere["id"].as_str().expect("id");
    let r = api(
        &app,
        Method::GET,
        &format!("/workloads/{id}/placement"),
        None,
    )
    .await;
    let hint = r.body["hint"].as_str().expect("hint");
    assert!(hint.starts_with("no node has label zone=mars"), "{hint}");
}

#[tokio::test]
async fn placement_of_an_unknown_workload_is_404_and_nodes_may_not_ask() {
    let app = TestApp::start().await;
    let r = api(&app, Method::GET, "/workloads/nope/placement", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = send(
        router(app.ctx.clone()),
        Method::GET,
        "/workloads/nope/placement",
        None,
        Some("node-1"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
}
