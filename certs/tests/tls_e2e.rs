//! Real TLS over 127.0.0.1: mTLS admission, peer identity, pinned bootstrap trust,
//! and reqwest driving our rustls configs through `use_preconfigured_tls`.

use axum::routing::get;
use axum::{Extension, Router};
use persys_certs::{
    client_config, client_config_pinned, serve_tls, server_config, server_config_mtls,
    CertificateAuthority, Expected, Identity, IssuedCert, PeerIdentity, Role,
};

/// What a client of the scheduler expects on the other end.
fn scheduler() -> Expected {
    Expected::role(Role::Scheduler)
}
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

async fn whoami(peer: Option<Extension<PeerIdentity>>) -> String {
    peer.map_or_else(
        || "anonymous".to_owned(),
        |Extension(p)| p.identity.to_string(),
    )
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(config, Router::new().route("/whoami", get(whoami))).await
    }

    async fn start_with(config: Arc<rustls::ServerConfig>, router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_tls(listener, config, router, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/whoami", self.addr.port())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops promptly")
            .expect("join")
            .expect("serve_tls ok");
    }
}

fn http(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

fn server_cert(ca: &CertificateAuthority) -> IssuedCert {
    ca.issue_dual(
        &Identity::scheduler(),
        &["localhost".into(), "127.0.0.1".into(), "::1".into()],
    )
    .expect("server cert")
}

async fn mtls_server(ca: &CertificateAuthority) -> Server {
    let srv = server_cert(ca);
    Server::start(server_config_mtls(ca.cert_pem(), &srv.cert_pem, &srv.key_pem).expect("mtls"))
        .await
}

#[tokio::test]
async fn mtls_server_accepts_ca_client_and_handler_sees_its_common_name() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let server = mtls_server(&ca).await;
    let admin = ca.issue_client(&Identity::admin()).expect("admin");
    let client = http(
        client_config(
            ca.cert_pem(),
            Some((&admin.cert_pem, &admin.key_pem)),
            scheduler(),
        )
        .expect("config"),
    );
    for host in ["127.0.0.1", "localhost"] {
        let body = client
            .get(server.url(host))
            .send()
            .await
            .expect("request succeeds")
            .text()
            .await
            .expect("body");
        assert_eq!(body, "user/admin");
    }
    server.stop().await;
}

#[tokio::test]
async fn mtls_server_refuses_client_without_certificate() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let server = mtls_server(&ca).await;
    let client = http(client_config(ca.cert_pem(), None, scheduler()).expect("config"));
    let result = client.get(server.url("127.0.0.1")).send().await;
    assert!(result.is_err(), "anonymous client was served: {result:?}");
    server.stop().await;
}

#[tokio::test]
async fn mtls_server_refuses_client_certificate_of_another_ca() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let rogue = CertificateAuthority::generate("rogue").expect("rogue");
    let server = mtls_server(&ca).await;
    // The rogue cert claims the trusted identity: the CN alone must never admit it.
    let fake = rogue.issue_client(&Identity::scheduler()).expect("fake");
    let client = http(
        client_config(
            ca.cert_pem(),
            Some((&fake.cert_pem, &fake.key_pem)),
            scheduler(),
        )
        .expect("config"),
    );
    let result = client.get(server.url("127.0.0.1")).send().await;
    assert!(result.is_err(), "foreign client was served: {result:?}");
    server.stop().await;
}

#[tokio::test]
async fn client_refuses_server_of_another_ca() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let rogue = CertificateAuthority::generate("rogue").expect("rogue");
    let srv = server_cert(&rogue);
    let server =
        Server::start(server_config(&srv.cert_pem, &srv.key_pem, None).expect("tls")).await;
    let client = http(client_config(ca.cert_pem(), None, scheduler()).expect("config"));
    assert!(client.get(server.url("127.0.0.1")).send().await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn pinned_client_accepts_server_presenting_the_pinned_ca() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let srv = server_cert(&ca);
    let server = Server::start(
        server_config(&srv.cert_pem, &srv.key_pem, Some(ca.cert_pem())).expect("tls"),
    )
    .await;
    let client = http(client_config_pinned(&ca.fingerprint(), scheduler(), None).expect("pinned"));
    let body = client
        .get(server.url("127.0.0.1"))
        .send()
        .await
        .expect("pinned request succeeds")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "anonymous");
    server.stop().await;
}

