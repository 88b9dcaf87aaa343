//! Dispatch and re-placement against a fake agent served over real mTLS.

use crate::assert_eventually;
use crate::testutil::TestApp;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use persys_proto::{
    keys, ContainerState, DesiredState, NodeStatus, RunRequest, Workload, WorkloadStatus,
};
use std::sync::{Arc, Mutex};

/// What the fake agent was asked, in order.
#[derive(Default)]
struct Calls(Mutex<Vec<String>>);

impl Calls {
    fn push(&self, s: String) {
        self.0.lock().expect("lock").push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

fn state(id: &str, generation: u64, status: WorkloadStatus) -> ContainerState {
    ContainerState {
        workload_id: id.into(),
        generation,
        container_id: Some(format!("c-{id}")),
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

/// Serve a fake agent for `node_id` (certificate of the app's CA) and register a node
/// record pointing at it.
async fn fake_agent(app: &TestApp, node_id: &str, calls: Arc<Calls>) {
    let router = Router::new()
        .route(
            "/docker/run",
            post(
                |State(c): State<Arc<Calls>>, Json(req): Json<RunRequest>| async move {
                    c.push(format!("run {} {}", req.workload_id, req.generation));
                    Json(state(
                        &req.workload_id,
                        req.generation,
                        WorkloadStatus::Running,
                    ))
                },
            ),
        )
        .route(
            "/docker/stop/{id}",
            post(
                |State(c): State<Arc<Calls>>, Path(id): Path<String>| async move {
                    c.push(format!("stop {id}"));
                    Json(state(&id, 1, WorkloadStatus::Stopped))
                },
            ),
        )
        .route(
            "/docker/remove/{id}",
            post(
                |State(c): State<Arc<Calls>>, Path(id): Path<String>| async move {
                    c.push(format!("remove {id}"));
                    Json(serde_json::json!({}))
                },
            ),
        )
        .route(
            "/docker/list",
            get(|| async { Json(Vec::<ContainerState>::new()) }),
        )
        .with_state(calls);
    let cert = app
        .ctx
        .trust()
        .ca()
        .issue_dual(
            &persys_certs::Identity::node(node_id),
            &["127.0.0.1".into()],
        )
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
    app.add_node(node_id, 2.0, 1024, &[]).await;
    crate::control::update_node(&app.ctx, node_id, |n| {
        let mut next = n.clone();
        next.agent_port = port;
        Some(next)
    })
    .await
    .expect("port set");
}

async fn submit(app: &TestApp, json: serde_json::Value) -> Workload {
    let spec = serde_json::from_value::<persys_proto::WorkloadRequest>(json)
        .expect("request")
        .validate()
        .expect("valid");
    let w = Workload::new(uuid::Uuid::new_v4().to_string(), spec, Utc::now());
    app.ctx.placer().submit(&app.ctx, w).await.expect("stored")
}

fn status_of(app: &TestApp, id: &str) -> Option<WorkloadStatus> {
    app.ctx.cache().workload(id).map(|w| w.value.status)
}

#[tokio::test]
async fn stored_workload_is_run_stopped_and_deleted_through_the_agent() {
    let app = TestApp::start().await;
    let calls = Arc::new(Calls::default());
    fake_agent(&app, "node-1", calls.clone()).await;
    tokio::spawn(crate::dispatch::run(app.ctx.clone(), app.shutdown.clone()));
    let w = submit(&app, serde_json::json!({"image": "busybox:local"})).await;
    assert_eventually!(5, status_of(&app, &w.id) == Some(WorkloadStatus::Running));
    assert_eq!(calls.all(), vec![format!("run {} 1", w.id)]);

    crate::control::update_workload(&app.ctx, &w.id, |cur| {
        let mut next = cur.clone();
        next.desired_state = DesiredState::Stopped;
        next.status = WorkloadStatus::Stopping;
        Some(next)
    })
    .await
    .expect("stop requested");
    assert_eventually!(5, status_of(&app, &w.id) == Some(WorkloadStatus::Stopped));

    crate::control::update_workload(&app.ctx, &w.id, |cur| {
        let mut next = cur.clone();
        next.desired_state = DesiredState::Deleted;
        Some(next)
    })
    .await
    .expect("delete requested");
    assert_eventually!(5, status_of(&app, &w.id).is_none());
    let stored = app
        .ctx
        .store()
        .get::<Workload>(&keys::workload(&w.id))
        .await
        .expect("get");
    assert!(stored.is_none());
    assert_eq!(calls.all().last(), Some(&format!("remove {}", w.id)));
}

#[tokio::test]
async fn unconfirmed_dispatch_is_finished_after_a_restart_exactly_once() {
    let app = TestApp::start().await;
    let calls = Arc::new(Calls::default());
    fake_agent(&app, "node-1", calls.clone()).await;
    // Stored (Scheduled) but never dispatched: as if the scheduler died right after.
    let w = submit(&app, serde_json::json!({"image": "busybox:local"})).await;
    assert_eq!(w.status, WorkloadStatus::Scheduled);
    tokio::spawn(crate::dispatch::run(app.ctx.clone(), app.shutdown.clone()));
    assert_eventually!(5, status_of(&app, &w.id) == Some(WorkloadStatus::Running));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(calls.all(), vec![format!("run {} 1", w.id)]);
}

#[tokio::test]
async fn workloads_of_a_lost_node_move_by_restart_policy() {
    let app = TestApp::start().await;
    app.add_node("a", 2.0, 1024, &[]).await;
    let keep = submit(
        &app,
        serde_json::json!({"image": "busybox:local", "restartPolicy": "no"}),
    )
    .await;
    let mover = submit(
        &app,
        serde_json::json!({"image": "busybox:local", "restartPolicy": "always"}),
    )
    .await;
    for w in [&keep, &mover] {
        crate::control::update_workload(&app.ctx, &w.id, |cur| {
            crate::status::mark_unknown(cur, "a", Utc::now())
        })
        .await
        .expect("unknown");
    }
    crate::control::set_node_status(&app.ctx, "a", NodeStatus::Inactive, None)
        .await
        .expect("inactive");
    app.add_node("b", 2.0, 1024, &[]).await;
    assert_eq!(
        app.ctx
            .placer()
            .reconcile(&app.ctx)
            .await
            .expect("reconcile"),
        1
    );
    let moved = app.ctx.cache().workload(&mover.id).expect("mover").value;
    assert_eq!(
        (moved.node_id.as_deref(), moved.generation, moved.status),
        (Some("b"), 2, WorkloadStatus::Scheduled)
    );
    let kept = app.ctx.cache().workload(&keep.id).expect("keep").value;
    assert_eq!(
        (kept.node_id.as_deref(), kept.status),
        (Some("a"), WorkloadStatus::Unknown)
    );
}
