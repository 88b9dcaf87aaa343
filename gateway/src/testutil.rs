//! Test helpers: a cluster CA in a temporary scheduler data dir, a stand-in scheduler
//! over real mTLS on 127.0.0.1, and gateway state pointed at it.

use crate::{App, Config};
use axum::Router;
use persys_certs::CertificateAuthority;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A CA written where the gateway looks for it.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
}

pub fn pki() -> TestPki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_generate(dir.path()).expect("ca");
    TestPki { dir, ca }
}

/// Serves `router` like the scheduler does (client certificate of the CA required).
pub async fn fake_scheduler(
    ca: &CertificateAuthority,
    router: Router,
) -> (SocketAddr, CancellationToken) {
    fake_scheduler_on(ca, router, 0).await
}

/// [`fake_scheduler`] on a given loopback port (0: any).
pub async fn fake_scheduler_on(
    ca: &CertificateAuthority,
    router: Router,
    port: u16,
) -> (SocketAddr, CancellationToken) {
    let srv = ca
        .issue_server(
            &persys_certs::Identity::scheduler(),
            &["localhost".into(), "127.0.0.1".into()],
        )
        .expect("server cert");
    let config =
        persys_certs::server_config_mtls(ca.cert_pem(), &srv.cert_pem, &srv.key_pem).expect("tls");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(persys_certs::serve_tls(
        listener,
        config,
        router,
        stop.clone(),
    ));
    (addr, stop)
}

/// A port nothing listens on.
pub async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

/// Gateway state for `urls`; etcd is unreachable (tokens are not needed for
/// certificate-authenticated tests).
pub async fn app(pki: &TestPki, urls: &[String], extra: &[&str]) -> Arc<App> {
    let dir = pki.dir.path().to_string_lossy().to_string();
    let mut args = vec![
        "persys-gateway".to_string(),
        "--scheduler-data-dir".into(),
        dir,
        "--etcd-endpoints".into(),
        "http://127.0.0.1:1".into(),
        "--scheduler-url".into(),
        urls.join(","),
        "--request-timeout-ms".into(),
        "2000".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = <Config as clap::Parser>::parse_from(args);
    let tls = crate::pki::load(&config).expect("pki");
    App::new(
        &config,
        tls.upstream,
        tls.record_key,
        CancellationToken::new(),
    )
    .await
    .expect("app")
}
