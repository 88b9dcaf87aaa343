//! The whole agent (`persys_agent::run`) against a minimal fake scheduler over real
//! TLS: join with a token and CSR, heartbeats and status pushes with the node
//! certificate, the mTLS API open only to the scheduler, graceful shutdown.

mod common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Json, Router};
use common::{ensure_image, unique, Cleanup};
use persys_agent::Config;
use persys_certs::{CertificateAuthority, JoinToken, PeerIdentity};
use persys_proto::{
    ContainerState, HeartbeatResponse, NodeHeartbeat, RegisterRequest, RegisterResponse,
    StatusReport, WorkloadStatus,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen {
    registrations: Vec<RegisterRequest>,
    heartbeats: Vec<(String, NodeHeartbeat)>,
    reports: Vec<(String, String, StatusReport)>,
}

struct FakeScheduler {
    ca: Arc<CertificateAuthority>,
    token: JoinToken,
    seen: Arc<Mutex<Seen>>,
    forget_node: Arc<AtomicBool>,
    bootstrap_url: String,
    api_url: String,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct Shared {
    ca: Arc<CertificateAuthority>,
    token: String,
    seen: Arc<Mutex<Seen>>,
    /// Answer the next heartbeat with `reregister: true`.
    forget_node: Arc<AtomicBool>,
}

async fn register(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> Result<Json<RegisterResponse>, (StatusCode, Json<serde_json::Value>)> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {}", s.token) {
        let body = serde_json::json!({"error": "invalid join token", "code": "unauthenticated", "requestId": ""});
        return Err((StatusCode::UNAUTHORIZED, Json(body)));
    }
    let node_id = req.node_id.clone().unwrap_or_default();
    let cert =
        s.ca.sign_csr(
            &req.csr,
            &node_id,
            &[req.ip_address.clone(), req.hostname.clone()],
        )
        .expect("csr signs");
    s.seen.lock().expect("lock").registrations.push(req);
    Ok(Json(RegisterResponse {
        node_id,
        certificate: cert,
        ca_certificate: s.ca.cert_pem().to_string(),
        domain_name: "n.cluster.local.dev".into(),
        heartbeat_interval_ms: 200,
    }))
}

async fn heartbeat(
    State(s): State<Shared>,
    Extension(peer): Extension<PeerIdentity>,
    Json(beat): Json<NodeHeartbeat>,
) -> Json<HeartbeatResponse> {
    s.seen
        .lock()
        .expect("lock")
        .heartbeats
        .push((peer.common_name, beat));
    Json(HeartbeatResponse {
        reregister: s.forget_node.swap(false, Ordering::SeqCst),
    })
}

async fn status(
    State(s): State<Shared>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Json(report): Json<StatusReport>,
) -> StatusCode {
    s.seen
        .lock()
        .expect("lock")
        .reports
        .push((peer.common_name, id, report));
    StatusCode::NO_CONTENT
}

impl FakeScheduler {
    async fn start() -> Self {
        common::logs();
        let ca = Arc::new(CertificateAuthority::generate("test-ca").expect("ca"));
        let token = JoinToken::generate(&ca.fingerprint());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let forget_node = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            ca: ca.clone(),
            token: token.to_string(),
            seen: seen.clone(),
            forget_node: forget_node.clone(),
        };
        let server = ca
            .issue_server(
                "persys-scheduler",
                &["127.0.0.1".into(), "localhost".into()],
            )
            .expect("server cert");
        let shutdown = CancellationToken::new();

        let boot = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bootstrap_url = format!("https://{}", boot.local_addr().expect("addr"));
        let boot_tls =
            persys_certs::server_config(&server.cert_pem, &server.key_pem, Some(ca.cert_pem()))
                .expect("tls");
        let boot_app = Router::new()
            .route("/nodes/register", post(register))
            .with_state(shared.clone());
        tokio::spawn(persys_certs::serve_tls(
            boot,
            boot_tls,
            boot_app,
            shutdown.clone(),
        ));

        let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api_url = format!("https://{}", api.local_addr().expect("addr"));
        let api_tls =
            persys_certs::server_config_mtls(ca.cert_pem(), &server.cert_pem, &server.key_pem)
                .expect("tls");
        let api_app = Router::new()
            .route("/nodes/heartbeat", post(heartbeat))
            .route("/nodes/{id}/status", post(status))
            .with_state(shared);
        tokio::spawn(persys_certs::serve_tls(
            api,
            api_tls,
            api_app,
            shutdown.clone(),
        ));
        Self {
            ca,
            token,
            seen,
            forget_node,
            bootstrap_url,
            api_url,
            shutdown,
        }
    }

    fn config(&self, node: &str, data_dir: &std::path::Path, token: &str) -> Config {
        Config {
            scheduler_url: self.api_url.clone(),
            bootstrap_url: self.bootstrap_url.clone(),
            join_token: Some(token.to_string()),
            node_id: Some(node.to_string()),
            data_dir: data_dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            advertise_address: None,
            labels: [("zone".to_string(), "a".to_string())].into(),
            cpu: Some(2.0),
            memory_mb: Some(2048),
            docker_host: None,
            stop_timeout_secs: 1,
            full_report_interval_ms: 30_000,
        }
    }

    /// A client of the agent API with a certificate of `common_name`.
    fn client(&self, common_name: &str) -> reqwest::Client {
        let cert = self.ca.issue_client(common_name).expect("client cert");
        let tls =
            persys_certs::client_config(self.ca.cert_pem(), Some((&cert.cert_pem, &cert.key_pem)))
                .expect("tls");
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("client")
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().expect("lock"))
    }
}

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_agent_joins_heartbeats_serves_the_scheduler_only_and_shuts_down_cleanly() {
    ensure_image();
    let node = unique("t-agent");
    let _cleanup = Cleanup(node.clone());
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(persys_agent::run(
        sched.config(&node, dir.path(), &sched.token.to_string()),
        shutdown.clone(),
    ));

    let reg = eventually("registration", || {
        sched.seen(|s| s.registrations.first().cloned())
    })
    .await;
    assert_eq!(reg.node_id.as_deref(), Some(node.as_str()));
    assert_eq!((reg.total_cpu, reg.total_memory), (2.0, 2048));
    assert_eq!(reg.labels["zone"], "a");
    assert_eq!(reg.ip_address, "127.0.0.1");
    assert!(reg.csr.contains("CERTIFICATE REQUEST"));
    for f in ["node.key", "node.crt", "ca.crt", "node-id"] {
        eventually(f, || dir.path().join(f).exists().then_some(())).await;
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("node.key"))
            .expect("meta")
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let (cn, beat) = eventually("a heartbeat", || {
        sched.seen(|s| s.heartbeats.first().cloned())
    })
    .await;
    assert_eq!(cn, node, "heartbeats use the node certificate");
    assert_eq!((beat.available_cpu, beat.available_memory), (2.0, 2048));
    eventually("the startup full report", || {
        sched.seen(|s| s.reports.iter().any(|(_, _, r)| r.full).then_some(()))
    })
    .await;

    let agent_url = format!("https://127.0.0.1:{}", reg.agent_port);
    let scheduler = sched.client("persys-scheduler");
    let workload = unique("w");
    let body = serde_json::json!({
        "workloadId": workload, "image": "busybox:local", "name": workload, "displayName": "e2e",
        "command": "echo from-agent; sleep 30", "generation": 1, "resources": {"cpu": 500, "memory": 64}
    });
    let resp = scheduler
        .post(format!("{agent_url}/docker/run"))
        .json(&body)
        .send()
        .await
        .expect("run call");
    assert_eq!(resp.status(), 200);
    let state: ContainerState = resp.json().await.expect("state");
    assert_eq!(state.status, WorkloadStatus::Running);

    let (cn, id) = eventually("a pushed Running state", || {
        sched.seen(|s| {
            s.reports.iter().find_map(|(cn, id, r)| {
                r.containers
                    .iter()
                    .any(|c| c.workload_id == workload && c.status == WorkloadStatus::Running)
                    .then(|| (cn.clone(), id.clone()))
            })
        })
    })
    .await;
    assert_eq!((cn.as_str(), id.as_str()), (node.as_str(), node.as_str()));
    eventually("a heartbeat net of the container's limits", || {
        sched.seen(|s| {
            s.heartbeats
                .iter()
                .any(|(_, b)| b.available_cpu == 1.5 && b.available_memory == 1984)
                .then_some(())
        })
    })
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scheduler
            .get(format!("{agent_url}/docker/logs/{workload}?tail=10"))
            .send()
            .await
            .expect("logs call")
            .text()
            .await
            .expect("text");
        if text.contains("from-agent") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logs never showed the line: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let other = sched.client("admin");
    let resp = other
        .get(format!("{agent_url}/docker/list"))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 403);
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(persys_certs::client_config(sched.ca.cert_pem(), None).expect("tls"))
        .build()
        .expect("client");
    assert!(
        anonymous
            .get(format!("{agent_url}/docker/list"))
            .send()
            .await
            .is_err(),
        "no client cert, no TLS session"
    );

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("stops in time")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
    let c = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", &workload])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&c.stdout).trim(),
        "true",
        "containers outlive the agent"
    );
    sched.shutdown.cancel();
}

