//! A stand-in for the scheduler's API on 8085: real mTLS, canned workloads, and a
//! record of what the gateway asked it to do.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use persys_certs::CertificateAuthority;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the stand-in saw.
#[derive(Default)]
pub struct Seen {
    /// Ids passed to `POST /workloads/{id}/redeploy`.
    pub redeployed: Mutex<Vec<String>>,
    /// `Authorization` headers received (must stay empty).
    pub authorizations: Mutex<Vec<String>>,
    /// Request ids received.
    pub request_ids: Mutex<Vec<String>>,
    /// Log lines to stream after the first, one per message.
    pub log_lines: Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
}

/// A running stand-in.
pub struct FakeScheduler {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    pub stop: CancellationToken,
    served: tokio::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

impl FakeScheduler {
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Stop it and wait until its server has closed every connection (a cancel alone
    /// lets a request already on a kept-alive connection still be served).
    pub async fn shut_down(&self) {
        self.stop.cancel();
        if let Some(task) = self.served.lock().await.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), task).await;
        }
    }
}

fn workload(id: &str, repo: &str, branch: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "name": id, "type": "docker-container", "image": "busybox:local",
        "envVars": {}, "ports": [], "volumes": [], "restartPolicy": "no",
        "resources": {"cpu": 0, "memory": 0},
        "labels": {"persys.io/repo": repo, "persys.io/branch": branch},
        "nodeSelector": {}, "nodeId": "node-1", "status": "Running",
        "desiredState": "Running", "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z", "generation": 1, "statusReason": null,
        "exitCode": null, "restartCount": 0, "containerId": "c1"
    })
}

fn all_workloads() -> Vec<serde_json::Value> {
    vec![
        workload("w-main", "acme/web", "main"),
        workload("w-dev", "acme/web", "dev"),
        workload("w-other", "acme/api", "main"),
    ]
}

fn note(seen: &Seen, headers: &HeaderMap) {
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        seen.authorizations
            .lock()
            .expect("lock")
            .push(a.to_string());
    }
    if let Some(r) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        seen.request_ids.lock().expect("lock").push(r.to_string());
    }
}

async fn list(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Vec<serde_json::Value>> {
    note(&seen, &headers);
    let label = q.get("label").and_then(|l| l.split_once('='));
    Json(
        all_workloads()
            .into_iter()
            .filter(|w| label.is_none_or(|(k, v)| w["labels"][k] == v))
            .collect(),
    )
}

async fn get_one(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> impl IntoResponse {
    note(&seen, &headers);
    match all_workloads().into_iter().find(|w| w["id"] == id) {
        Some(w) => Json(w).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("workload {id} not found"), "code": "not_found", "requestId": ""})),
        )
            .into_response(),
    }
}

async fn create(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> impl IntoResponse {
    note(&seen, &headers);
    (StatusCode::CREATED, Json(workload("w-new", "", "")))
}

async fn redeploy(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Json<serde_json::Value> {
    note(&seen, &headers);
    seen.redeployed.lock().expect("lock").push(id.clone());
    Json(workload(&id, "acme/web", "main"))
}

async fn node(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Json<serde_json::Value> {
    note(&seen, &headers);
    Json(serde_json::json!({"nodeId": id, "status": "Cordoned"}))
}

async fn slow(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> Json<serde_json::Value> {
    note(&seen, &headers);
    tokio::time::sleep(Duration::from_millis(600)).await;
    Json(serde_json::json!({"nodes": []}))
}

async fn logs(State(seen): State<Arc<Seen>>) -> impl IntoResponse {
    let rx = seen.log_lines.lock().expect("lock").take();
    let first =
        futures::stream::once(async { Ok::<_, std::io::Error>("first line\n".to_string()) });
    let rest = futures::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        let line = rx.recv().await?;
        Some((Ok(line), Some(rx)))
    });
    (
        [("content-type", "text/plain; charset=utf-8")],
        Body::from_stream(futures::StreamExt::chain(first, rest)),
    )
}

/// Starts the stand-in with a server certificate of `ca`, requiring client certificates.
pub async fn start(ca: &CertificateAuthority) -> FakeScheduler {
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/workloads", get(list).post(create))
        .route("/workloads/{id}", get(get_one))
        .route("/workloads/{id}/redeploy", post(redeploy))
        .route("/workloads/{id}/logs", get(logs))
        .route("/nodes", get(slow))
        .route("/nodes/{id}/cordon", post(node))
        .with_state(seen.clone());
    let srv = ca
        .issue_server(
            &persys_certs::Identity::scheduler(),
            &["localhost".into(), "127.0.0.1".into()],
        )
        .expect("server cert");
    let tls =
        persys_certs::server_config_mtls(ca.cert_pem(), &srv.cert_pem, &srv.key_pem).expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let served = tokio::spawn(persys_certs::serve_tls(listener, tls, router, stop.clone()));
    FakeScheduler {
        addr,
        seen,
        stop,
        served: tokio::sync::Mutex::new(Some(served)),
    }
}
