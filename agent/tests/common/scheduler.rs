//! A minimal fake scheduler over real TLS: the bootstrap port signs CSRs for a join
//! token, the API port records heartbeats and status pushes by client identity.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Json, Router};
use persys_agent::Config;
use persys_certs::{CertificateAuthority, JoinToken, PeerIdentity};
use persys_proto::{
    HeartbeatResponse, NodeHeartbeat, RegisterRequest, RegisterResponse, StatusReport,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Seen {
    pub registrations: Vec<RegisterRequest>,
    pub heartbeats: Vec<(String, NodeHeartbeat)>,
    pub reports: Vec<(String, String, StatusReport)>,
}

pub struct FakeScheduler {
    pub ca: Arc<CertificateAuthority>,
    pub token: JoinToken,
    pub seen: Arc<Mutex<Seen>>,
    pub forget_node: Arc<AtomicBool>,
    pub bootstrap_url: String,
    pub api_url: String,
    pub shutdown: CancellationToken,
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
            &persys_certs::Identity::node(&node_id),
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
        .push((peer.identity.name, beat));
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
        .push((peer.identity.name, id, report));
    StatusCode::NO_CONTENT
}

impl FakeScheduler {
    pub async fn start() -> Self {
        Self::start_as(persys_certs::Identity::scheduler()).await
    }

    /// A stand-in whose server certificate (of the right CA) is `identity`'s.
    pub async fn start_as(identity: persys_certs::Identity) -> Self {
        super::logs();
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
            .issue_server(&identity, &["127.0.0.1".into(), "localhost".into()])
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

    pub fn config(&self, node: &str, data_dir: &std::path::Path, token: &str) -> Config {
        Config {
            scheduler_urls: vec![self.api_url.clone()],
            bootstrap_urls: vec![self.bootstrap_url.clone()],
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
            usage_interval_ms: 0,
            listener: persys_certs::ListenerFlags::defaults(),
            runtime: persys_agent::RuntimeKind::Docker,
            fake: persys_agent::config::FakeFlags::default(),
            log: Default::default(),
        }
    }

    /// A client of the agent API with a certificate of `name`: the scheduler's
    /// (`persys-scheduler`), or else a node's.
    pub fn client(&self, name: &str) -> reqwest::Client {
        let identity = if name == persys_certs::identity::SCHEDULER_NAME {
            persys_certs::Identity::scheduler()
        } else {
            persys_certs::Identity::node(name)
        };
        let cert = self.ca.issue_client(&identity).expect("client cert");
        let tls = persys_certs::client_config(
            self.ca.cert_pem(),
            Some((&cert.cert_pem, &cert.key_pem)),
            persys_certs::Expected::role(persys_certs::Role::Node),
        )
        .expect("tls");
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("client")
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().expect("lock"))
    }
}

pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
