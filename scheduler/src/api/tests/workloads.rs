//! `/workloads` routes.

use super::{api, assert_error, send};
use crate::api::router;
use crate::assert_eventually;
use crate::testutil::TestApp;
use axum::http::{Method, StatusCode};
use persys_proto::{keys, Workload, WorkloadStatus};
use serde_json::{json, Value};

#[tokio::test]
async fn every_original_cli_body_is_accepted_and_stored() {
    let app = TestApp::start().await;
    app.add_node("node-1", 4.0, 4096, &[]).await;
    // schedule-full.json bind mounts /srv/...: host paths need the admin's policy.
    let r = api(
        &app,
        Method::PUT,
        "/cluster/policy",
        Some(json!({"allowedHostPaths": [{"prefix": "/srv", "mode": "rw"}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
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
            .store()
            .get::<Workload>(&keys::workload(id))
            .await
            .expect("get");
        assert!(stored.is_some(), "{} stored", path.display());
        seen += 1;
    }
    assert!(seen >= 3);
}

#[tokio::test]
async fn host_paths_are_refused_until_the_policy_allows_them() {
    let app = TestApp::start().await;
    app.add_node("node-1", 4.0, 4096, &[]).await;
    let body = json!({"image": "busybox:local", "volumes": ["/srv/www:/www:ro"]});
    let r = api(&app, Method::POST, "/workloads", Some(body.clone())).await;
    assert_error(&r, StatusCode::FORBIDDEN, "policy_denied");
    let msg = r.body["error"].as_str().expect("message");
    assert!(
        msg.starts_with("volumes[0]:") && msg.contains("allowedHostPaths"),
        "{msg}"
    );
    let r = api(&app, Method::GET, "/cluster/policy", None).await;
    assert_eq!(r.body["allowedHostPaths"], json!([]), "{:?}", r.body);
    let r = api(
        &app,
        Method::PUT,
        "/cluster/policy",
        Some(json!({"allowedHostPaths": [{"prefix": "/srv/www", "mode": "ro"}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = api(&app, Method::POST, "/workloads", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // A policy that would expose the engine socket, or with a misspelt key, is refused.
    let r = api(
        &app,
        Method::PUT,
        "/cluster/policy",
        Some(json!({"allowedHostPaths": [{"prefix": "/var/run"}]})),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid");
    let r = api(
        &app,
        Method::PUT,
        "/cluster/policy",
        Some(json!({"allowPrivilege": true})),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_json");
}

#[tokio::test]
async fn answers_show_secret_env_names_but_never_values() {
    let app = TestApp::start().await;
    app.add_node("node-1", 4.0, 4096, &[]).await;
    let body = json!({"image": "busybox:local", "secretEnv": {"DB_PASSWORD": "hunter2"}});
    let r = api(&app, Method::POST, "/workloads", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["secretEnv"]["DB_PASSWORD"], "***");
    let id = r.body["id"].as_str().expect("id").to_string();
    for path in [format!("/workloads/{id}"), "/workloads".to_string()] {
        let r = api(&app, Method::GET, &path, None).await;
        assert!(
            !r.body.to_string().contains("hunter2"),
            "{path}: {:?}",
            r.body
        );
    }
    let r = api(&app, Method::POST, &format!("/workloads/{id}/stop"), None).await;
    assert!(!r.body.to_string().contains("hunter2"), "{:?}", r.body);
    // The record keeps the value for the dispatch.
    let stored = app
        .ctx
        .store()
        .get::<Workload>(&keys::workload(&id))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        stored.value.spec.secret_env.expose().collect::<Vec<_>>(),
        [("DB_PASSWORD", "hunter2")]
    );
}

#[tokio::test]
async fn a_record_over_the_workload_limit_is_413_naming_it() {
    let app = TestApp::start().await;
    app.add_node("node-1", 4.0, 4096, &[]).await;
    // Within the request limit, but the original route copies labels into the selector.
    let labels: serde_json::Map<String, Value> = (0..300)
        .map(|i| (format!("l{i}"), Value::String("x".repeat(1000))))
        .collect();
    let body = json!({"image": "busybox:local", "labels": labels});
    let r = api(&app, Method::POST, "/workloads/schedule", Some(body)).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert!(
        r.body["error"]
            .as_str()
            .is_some_and(|m| m.contains("MAX_WORKLOAD_BYTES")),
        "{:?}",
        r.body
    );
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
    assert_eq!(app.ctx.cache().counts().total, 0, "nothing half-written");
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
        app.ctx
            .placer()
            .reconcile(&app.ctx)
            .await
            .expect("reconcile"),
        1
    );
    let w = app.ctx.cache().workload(&id).expect("present").value;
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
    let pending = app.ctx.cache().pending_count();
    assert_eq!(pending, 6);
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
        .store()
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
    assert_eventually!(5, app.ctx.cache().workload("from-elsewhere").is_some());
    other
        .delete(&keys::workload("from-elsewhere"))
        .await
        .expect("delete");
    assert_eventually!(5, app.ctx.cache().workload("from-elsewhere").is_none());
}
