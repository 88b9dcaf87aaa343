//! Node routes: registration, heartbeats, status pushes, cordon, liveness.

use super::{api, assert_error, send};
use crate::api::{bootstrap_router, router};
use crate::assert_eventually;
use crate::testutil::TestApp;
use axum::http::{Method, StatusCode};
use persys_proto::{NodeStatus, WorkloadStatus};
use serde_json::json;

#[tokio::test]
async fn without_a_client_certificate_identity_node_routes_are_refused() {
    let app = TestApp::start().await;
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/heartbeat",
        Some(b"{}".to_vec()),
        None,
        &[],
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn status_push_applies_matching_generation_and_checks_identity() {
    let app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    let id = r.body["id"].as_str().expect("id").to_string();
    let report = |generation: u64, status: &str| {
        serde_json::to_vec(&json!({"containers": [{"workloadId": id, "generation": generation, "containerId": "c1", "status": status, "exitCode": 3, "observedAt": "2026-01-01T00:00:00Z"}]})).expect("json")
    };
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/node-1/status",
        Some(report(1, "Failed")),
        Some("node-2"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/node-1/status",
        Some(report(7, "Running")),
        Some("node-1"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.ctx.cache().workload(&id).expect("w").value.status,
        WorkloadStatus::Scheduled,
        "stale generation ignored"
    );
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/node-1/status",
        Some(report(1, "Failed")),
        Some("node-1"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let w = app.ctx.cache().workload(&id).expect("w").value;
    assert_eq!((w.status, w.exit_code), (WorkloadStatus::Failed, Some(3)));
}

#[tokio::test]
async fn heartbeats_write_nothing_to_etcd_and_unknown_nodes_reregister() {
    let app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let before = app.ctx.store().ping().await.expect("rev");
    let hb =
        serde_json::to_vec(&json!({"availableCpu": 1.25, "availableMemory": 700})).expect("json");
    for _ in 0..5 {
        let r = send(
            router(app.ctx.clone()),
            Method::POST,
            "/nodes/heartbeat",
            Some(hb.clone()),
            Some("node-1"),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["reregister"], false);
    }
    assert_eq!(app.ctx.store().ping().await.expect("rev"), before);
    let n = api(&app, Method::GET, "/nodes/node-1", None).await;
    assert_eq!(n.body["availableMemory"], 700);
    assert!(n.body["lastHeartbeat"].is_string());
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/heartbeat",
        Some(hb),
        Some("stranger"),
        &[],
    )
    .await;
    assert_eq!(r.body["reregister"], true);
}

#[tokio::test]
async fn cordon_blocks_placement_and_uncordon_restores_it() {
    let app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let r = api(&app, Method::POST, "/nodes/node-1/cordon", None).await;
    assert_eq!(r.body["status"], "Cordoned");
    let w = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    assert_eq!(w.body["status"], "Pending");
    let r = api(&app, Method::POST, "/nodes/node-1/uncordon", None).await;
    assert_eq!(r.body["status"], "Active");
    assert_eq!(
        app.ctx
            .placer()
            .reconcile(&app.ctx)
            .await
            .expect("reconcile"),
        1
    );
    let r = api(&app, Method::POST, "/nodes/ghost/drain", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn register_needs_the_join_token_and_stores_node_and_dns() {
    let app = TestApp::start().await;
    let (csr, _key) = persys_certs::generate_csr("node-1", &[]).expect("csr");
    let body = serde_json::to_vec(&json!({
        "nodeId": "node-1", "csr": csr, "hostname": "host-1", "ipAddress": "10.0.0.7",
        "agentPort": 8080, "totalCpu": 2.0, "totalMemory": 2048, "labels": {"region": "eu"}
    }))
    .expect("json");
    let boot = || bootstrap_router(app.ctx.clone());
    let r = send(
        boot(),
        Method::POST,
        "/nodes/register",
        Some(body.clone()),
        None,
        &[],
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    let wrong = persys_certs::JoinToken {
        ca_hash: app.ctx.trust().ca_hash().to_string(),
        secret: "not-the-secret".into(),
    };
    let r = send(
        boot(),
        Method::POST,
        "/nodes/register",
        Some(body.clone()),
        None,
        &[("authorization", &format!("Bearer {wrong}"))],
    )
    .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    let auth = format!("Bearer {}", app.join_token());
    let r = send(
        boot(),
        Method::POST,
        "/nodes/register",
        Some(body),
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["nodeId"], "node-1");
    assert_eq!(r.body["domainName"], "node-1.cluster.local.dev");
    let cert = r.body["certificate"].as_str().expect("cert");
    let der = persys_certs::pem::parse_certs(cert).expect("pem");
    assert_eq!(
        persys_certs::common_name(&der[0]).as_deref(),
        Some("node-1")
    );
    let node = app.ctx.cache().node("node-1").expect("node").value;
    assert_eq!(
        (node.status, node.labels.get("region").map(String::as_str)),
        (NodeStatus::Active, Some("eu"))
    );
    let dns: Option<crate::store::Versioned<crate::dns::DnsRecord>> = app
        .ctx
        .store()
        .get("/skydns/dev/local/cluster/node-1")
        .await
        .expect("get");
    assert_eq!(dns.map(|d| d.value.host).as_deref(), Some("10.0.0.7"));
    let bad = serde_json::to_vec(&json!({"nodeId": "Bad_Id", "csr": csr, "hostname": "h", "ipAddress": "10.0.0.7", "agentPort": 1, "totalCpu": 1.0, "totalMemory": 1})).expect("json");
    let r = send(
        boot(),
        Method::POST,
        "/nodes/register",
        Some(bad),
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid");
    assert!(r.body["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("nodeId")));
}

#[tokio::test]
async fn silent_node_goes_inactive_once_and_a_heartbeat_revives_it() {
    let app = TestApp::start_with(|c| c.node_timeout_ms = 400).await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    let id = r.body["id"].as_str().expect("id").to_string();
    let task = tokio::spawn(crate::liveness::run(app.ctx.clone(), app.shutdown.clone()));
    assert_eventually!(
        3,
        app.ctx
            .cache()
            .node("node-1")
            .is_some_and(|n| n.value.status == NodeStatus::Inactive)
    );
    assert_eventually!(
        3,
        app.ctx
            .cache()
            .workload(&id)
            .is_some_and(|w| w.value.status == WorkloadStatus::Unknown)
    );
    // Silent and Inactive: no further writes.
    let rev = app.ctx.store().ping().await.expect("rev");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(app.ctx.store().ping().await.expect("rev"), rev);
    let hb =
        serde_json::to_vec(&json!({"availableCpu": 2.0, "availableMemory": 1024})).expect("json");
    send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/heartbeat",
        Some(hb),
        Some("node-1"),
        &[],
    )
    .await;
    assert_eq!(
        app.ctx.cache().node("node-1").expect("node").value.status,
        NodeStatus::Active
    );
    app.shutdown.cancel();
    task.await.expect("liveness loop stops");
}

#[tokio::test]
async fn a_usage_report_keeps_only_the_calling_nodes_workloads_and_writes_nothing() {
    let app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["nodeId"], "node-1");
    let report = serde_json::to_vec(&json!({"samples": [
        {"workloadId": id, "cpuMillicores": 250, "memoryBytes": 1048576},
        {"workloadId": "not-mine", "cpuMillicores": 1, "memoryBytes": 1}
    ]}))
    .expect("json");
    let before = app.ctx.store().ping().await.expect("rev");
    // Another node cannot speak for node-1's workload.
    app.add_node("node-2", 2.0, 1024, &[]).await;
    let before_2 = app.ctx.store().ping().await.expect("rev");
    assert!(before_2 > before);
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/usage",
        Some(report.clone()),
        Some("node-2"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let now = std::time::Instant::now();
    assert!(
        app.ctx.usage().get(&id, now).is_none(),
        "node-2 reported a workload of node-1"
    );
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/usage",
        Some(report),
        Some("node-1"),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let sample = app.ctx.usage().get(&id, now).expect("node-1's own sample");
    assert_eq!(sample.cpu_millicores, 250);
    assert!(app.ctx.usage().get("not-mine", now).is_none());
    assert_eq!(app.ctx.usage().len(), 1);
    assert_eq!(
        app.ctx.store().ping().await.expect("rev"),
        before_2,
        "usage is leader memory, never an etcd write"
    );
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/nodes/usage",
        Some(b"{\"samples\": 3}".to_vec()),
        Some("node-1"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_json");
}
