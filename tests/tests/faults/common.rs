//! Helpers shared by the fault tests.

use persys_tests::{Api, Cluster, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::Duration;

/// Fault tests measure time and load the machine (hundreds of containers, a slow
/// link): they run one at a time even when the harness runs tests in parallel.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Hold for the whole test: no other fault test runs meanwhile.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A long-running busybox sleeper with `policy`.
pub fn sleeper(policy: &str) -> Value {
    json!({"image": TEST_IMAGE, "command": ["sleep", "3600"], "restartPolicy": policy})
}

/// Submit through the cluster's first scheduler; the new id.
pub async fn submit(c: &Cluster, body: Value) -> String {
    let w = c.submit(body).await.expect("submitted");
    w["id"].as_str().expect("id").to_string()
}

/// `GET /workloads/{id}`.
pub async fn workload(api: &Api, id: &str) -> Value {
    api.get_json(&format!("/workloads/{id}"))
        .await
        .expect("workload")
}

/// `GET /nodes/{id}` status.
pub async fn node_status(api: &Api, node: &str) -> String {
    let n = api.get_json(&format!("/nodes/{node}")).await.expect("node");
    n["status"].as_str().unwrap_or_default().to_string()
}

/// `POST /nodes/{id}/<action>` (cordon, uncordon, drain), expecting 200.
pub async fn node_action(api: &Api, node: &str, action: &str) -> Value {
    let (s, v) = api
        .post(&format!("/nodes/{node}/{action}"), &json!({}))
        .await
        .expect("node action");
    assert_eq!(s, 200, "{action} {node} answered {s}: {v}");
    v
}

/// Wait until every id in `ids` is Running on `node`; their records.
pub async fn wait_running_on(c: &Cluster, ids: &[String], node: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        let w = c
            .wait_workload(id, Duration::from_secs(30), "Running on its node", |w| {
                w["status"] == "Running" && w["nodeId"] == node
            })
            .await
            .expect("Running on the node");
        out.push(w);
    }
    out
}

/// Milliseconds of a duration, for printed measurements.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}
