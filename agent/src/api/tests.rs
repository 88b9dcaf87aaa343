use super::*;
use crate::report::ReportHandle;
use crate::runtime::fake::FakeRuntime;
use crate::supervisor::ledger::Ledger;
use axum::body::{to_bytes, Body};
use axum::http::{Method, StatusCode};
use persys_certs::Identity;
use persys_proto::{ApiError, ContainerState, WorkloadStatus, ADMIN_NAME, SCHEDULER_NAME};
use tower::ServiceExt;

fn app() -> (Router, Arc<FakeRuntime>) {
    let rt = Arc::new(FakeRuntime::new());
    let (reports, inbox) = ReportHandle::channel();
    // The inbox must outlive the test's requests; leak it into a task.
    tokio::spawn(async move {
        let _keep = inbox;
        std::future::pending::<()>().await
    });
    let supervisor = Arc::new(Supervisor::new(
        rt.clone(),
        "n1".into(),
        Ledger::open(None),
        reports,
    ));
    (
        router(AppState {
            supervisor,
            stop_timeout: Duration::from_secs(1),
        }),
        rt,
    )
}

fn request(
    method: Method,
    uri: &str,
    body: Option<serde_json::Value>,
    cn: Option<&str>,
) -> Request {
    let mut builder = axum::http::Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let mut req = builder
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    if let Some(cn) = cn {
        // The scheduler's name as a node's, a user's and the scheduler's own identity.
        let identity = match cn {
            SCHEDULER_NAME => Identity::scheduler(),
            ADMIN_NAME => Identity::admin(),
            other => Identity::node(other),
        };
        req.extensions_mut().insert(PeerIdentity::new(identity));
    }
    req
}

fn run_body(generation: u64) -> serde_json::Value {
    serde_json::json!({
        "workloadId": "w1", "image": "busybox:local", "name": "w1", "displayName": "web",
        "command": "echo hi", "generation": generation, "resources": {"cpu": 100, "memory": 32}
    })
}

async fn call(app: &Router, req: Request) -> (StatusCode, bytes::Bytes) {
    let resp = app.clone().oneshot(req).await.expect("answers");
    let status = resp.status();
    (
        status,
        to_bytes(resp.into_body(), usize::MAX).await.expect("body"),
    )
}

#[tokio::test]
async fn a_client_without_the_scheduler_certificate_is_forbidden() {
    let (app, rt) = app();
    for cn in [
        None,
        Some(ADMIN_NAME),
        Some("node-2"),
        Some("persys-scheduler-not"),
    ] {
        let (status, body) = call(
            &app,
            request(Method::POST, "/docker/run", Some(run_body(1)), cn),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let err: ApiError = serde_json::from_slice(&body).expect("json error");
        assert_eq!(err.code, "forbidden");
        assert!(!err.request_id.is_empty());
    }
    assert_eq!(rt.runs(), 0);
}

#[tokio::test]
async fn run_answers_running_and_is_idempotent() {
    let (app, rt) = app();
    let (status, body) = call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(run_body(1)),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first: ContainerState = serde_json::from_slice(&body).expect("state");
    assert_eq!(first.status, WorkloadStatus::Running);
    let (_, body) = call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(run_body(1)),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    let second: ContainerState = serde_json::from_slice(&body).expect("state");
    assert_eq!(first.container_id, second.container_id);
    assert_eq!(rt.runs(), 1);
}

#[tokio::test]
async fn a_stale_generation_gets_409_conflict() {
    let (app, _rt) = app();
    call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(run_body(5)),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    let (status, body) = call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(run_body(4)),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let err: ApiError = serde_json::from_slice(&body).expect("json error");
    assert_eq!(err.code, "conflict");
}

#[tokio::test]
async fn malformed_json_gets_400_with_the_error_shape() {
    let (app, _rt) = app();
    let mut req = request(Method::POST, "/docker/run", None, Some(SCHEDULER_NAME));
    *req.body_mut() = Body::from("{not json");
    req.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: ApiError = serde_json::from_slice(&body).expect("json error");
    assert_eq!(err.code, "bad_json");
    assert!(!err.request_id.is_empty());
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let (app, _rt) = app();
    let mut body = run_body(1);
    body["env"] = serde_json::json!({"BIG": "x".repeat(2 * 1024 * 1024)});
    let (status, _) = call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(body),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn list_stop_and_remove_follow_the_container() {
    let (app, _rt) = app();
    call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(run_body(1)),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    let (_, body) = call(
        &app,
        request(Method::GET, "/docker/list", None, Some(SCHEDULER_NAME)),
    )
    .await;
    let listed: Vec<ContainerState> = serde_json::from_slice(&body).expect("list");
    assert_eq!(listed.len(), 1);
    let (_, body) = call(
        &app,
        request(
            Method::POST,
            "/docker/stop/w1?timeout=1",
            None,
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    let stopped: ContainerState = serde_json::from_slice(&body).expect("state");
    assert_eq!(stopped.status, WorkloadStatus::Stopped);
    let (_, body) = call(
        &app,
        request(
            Method::POST,
            "/docker/remove/w1",
            None,
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    let removed: ContainerState = serde_json::from_slice(&body).expect("state");
    assert_eq!(
        (removed.status, removed.container_id),
        (WorkloadStatus::Stopped, None)
    );
    let (status, body) = call(
        &app,
        request(
            Method::POST,
            "/docker/remove/w1",
            None,
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let again: ContainerState = serde_json::from_slice(&body).expect("state");
    assert_eq!(again.status, WorkloadStatus::Missing);
}

#[tokio::test]
async fn logs_are_plain_text_lines_and_unknown_containers_are_404() {
    let (app, rt) = app();
    call(
        &app,
        request(
            Method::POST,
            "/docker/run",
            Some(run_body(1)),
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    rt.write_log("w1-g1", "one");
    rt.write_log("w1-g1", "two");
    let (status, body) = call(
        &app,
        request(
            Method::GET,
            "/docker/logs/w1?tail=1",
            None,
            Some(SCHEDULER_NAME),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&body).expect("utf8"), "two\n");
    let (status, body) = call(
        &app,
        request(Method::GET, "/docker/logs/nope", None, Some(SCHEDULER_NAME)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let err: ApiError = serde_json::from_slice(&body).expect("json error");
    assert_eq!(err.code, "not_found");
}

#[tokio::test]
async fn health_reports_the_node_and_engine() {
    let (app, _rt) = app();
    let (status, body) = call(
        &app,
        request(Method::GET, "/api/v1/health", None, Some(SCHEDULER_NAME)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let health: persys_proto::AgentHealth = serde_json::from_slice(&body).expect("health");
    assert_eq!(
        (health.status.as_str(), health.node_id.as_str()),
        ("ok", "n1")
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (app, _rt) = app();
    call(
        &app,
        request(Method::GET, "/api/v1/health", None, Some(SCHEDULER_NAME)),
    )
    .await;
    let (status, body) = call(
        &app,
        request(Method::GET, "/metrics", None, Some(SCHEDULER_NAME)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(std::str::from_utf8(&body)
        .expect("utf8")
        .contains("persys_agent_http_requests_total"));
}

#[tokio::test]
async fn unknown_routes_get_the_json_404() {
    let (app, _rt) = app();
    let (status, body) = call(
        &app,
        request(Method::GET, "/nope", None, Some(SCHEDULER_NAME)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let err: ApiError = serde_json::from_slice(&body).expect("json error");
    assert_eq!(err.code, "not_found");
}