#[tokio::test]
async fn pinned_client_refuses_wrong_hash_and_chain_without_ca() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let other = CertificateAuthority::generate("other").expect("other");
    let srv = server_cert(&ca);
    let with_ca = Server::start(
        server_config(&srv.cert_pem, &srv.key_pem, Some(ca.cert_pem())).expect("tls"),
    )
    .await;
    let wrong =
        http(client_config_pinned(&other.fingerprint(), scheduler(), None).expect("pinned"));
    assert!(wrong.get(with_ca.url("127.0.0.1")).send().await.is_err());
    with_ca.stop().await;

    // Right hash, but the server does not send the CA: nothing to verify against.
    let without_ca =
        Server::start(server_config(&srv.cert_pem, &srv.key_pem, None).expect("tls")).await;
    let right = http(client_config_pinned(&ca.fingerprint(), scheduler(), None).expect("pinned"));
    assert!(right.get(without_ca.url("127.0.0.1")).send().await.is_err());
    without_ca.stop().await;
}

#[tokio::test]
async fn pinned_client_refuses_leaf_not_signed_by_the_presented_ca() {
    // An attacker sends the real CA certificate (public) next to its own leaf.
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let rogue = CertificateAuthority::generate("rogue").expect("rogue");
    let srv = server_cert(&rogue);
    let server = Server::start(
        server_config(&srv.cert_pem, &srv.key_pem, Some(ca.cert_pem())).expect("tls"),
    )
    .await;
    let client = http(client_config_pinned(&ca.fingerprint(), scheduler(), None).expect("pinned"));
    assert!(client.get(server.url("127.0.0.1")).send().await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn pinned_client_checks_the_host_name() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let srv = ca
        .issue_server(&Identity::scheduler(), &["localhost".into()])
        .expect("srv");
    let server = Server::start(
        server_config(&srv.cert_pem, &srv.key_pem, Some(ca.cert_pem())).expect("tls"),
    )
    .await;
    let client = http(client_config_pinned(&ca.fingerprint(), scheduler(), None).expect("pinned"));
    assert!(client.get(server.url("localhost")).send().await.is_ok());
    assert!(client.get(server.url("127.0.0.1")).send().await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn csr_signed_certificate_works_as_mtls_client_and_server() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let (csr, key) =
        persys_certs::generate_csr("ignored", &["ignored.example".into()]).expect("csr");
    let cert = ca
        .sign_csr(&csr, &Identity::node("node-7"), &["127.0.0.1".into()])
        .expect("sign");
    // As a server (agent API) ...
    let server = Server::start(server_config_mtls(ca.cert_pem(), &cert, &key).expect("mtls")).await;
    // ... and as a client, with the identity the CA forced.
    let client = http(
        client_config(
            ca.cert_pem(),
            Some((&cert, &key)),
            Expected::Exactly(Identity::node("node-7")),
        )
        .expect("config"),
    );
    let body = client
        .get(server.url("127.0.0.1"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "node/node-7");
    server.stop().await;
}

#[tokio::test]
async fn http2_is_negotiated_when_the_client_offers_it() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let server = mtls_server(&ca).await;
    let admin = ca.issue_client(&Identity::admin()).expect("admin");
    let mut config = client_config(
        ca.cert_pem(),
        Some((&admin.cert_pem, &admin.key_pem)),
        scheduler(),
    )
    .expect("config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let response = http(config)
        .get(server.url("127.0.0.1"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.expect("body"), "user/admin");
    server.stop().await;
}

#[tokio::test]
async fn server_survives_garbage_and_stalled_handshakes() {
    use tokio::io::AsyncWriteExt;
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let server = mtls_server(&ca).await;
    // One client speaks plain HTTP, another connects and says nothing.
    let mut garbage = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let _stalled = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let admin = ca.issue_client(&Identity::admin()).expect("admin");
    let client = http(
        client_config(
            ca.cert_pem(),
            Some((&admin.cert_pem, &admin.key_pem)),
            scheduler(),
        )
        .expect("config"),
    );
    let body = client
        .get(server.url("127.0.0.1"))
        .send()
        .await
        .expect("still serving")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "user/admin");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_request_finish_and_stops_accepting() {
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let srv = server_cert(&ca);
    let entered = Arc::new(tokio::sync::Notify::new());
    let in_handler = entered.clone();
    let router = Router::new().route(
        "/whoami",
        get(move || {
            let in_handler = in_handler.clone();
            async move {
                in_handler.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }
        }),
    );
    let server = Server::start_with(
        server_config(&srv.cert_pem, &srv.key_pem, Some(ca.cert_pem())).expect("tls"),
        router,
    )
    .await;
    let client = http(client_config(ca.cert_pem(), None, scheduler()).expect("config"));
    let url = server.url("127.0.0.1");
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(url).send().await?.text().await }
    });
    entered.notified().await;
    let addr = server.addr;
    server.stop().await;
    let body = in_flight
        .await
        .expect("join")
        .expect("in-flight request completes");
    assert_eq!(body, "done");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_node_certificate_is_never_taken_for_the_scheduler_or_the_gateway() {
    // A node's certificate for the very address a client dials (row 6 of the audit).
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let node = ca
        .issue_dual(
            &Identity::node("node-1"),
            &["127.0.0.1".into(), "localhost".into()],
        )
        .expect("node cert");
    let fake = Server::start(
        server_config(&node.cert_pem, &node.key_pem, Some(ca.cert_pem())).expect("tls"),
    )
    .await;
    for expected in [
        scheduler(),
        Expected::role(Role::Gateway),
        Expected::Roles(vec![Role::Gateway, Role::Scheduler]),
        Expected::Exactly(Identity::node("node-2")),
    ] {
        let client = http(client_config(ca.cert_pem(), None, expected.clone()).expect("config"));
        assert!(
            client.get(fake.url("127.0.0.1")).send().await.is_err(),
            "a client expecting {expected} talked to node-1"
        );
    }
    // Nor by a joining agent that only pins the CA hash.
    let joining = http(client_config_pinned(&ca.fingerprint(), scheduler(), None).expect("pinned"));
    assert!(joining.get(fake.url("127.0.0.1")).send().await.is_err());
    // The node itself is reachable by who expects exactly it.
    let dispatcher = http(
        client_config(
            ca.cert_pem(),
            None,
            Expected::Exactly(Identity::node("node-1")),
        )
        .expect("config"),
    );
    assert!(dispatcher.get(fake.url("127.0.0.1")).send().await.is_ok());
    fake.stop().await;
}

#[tokio::test]
async fn a_client_certificate_without_a_persys_identity_is_anonymous() {
    // Signed by the cluster CA but with no identity URI (as an older release wrote them).
    let ca = CertificateAuthority::generate("cluster").expect("ca");
    let server = mtls_server(&ca).await;
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "persys-scheduler");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem()).expect("ca key");
    let ca_cert = rcgen::CertificateParams::from_ca_cert_pem(ca.cert_pem())
        .expect("ca params")
        .self_signed(&ca_key)
        .expect("ca cert");
    let leaf = params.signed_by(&key, &ca_cert, &ca_key).expect("leaf");
    let client = http(
        client_config(
            ca.cert_pem(),
            Some((&leaf.pem(), &key.serialize_pem())),
            scheduler(),
        )
        .expect("config"),
    );
    let body = client
        .get(server.url("127.0.0.1"))
        .send()
        .await
        .expect("the CA's certificate is admitted by TLS")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "anonymous", "but speaks for nobody");
    server.stop().await;
}
