//! Static stability: with etcd down, reads answer from the cache, writes and status
//! pushes get 503 (agents buffer and retry), and everything converges when it returns.

use super::{api, assert_error, send};
use crate::api::router;
use crate::assert_eventually;
use crate::testutil::TestApp;
use axum::http::{Method, StatusCode};
use persys_proto::{keys, Workload, WorkloadStatus};
use serde_json::json;

#[tokio::test]
async fn with_etcd_down_reads_answer_from_the_cache_and_writes_get_503_until_it_returns() {
    let mut app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local", "name": "web"})),
    )
    .await;
    let id = r.body["id"].as_str().expect("id").to_string();
    app.etcd.kill();

    let r = api(&app, Method::GET, "/workloads", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body[0]["id"], id.as_str());
    let r = api(&app, Method::GET, &format!("/workloads/{id}"), None).await;
    assert_eq!(
        (r.status, r.body["name"].as_str()),
        (StatusCode::OK, Some("web"))
    );
    let r = api(&app, Method::GET, "/nodes", None).await;
    assert_eq!(
        (r.status, r.body["nodes"][0]["nodeId"].as_str()),
        (StatusCode::OK, Some("node-1"))
    );
    let r = api(&app, Method::GET, "/nodes/node-1", None).await;
    assert_eq!(r.status, StatusCode::OK);

    let new = json!({"image": "busybox:local"});
    let r = api(&app, Method::POST, "/workloads", Some(new.clone())).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let r = api(&app, Method::POST, &format!("/workloads/{id}/stop"), None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let r = api(
        &app,
        Method::POST,
        &format!("/workloads/{id}/redeploy"),
        None,
    )
    .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let r = api(&app, Method::POST, "/nodes/node-1/drain", None).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // A state change pushed by the agent cannot be stored: 503, so the agent keeps it
    // and pushes it again.
    let push = || {
        let report = json!({"containers": [{"workloadId": id, "generation": 1, "containerId": "c1",
            "status": "Running", "observedAt": "2026-01-01T00:00:00Z"}]});
        send(
            router(app.ctx.clone()),
            Method::POST,
            "/nodes/node-1/status",
            Some(serde_json::to_vec(&report).expect("json")),
            Some("node-1"),
            &[],
        )
    };
    assert_error(
        &push().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert_eq!(
        app.ctx.cache().workload(&id).expect("cached").value.status,
        WorkloadStatus::Scheduled
    );

    app.etcd.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while push().await.status != StatusCode::NO_CONTENT {
        assert!(std::time::Instant::now() < deadline, "push accepted again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.ctx.cache().workload(&id).expect("cached").value.status,
        WorkloadStatus::Running
    );
    let r = api(&app, Method::POST, "/workloads", Some(new)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The watch follows etcd again: another writer's change reaches the cache.
    let other = app.etcd.store().await;
    other
        .update::<Workload, _>(&keys::workload(&id), |w| {
            let mut next = w.clone();
            next.spec.name = "renamed".into();
            Some(next)
        })
        .await
        .expect("updated elsewhere");
    assert_eventually!(
        10,
        app.ctx
            .cache()
            .workload(&id)
            .is_some_and(|w| w.value.spec.name == "renamed")
    );
}
