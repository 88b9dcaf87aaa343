//! Shared by the gateway's integration tests: a real etcd on free ports, a stand-in
//! scheduler over real mTLS, and a real gateway (in-process) in front of them.
#![allow(dead_code)]

pub mod scheduler;

use persys_certs::{CertificateAuthority, IssuedCert};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub use persys_testports::free_port;

/// A private etcd, killed on drop.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
}

impl Etcd {
    pub async fn start(dir: &Path) -> Self {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new("etcd")
            .args(["--name", "gw-test", "--data-dir"])
            .arg(dir.join("etcd"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg("--initial-cluster")
            .arg(format!("gw-test={peer}"))
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd (is /usr/bin/etcd installed?)");
        let etcd = Self {
            child,
            endpoint: client,
        };
        let ready = eventually(Duration::from_secs(20), || async {
            match etcd_client::Client::connect([etcd.endpoint.clone()], None).await {
                Ok(mut c) => c.status().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
        assert!(ready, "etcd did not start");
        etcd
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint.clone()], None)
            .await
            .expect("etcd client")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cluster PKI as the scheduler leaves it in its data dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_generate(dir.path()).expect("ca");
        Self { dir, ca }
    }

    /// A user's client certificate (`admin` is the administrator).
    pub fn client_cert(&self, user: &str) -> IssuedCert {
        self.ca
            .issue_client(&persys_certs::Identity::user(user))
            .expect("client cert")
    }

    /// A cluster component's certificate (e.g. a node's), no user credential.
    pub fn component_cert(&self, identity: &persys_certs::Identity) -> IssuedCert {
        self.ca.issue_client(identity).expect("component cert")
    }
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<Result<(), persys_gateway::StartError>>,
    pub admin_token_file: PathBuf,
}

pub const WEBHOOK_SECRET: &str = "s3cret-webhook";

impl Gateway {
    /// Starts a gateway (HTTPS on a free port) in front of `schedulers`.
    pub async fn start(pki: &Pki, etcd: &str, schedulers: &[String], extra: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let admin_token_file = pki.dir.path().join("gateway-admin-token");
        let mut args: Vec<String> = vec![
            "persys-gateway".into(),
            "--scheduler-data-dir".into(),
            pki.dir.path().to_string_lossy().into(),
            "--etcd-endpoints".into(),
            etcd.into(),
            "--scheduler-url".into(),
            schedulers.join(","),
            "--admin-token-file".into(),
            admin_token_file.to_string_lossy().into(),
            "--github-webhook-secret".into(),
            WEBHOOK_SECRET.into(),
            "--health-interval-ms".into(),
            "200".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = <persys_gateway::Config as clap::Parser>::parse_from(args);
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(persys_gateway::serve(config, listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            done,
            admin_token_file,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Waits for the bootstrap admin token and returns it.
    pub async fn admin_token(&self) -> String {
        let path = self.admin_token_file.clone();
        let ok = eventually(Duration::from_secs(15), || {
            let path = path.clone();
            async move { path.exists() }
        })
        .await;
        assert!(ok, "admin token file not written");
        std::fs::read_to_string(&path)
            .expect("read")
            .trim()
            .to_string()
    }
}

/// An HTTPS client trusting the cluster CA, with an optional client certificate.
pub fn client(pki: &Pki, cert: Option<&IssuedCert>) -> reqwest::Client {
    let tls = persys_certs::client_config(
        pki.ca.cert_pem(),
        cert.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
        persys_certs::Expected::role(persys_certs::Role::Gateway),
    )
    .expect("client tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .expect("client")
}
