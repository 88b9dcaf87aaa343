//! Drain, redeploy and the retirement of old copies, against fake agents served over
//! real mTLS and a real etcd. One call log is shared by all agents so that the order of
//! calls across nodes can be asserted (make before break, break before make).

use crate::api::router;
use crate::assert_eventually;
use crate::testutil::TestApp;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use http_body_util::BodyExt;
use persys_proto::{
    container_name, ContainerState, RetiringCopy, RunRequest, Workload, WorkloadStatus,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// Calls of every fake agent, in order: `run <node> <id> <generation>`,
/// `remove <node> <key>`, `stop <node> <key>`.
#[derive(Default)]
struct Calls(Mutex<Vec<String>>);

impl Calls {
    fn push(&self, s: String) {
        self.0.lock().expect("lock").push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
    fn position(&self, call: &str) -> Option<usize> {
        self.all().iter().position(|c| c == call)
    }
}

/// One fake agent: what it answers to a run, and what it lists.
struct Agent {
    node: String,
    calls: Arc<Calls>,
    run_answer: WorkloadStatus,
    listed: Mutex<Vec<ContainerState>>,
}

fn state(id: &str, generation: u64, status: WorkloadStatus) -> ContainerState {
    ContainerState {
        workload_id: id.into(),
        generation,
        container_id: Some(format!("c-{id}-{generation}")),
        status,
        exit_code: None,
        reason: None,
        restart_count: 0,
        observed_at: Utc::now(),
        project: None,
        health: None,
        health_output: None,
    }
}

async fn run(State(a): State<Arc<Agent>>, Json(req): Json<RunRequest>) -> Json<ContainerState> {
    a.calls.push(format!(
        "run {} {} {}",
        a.node, req.workload_id, req.generation
    ));
    Json(state(&req.workload_id, req.generation, a.run_answer))
}

async fn remove(State(a): State<Arc<Agent>>, Path(key): Path<String>) -> Json<Value> {
    a.calls.push(format!("remove {} {key}", a.node));
    Json(json!({}))
}

async fn stop(State(a): State<Arc<Agent>>, Path(key): Path<String>) -> Json<ContainerState> {
    a.calls.push(format!("stop {} {key}", a.node));
    Json(state(&key, 0, WorkloadStatus::Stopped))
}

async fn list(State(a): State<Arc<Agent>>) -> Json<Vec<ContainerState>> {
    Json(a.listed.lock().expect("lock").clone())
}

/// Serve a fake agent for `node` and register its node record.
async fn agent(
    app: &TestApp,
    node: &str,
    calls: &Arc<Calls>,
    run_answer: WorkloadStatus,
) -> Arc<Agent> {
    let a = Arc::new(Agent {
        node: node.into(),
        calls: calls.clone(),
        run_answer,
        listed: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/docker/run", post(run))
        .route("/docker/remove/{key}", post(remove))
        .route("/docker/stop/{key}", post(stop))
        .route("/docker/list", get(list))
        .with_state(a.clone());
    let cert = app
        .ctx
        .trust()
        .ca()
        .issue_dual(&persys_certs::Identity::node(node), &["127.0.0.1".into()])
        .expect("agent cert");
    let tls =
        persys_certs::server_config_mtls(app.ctx.trust().ca_pem(), &cert.cert_pem, &cert.key_pem)
            .expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(persys_certs::serve_tls(
        listener,
        tls,
        router,
        app.shutdown.clone(),
    ));
    app.add_node(node, 2.0, 1024, &[]).await;
    crate::control::update_node(&app.ctx, node, |n| {
        let mut next = n.clone();
        next.agent_port = port;
        Some(next)
    })
    .await
    .expect("port set");
    a
}

/// A scheduler without background loops but the dispatcher (placement passes are
/// driven by the test); nodes never time out.
async fn app() -> TestApp {
    let app = TestApp::start_with(|c| c.node_timeout_ms = 600_000).await;
    tokio::spawn(crate::dispatch::run(app.ctx.clone(), app.shutdown.clone()));
    app
}

async fn call(
    app: &TestApp,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    req.extensions_mut().insert(persys_certs::PeerIdentity::new(
        persys_certs::Identity::admin(),
    ));
    let resp = router(app.ctx.clone()).oneshot(req).await.expect("answer");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn submit(app: &TestApp, policy: &str) -> Workload {
    let (status, body) = call(
        app,
        Method::POST,
        "/workloads",
        Some(json!({"image": "busybox:local", "restartPolicy": policy})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    serde_json::from_value(body).expect("record")
}

fn record(app: &TestApp, id: &str) -> Workload {
    app.ctx.cache().workload(id).expect("record").value
}

#[tokio::test]
async fn drain_starts_a_service_elsewhere_before_removing_its_old_copy() {
    let app = app().await;
    let calls = Arc::new(Calls::default());
    agent(&app, "node-1", &calls, WorkloadStatus::Running).await;
    let w = submit(&app, "always").await;
    assert_eventually!(5, record(&app, &w.id).status == WorkloadStatus::Running);
    // The new node's container takes its time to start.
    agent(&app, "node-2", &calls, WorkloadStatus::ContainerCreating).await;

    let (status, node) = call(&app, Method::POST, "/nodes/node-1/drain", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (node["status"].as_str(), node["drained"].as_bool()),
        (Some("Draining"), Some(false))
    );
    assert_eq!(node["statusReason"], "draining: 1 workload to move");
    assert_eq!(app.ctx.placer().reconcile(&app.ctx).await.expect("pass"), 1);
    let moved = record(&app, &w.id);
    assert_eq!(
        (moved.node_id.as_deref(), moved.generation),
        (Some("node-2"), 2)
    );
    assert_eq!(
        moved.retiring,
        vec![RetiringCopy {
            node_id: "node-1".into(),
            generation: 1
        }]
    );
    let run_new = format!("run node-2 {} 2", w.id);
    let remove_old = format!("remove node-1 {}", container_name(&w.id, 1));
    assert_eventually!(5, calls.position(&run_new).is_some());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        calls.position(&remove_old),
        None,
        "old copy kept until the new runs"
    );
    let (_, node) = call(&app, Method::GET, "/nodes/node-1", None).await;
    assert_eq!(node["statusReason"], "draining: 1 old copy to remove");

    // The new node's agent reports its container running.
    crate::control::apply_state(
        &app.ctx,
        "node-2",
        &state(&w.id, 2, WorkloadStatus::Running),
    )
    .await
    .expect("applied");
    assert_eventually!(5, calls.position(&remove_old).is_some());
    assert_eventually!(5, record(&app, &w.id).retiring.is_empty());
    let (_, node) = call(&app, Method::GET, "/nodes/node-1", None).await;
    assert_eq!(
        (node["drained"].as_bool(), node["statusReason"].as_str()),
        (Some(true), Some("drained"))
    );
    let (_, list) = call(&app, Method::GET, "/nodes", None).await;
    assert_eq!(list["nodes"][0]["drained"], true);
}

#[tokio::test]
async fn drain_stops_a_job_before_its_new_copy_runs() {
    let app = app().await;
    let calls = Arc::new(Calls::default());
    agent(&app, "node-1", &calls, WorkloadStatus::Running).await;
    let w = submit(&app, "on-failure").await;
    assert_eventually!(5, record(&app, &w.id).status == WorkloadStatus::Running);
    agent(&app, "node-2", &calls, WorkloadStatus::Running).await;
    call(&app, Method::POST, "/nodes/node-1/drain", None).await;
    app.ctx.placer().reconcile(&app.ctx).await.expect("pass");
    assert_eventually!(
        5,
        record(&app, &w.id).status == WorkloadStatus::Running
            && record(&app, &w.id).retiring.is_empty()
    );
    let removed = calls
        .position(&format!("remove node-1 {}", container_name(&w.id, 1)))
        .expect("old copy removed");
    let ran = calls
        .position(&format!("run node-2 {} 2", w.id))
        .expect("new copy run");
    assert!(removed < ran, "{:?}", calls.all());
}

#[tokio::test]
async fn a_finished_job_stays_on_its_draining_node_which_counts_as_drained() {
    let app = app().await;
    let calls = Arc::new(Calls::default());
    agent(&app, "node-1", &calls, WorkloadStatus::Exited).await;
    let w = submit(&app, "no").await;
    assert_eventually!(5, record(&app, &w.id).status == WorkloadStatus::Exited);
    agent(&app, "node-2", &calls, WorkloadStatus::Running).await;
    let (_, node) = call(&app, Method::POST, "/nodes/node-1/drain", None).await;
    assert_eq!(node["drained"], true);
    assert_eq!(app.ctx.placer().reconcile(&app.ctx).await.expect("pass"), 0);
    assert_eq!(record(&app, &w.id).node_id.as_deref(), Some("node-1"));
}

#[tokio::test]
async fn redeploy_replaces_the_container_on_its_node_or_moves_it() {
    let app = app().await;
    let calls = Arc::new(Calls::default());
    agent(&app, "node-1", &calls, WorkloadStatus::Running).await;
    let w = submit(&app, "always").await;
    assert_eventually!(5, record(&app, &w.id).status == WorkloadStatus::Running);

    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/workloads/{}/redeploy", w.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["generation"].as_u64(),
            body["nodeId"].as_str(),
            body["status"].as_str()
        ),
        (Some(2), Some("node-1"), Some("Scheduled"))
    );
    assert_eventually!(
        5,
        calls.position(&format!("run node-1 {} 2", w.id)).is_some()
    );
    assert_eventually!(5, record(&app, &w.id).status == WorkloadStatus::Running);

    // Its node no longer accepts it: the redeploy moves it, old copy retired after.
    call(&app, Method::POST, "/nodes/node-1/cordon", None).await;
    agent(&app, "node-2", &calls, WorkloadStatus::Running).await;
    let (_, body) = call(
        &app,
        Method::POST,
        &format!("/workloads/{}/redeploy", w.id),
        None,
    )
    .await;
    assert_eq!(
        (body["generation"].as_u64(), body["nodeId"].as_str()),
        (Some(3), Some("node-2"))
    );
    assert_eventually!(
        5,
        calls
            .position(&format!("remove node-1 {}", container_name(&w.id, 2)))
            .is_some()
    );
    assert_eventually!(5, record(&app, &w.id).retiring.is_empty());

    let (status, body) = call(&app, Method::POST, "/workloads/nope/redeploy", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn the_backstop_leaves_a_retiring_copy_to_dispatch_and_removes_it_once_forgotten() {
    let app = TestApp::start_with(|c| c.node_timeout_ms = 600_000).await;
    let calls = Arc::new(Calls::default());
    let old = agent(&app, "node-1", &calls, WorkloadStatus::Running).await;
    let w = submit(&app, "always").await;
    let copy = RetiringCopy {
        node_id: "node-1".into(),
        generation: 1,
    };
    // Moved to node-2 (no dispatcher runs here), its old copy still on node-1.
    app.add_node("node-2", 2.0, 1024, &[]).await;
    crate::control::update_workload(&app.ctx, &w.id, |cur| {
        let mut next = cur.clone();
        next.node_id = Some("node-2".into());
        next.generation = 2;
        next.retiring = vec![copy.clone()];
        Some(next)
    })
    .await
    .expect("moved");
    *old.listed.lock().expect("lock") = vec![state(&w.id, 1, WorkloadStatus::Running)];
    let node_1 = app.ctx.cache().node("node-1").expect("node").value;
    crate::reconcile::reconcile_node(&app.ctx, &node_1)
        .await
        .expect("reconciled");
    assert!(calls.all().is_empty(), "{:?}", calls.all());
    crate::control::update_workload(&app.ctx, &w.id, |cur| {
        let mut next = cur.clone();
        next.retiring.clear();
        Some(next)
    })
    .await
    .expect("forgotten");
    crate::reconcile::reconcile_node(&app.ctx, &node_1)
        .await
        .expect("reconciled");
    assert_eq!(calls.all(), vec![format!("remove node-1 c-{}-1", w.id)]);
}

#[tokio::test]
async fn a_replica_moved_off_a_draining_node_goes_where_none_of_its_service_runs() {
    let app = TestApp::start_with(|c| c.node_timeout_ms = 600_000).await;
    // node-4 is small: by room alone ("spread" strategy) the move would go to node-2
    // or node-3, next to another replica of the service.
    for id in ["node-1", "node-2", "node-3"] {
        app.add_node(id, 4.0, 4096, &[]).await;
    }
    app.add_node("node-4", 1.0, 4096, &[]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut spec = persys_proto::WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        spec.name = format!("web-{i}");
        spec.resources.cpu = 250;
        spec.labels
            .insert(persys_proto::service::SERVICE_LABEL.into(), "web".into());
        let mut w = Workload::new(uuid::Uuid::new_v4().to_string(), spec, Utc::now());
        w.service_id = Some("web".into());
        w.service_revision = Some(1);
        w.replica = Some(i);
        let stored = app.ctx.placer().submit(&app.ctx, w).await.expect("stored");
        ids.push(stored.id);
    }
    let nodes = |app: &TestApp| -> Vec<String> {
        let mut v: Vec<String> = ids
            .iter()
            .filter_map(|id| record(app, id).node_id)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        nodes(&app),
        ["node-1", "node-2", "node-3"],
        "spread at creation"
    );
    let on_1 = ids
        .iter()
        .find(|id| record(&app, id).node_id.as_deref() == Some("node-1"))
        .expect("a replica on node-1")
        .clone();
    let (status, _) = call(&app, Method::POST, "/nodes/node-1/drain", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.ctx.placer().reconcile(&app.ctx).await.expect("pass"), 1);
    assert_eq!(
        record(&app, &on_1).node_id.as_deref(),
        Some("node-4"),
        "moved where no replica of web runs"
    );
    assert_eq!(nodes(&app), ["node-2", "node-3", "node-4"]);
}
