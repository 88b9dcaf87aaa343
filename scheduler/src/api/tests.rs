//! Handler tests: the real router over a real etcd, driven with `oneshot`.

use super::*;
use crate::assert_eventually;
use crate::testutil::TestApp;
use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use persys_certs::PeerIdentity;
use persys_proto::{keys, NodeStatus, Workload, WorkloadStatus};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Resp {
    status: StatusCode,
    request_id: Option<String>,
    body: Value,
}

async fn send(
    router: Router,
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
    cn: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut req = HttpRequest::builder().method(method).uri(uri);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut req = req
        .header("content-type", "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .expect("request");
    if let Some(cn) = cn {
        req.extensions_mut().insert(PeerIdentity {
            common_name: cn.to_string(),
        });
    }
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let request_id = resp
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        request_id,
        body,
    }
}

async fn api(app: &TestApp, method: Method, uri: &str, body: Option<Value>) -> Resp {
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
    send(
        router(app.ctx.clone()),
        method,
        uri,
        bytes,
        Some("admin"),
        &[],
    )
    .await
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["code"], code, "{:?}", r.body);
    assert!(r.body["error"].is_string());
    assert_eq!(r.body["requestId"].as_str(), r.request_id.as_deref());
}

#[tokio::test]
async fn every_original_cli_body_is_accepted_and_stored() {
    let app = TestApp::start().await;
    app.add_node("node-1", 4.0, 4096, &[]).await;
    // The original CLI's bodies, copied from shared/compat into the repository.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/compat");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("compat dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let body = std::fs::read(&path).expect("read");
        let r = send(
            router(app.ctx.clone()),
            Method::POST,
            "/workloads/schedule",
            Some(body),
            Some("admin"),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {:?}", path.display(), r.body);
        for k in ["id", "workloadId", "nodeId", "node_id", "status"] {
            assert!(r.body[k].is_string(), "{k} in {:?}", r.body);
        }
        let id = r.body["workloadId"].as_str().expect("id");
        let stored = app
            .ctx
            .store
            .get::<Workload>(&keys::workload(id))
            .await
            .expect("get");
        assert!(stored.is_some(), "{} stored", path.display());
        seen += 1;
    }
    assert!(seen >= 3);
}