#[tokio::test]
async fn a_token_whose_ca_hash_does_not_match_the_server_is_refused() {
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let other_ca = CertificateAuthority::generate("other").expect("ca");
    let wrong = JoinToken {
        ca_hash: other_ca.fingerprint(),
        secret: sched.token.secret.clone(),
    };
    let node = unique("t-untrusted");
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        persys_agent::run(
            sched.config(&node, dir.path(), &wrong.to_string()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("fails fast");
    let err = result.expect_err("refused");
    assert!(
        err.to_string().contains("not trusted under the CA hash"),
        "{err}"
    );
    assert!(sched.seen(|s| s.registrations.is_empty()));
    assert!(!dir.path().join("node.key").exists());
}

#[tokio::test]
async fn a_wrong_join_secret_is_reported_as_refused() {
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = JoinToken {
        ca_hash: sched.token.ca_hash.clone(),
        secret: "wrong".into(),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        persys_agent::run(
            sched.config(&unique("t-401"), dir.path(), &wrong.to_string()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("fails fast");
    let err = result.expect_err("refused");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn a_node_the_scheduler_forgot_registers_again_and_keeps_heartbeating() {
    ensure_image();
    let node = unique("t-rereg");
    let _cleanup = Cleanup(node.clone());
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(persys_agent::run(
        sched.config(&node, dir.path(), &sched.token.to_string()),
        shutdown.clone(),
    ));
    eventually("a first heartbeat", || {
        sched.seen(|s| (!s.heartbeats.is_empty()).then_some(()))
    })
    .await;
    sched.forget_node.store(true, Ordering::SeqCst);
    eventually("a second registration", || {
        sched.seen(|s| (s.registrations.len() == 2).then_some(()))
    })
    .await;
    let after = sched.seen(|s| s.heartbeats.len());
    eventually("heartbeats after re-registering", || {
        sched.seen(|s| (s.heartbeats.len() > after + 1).then_some(()))
    })
    .await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("stops")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
    sched.shutdown.cancel();
}