#[tokio::test]
async fn create_answers_201_with_the_stored_record_and_lists_are_original_shapes() {
    let app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let r = api(&app, Method::POST, "/workloads", Some(json!({"name": "web", "image": "busybox:local", "resources": {"cpu": 100, "memory": 16}}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "Scheduled");
    assert_eq!(r.body["nodeId"], "node-1");
    assert_eq!(r.body["generation"], 1);
    let id = r.body["id"].as_str().expect("id").to_string();
    let list = api(&app, Method::GET, "/workloads", None).await;
    assert!(list.body.is_array());
    assert_eq!(list.body[0]["id"], id.as_str());
    let one = api(&app, Method::GET, &format!("/workloads/{id}"), None).await;
    assert_eq!(one.body["name"], "web");
    let nodes = api(&app, Method::GET, "/nodes", None).await;
    assert_eq!(nodes.body["nodes"][0]["allocatedCpu"], 100);
    let filtered = api(&app, Method::GET, "/workloads?status=Pending", None).await;
    assert_eq!(filtered.body, json!([]));
    let metrics = api(&app, Method::GET, "/cluster/metrics", None).await;
    assert_eq!(metrics.body["workloadsByStatus"]["Scheduled"], 1);
    assert_eq!(metrics.body["totalCpuMillis"], 2000);
}

#[tokio::test]
async fn bad_input_gets_the_contracts_json_errors() {
    let app = TestApp::start_with(|c| c.max_body_bytes = 4096).await;
    let r = api(&app, Method::POST, "/workloads", Some(json!({"name": "x"}))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid");
    assert!(r.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("image")));
    let r = api(
        &app,
        Method::POST,
        "/workloads/schedule",
        Some(json!({"image": "a", "type": "vm"})),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid");
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("type")));
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/workloads",
        Some(b"{nope".to_vec()),
        Some("admin"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_json");
    let big = format!("{{\"image\":\"{}\"}}", "a".repeat(10_000));
    let r = send(
        router(app.ctx.clone()),
        Method::POST,
        "/workloads",
        Some(big.into_bytes()),
        Some("admin"),
        &[],
    )
    .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let r = api(&app, Method::GET, "/workloads/nope", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        api(&app, Method::GET, "/workloads", None).await.body,
        json!([])
    );
}

#[tokio::test]
async fn request_id_is_echoed_in_header_and_error_body() {
    let app = TestApp::start().await;
    let r = send(
        router(app.ctx.clone()),
        Method::GET,
        "/workloads/x",
        None,
        Some("admin"),
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(r.request_id.as_deref(), Some("abc-123"));
    assert_eq!(r.body["requestId"], "abc-123");
}

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
async fn with_etcd_down_schedule_is_503_and_nothing_is_stored() {
    let mut app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    app.etcd.kill();
    let started = std::time::Instant::now();
    let r = api(
        &app,
        Method::POST,
        "/workloads/schedule",
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(app.ctx.cache.workloads().is_empty(), "nothing half-written");
}

#[tokio::test]
async fn node_selector_and_capacity_decide_placement_and_pending_has_a_reason() {
    let app = TestApp::start().await;
    app.add_node("eu-1", 1.0, 512, &[("region", "eu")]).await;
    app.add_node("us-1", 1.0, 512, &[("region", "us")]).await;
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local", "nodeSelector": {"region": "us"}})),
    )
    .await;
    assert_eq!(r.body["nodeId"], "us-1");
    // The original route: labels select nodes when there is no nodeSelector.
    let r = api(
        &app,
        Method::POST,
        "/workloads/schedule",
        Some(json!({"image": "busybox:local", "labels": {"region": "eu"}})),
    )
    .await;
    assert_eq!(r.body["nodeId"], "eu-1");
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local", "resources": {"cpu": 4000}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["status"], "Pending");
    assert_eq!(r.body["nodeId"], Value::Null);
    assert!(
        r.body["statusReason"]
            .as_str()
            .is_some_and(|s| s.contains("cpu")),
        "{:?}",
        r.body
    );
    let id = r.body["id"].as_str().expect("id").to_string();
    // Capacity appears: the pending workload is placed.
    app.add_node("big-1", 8.0, 4096, &[]).await;
    assert_eq!(
        app.ctx.placer.reconcile(&app.ctx).await.expect("reconcile"),
        1
    );
    let w = app.ctx.cache.workload(&id).expect("present").value;
    assert_eq!(
        (w.status, w.node_id.as_deref(), w.generation),
        (WorkloadStatus::Scheduled, Some("big-1"), 1)
    );
}

#[tokio::test]
async fn concurrent_submissions_never_double_book_a_node() {
    let app = TestApp::start().await;
    app.add_node("a", 1.0, 1024, &[]).await;
    app.add_node("b", 1.0, 1024, &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let r = router(app.ctx.clone());
        tasks.push(tokio::spawn(async move {
            let body =
                serde_json::to_vec(&json!({"image": "busybox:local", "resources": {"cpu": 300}}))
                    .expect("json");
            send(
                r,
                Method::POST,
                "/workloads",
                Some(body),
                Some("admin"),
                &[],
            )
            .await
            .body
        }));
    }
    let mut per_node = std::collections::HashMap::<String, u32>::new();
    for t in tasks {
        let body = t.await.expect("join");
        if let Some(n) = body["nodeId"].as_str() {
            *per_node.entry(n.to_string()).or_default() += 1;
        }
    }
    assert_eq!(per_node.get("a"), Some(&3));
    assert_eq!(per_node.get("b"), Some(&3));
    let pending = app
        .ctx
        .cache
        .workloads()
        .iter()
        .filter(|w| w.status == WorkloadStatus::Pending)
        .count();
    assert_eq!(pending, 6);
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
        app.ctx.cache.workload(&id).expect("w").value.status,
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
    let w = app.ctx.cache.workload(&id).expect("w").value;
    assert_eq!((w.status, w.exit_code), (WorkloadStatus::Failed, Some(3)));
}

#[tokio::test]
async fn heartbeats_write_nothing_to_etcd_and_unknown_nodes_reregister() {
    let app = TestApp::start().await;
    app.add_node("node-1", 2.0, 1024, &[]).await;
    let before = app.ctx.store.ping().await.expect("rev");
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
    assert_eq!(app.ctx.store.ping().await.expect("rev"), before);
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
        app.ctx.placer.reconcile(&app.ctx).await.expect("reconcile"),
        1
    );
    let r = api(&app, Method::POST, "/nodes/ghost/drain", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn stop_start_and_delete_of_an_unplaced_workload_change_only_the_record() {
    let app = TestApp::start().await;
    let r = api(
        &app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    let id = r.body["id"].as_str().expect("id").to_string();
    let r = api(&app, Method::POST, &format!("/workloads/{id}/stop"), None).await;
    assert_eq!(
        (r.body["desiredState"].as_str(), r.body["status"].as_str()),
        (Some("Stopped"), Some("Stopped"))
    );
    let r = api(&app, Method::POST, &format!("/workloads/{id}/start"), None).await;
    assert_eq!(
        (r.body["desiredState"].as_str(), r.body["status"].as_str()),
        (Some("Running"), Some("Pending"))
    );
    let r = api(&app, Method::DELETE, &format!("/workloads/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(app
        .ctx
        .store
        .get::<Workload>(&keys::workload(&id))
        .await
        .expect("get")
        .is_none());
    assert_error(
        &api(&app, Method::GET, &format!("/workloads/{id}"), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn writes_of_another_scheduler_reach_the_cache_through_the_watch() {
    let app = TestApp::start().await;
    let other = app.etcd.store().await;
    let spec = persys_proto::WorkloadRequest {
        image: "busybox:local".into(),
        ..Default::default()
    }
    .validate()
    .expect("valid");
    let w = Workload::new("from-elsewhere".into(), spec, chrono::Utc::now());
    other
        .put_if_absent(&keys::workload("from-elsewhere"), &w)
        .await
        .expect("put");
    assert_eventually!(5, app.ctx.cache.workload("from-elsewhere").is_some());
    other
        .delete(&keys::workload("from-elsewhere"))
        .await
        .expect("delete");
    assert_eventually!(5, app.ctx.cache.workload("from-elsewhere").is_none());
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
        ca_hash: app.ctx.ca_hash.clone(),
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
    let node = app.ctx.cache.node("node-1").expect("node").value;
    assert_eq!(
        (node.status, node.labels.get("region").map(String::as_str)),
        (NodeStatus::Active, Some("eu"))
    );
    let dns: Option<crate::store::Versioned<crate::dns::DnsRecord>> = app
        .ctx
        .store
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
            .cache
            .node("node-1")
            .is_some_and(|n| n.value.status == NodeStatus::Inactive)
    );
    assert_eventually!(
        3,
        app.ctx
            .cache
            .workload(&id)
            .is_some_and(|w| w.value.status == WorkloadStatus::Unknown)
    );
    // Silent and Inactive: no further writes.
    let rev = app.ctx.store.ping().await.expect("rev");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(app.ctx.store.ping().await.expect("rev"), rev);
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
        app.ctx.cache.node("node-1").expect("node").value.status,
        NodeStatus::Active
    );
    app.shutdown.cancel();
    task.await.expect("liveness loop stops");
}
