//! The connection limits of `serve_tls_with` on a real TLS listener: idle and
//! half-open connections are closed, the cap refuses the connections beyond it, and a
//! streamed answer outlives the idle timeout.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use persys_certs::limits::{ConnectionLimits, ConnectionMetrics};
use persys_certs::{
    client_config, serve_tls_with, server_config, CertificateAuthority, ServeOptions,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Server {
    addr: SocketAddr,
    ca: CertificateAuthority,
    registry: prometheus::Registry,
    _stop: tokio_util::sync::DropGuard,
}

async fn start(limits: ConnectionLimits) -> Server {
    let ca = CertificateAuthority::generate("test-ca").expect("ca");
    let cert = ca
        .issue_dual(&persys_certs::Identity::scheduler(), &["127.0.0.1".into()])
        .expect("cert");
    let config = server_config(&cert.cert_pem, &cert.key_pem, None).expect("config");
    let router = Router::new().route("/ok", get(|| async { "ok" })).route(
        "/stream",
        get(|| async {
            // Five chunks, 300 ms apart: longer than the idle timeout of the tests.
            let chunks = futures::stream::unfold(0, |i| async move {
                if i == 5 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((Ok::<_, std::io::Error>(format!("chunk{i}\n")), i + 1))
            });
            Body::from_stream(chunks)
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let registry = prometheus::Registry::new();
    let metrics = ConnectionMetrics::new("test").expect("metrics");
    metrics.register(&registry).expect("register");
    let shutdown = CancellationToken::new();
    let options = ServeOptions {
        limits,
        metrics: metrics.listener("api"),
    };
    tokio::spawn(serve_tls_with(
        listener,
        config,
        router,
        shutdown.clone(),
        options,
    ));
    Server {
        addr,
        ca,
        registry,
        _stop: shutdown.drop_guard(),
    }
}

fn limits(idle_ms: u64, header_ms: u64, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections: max,
    }
}

fn closed_count(s: &Server, reason: &str) -> u64 {
    s.registry
        .gather()
        .iter()
        .filter(|f| f.get_name() == "test_connections_closed_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.get_value() == reason))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

async fn tls(s: &Server, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = client_config(
        s.ca.cert_pem(),
        None,
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
    )
    .expect("client config");
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

/// Reads until the server closes; how long that took.
async fn time_to_close<S: tokio::io::AsyncRead + Unpin>(mut s: S, started: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection not closed within 10 s"),
        }
    }
}

#[tokio::test]
async fn silent_connections_are_closed_by_the_handshake_header_and_idle_timeouts() {
    let s = start(limits(800, 400, 100)).await;
    let started = Instant::now();
    // No handshake at all.
    let raw = TcpStream::connect(s.addr).await.expect("connect");
    // A handshake, then nothing (no first request): the header-read timeout.
    let h1 = tls(&s, b"http/1.1").await;
    let h2 = tls(&s, b"h2").await;
    // One HTTP/2 request, then nothing: the idle timeout (an HTTP/1.1 connection
    // waiting for its next request is under the header-read timeout again).
    let io = hyper_util::rt::TokioIo::new(tls(&s, b"h2").await);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(format!("https://127.0.0.1:{}/ok", s.addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let answered = sender.send_request(request).await.expect("answer");
    assert_eq!(answered.status(), 200);
    drop(answered);
    let used_since = Instant::now();
    let used = async move {
        let _ = conn.await;
        used_since.elapsed()
    };
    let (raw, h1, h2, used) = tokio::join!(
        time_to_close(raw, started),
        time_to_close(h1, started),
        time_to_close(h2, started),
        used,
    );
    assert!(raw < Duration::from_secs(2), "handshake timeout: {raw:?}");
    assert!(h1 < Duration::from_millis(750), "header timeout: {h1:?}");
    assert!(h2 < Duration::from_millis(750), "header timeout: {h2:?}");
    assert!(
        used >= Duration::from_millis(750) && used < Duration::from_secs(3),
        "idle: {used:?}"
    );
    assert_eq!(closed_count(&s, "idle"), 1);
    assert_eq!(closed_count(&s, "handshake_timeout"), 1);
    assert_eq!(closed_count(&s, "header_timeout"), 2);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let s = start(limits(30_000, 30_000, 3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls(&s, b"http/1.1").await);
    }
    let started = Instant::now();
    let extra = TcpStream::connect(s.addr).await.expect("connect");
    let waited = time_to_close(extra, started).await;
    assert!(
        waited < Duration::from_millis(500),
        "refused at once: {waited:?}"
    );
    assert_eq!(closed_count(&s, "refused"), 1);
    // A freed slot is usable again.
    drop(held.pop());
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(
            client_config(
                s.ca.cert_pem(),
                None,
                persys_certs::Expected::role(persys_certs::Role::Scheduler),
            )
            .expect("tls"),
        )
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{}/ok", s.addr.port());
    let mut answered = false;
    for _ in 0..50 {
        if let Ok(r) = client.get(&url).send().await {
            answered = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a connection under the cap is served");
}

#[tokio::test]
async fn a_streamed_answer_outlives_the_idle_timeout_on_http1_and_http2() {
    let s = start(limits(200, 200, 100)).await;
    for h2 in [false, true] {
        let mut builder = reqwest::Client::builder().use_preconfigured_tls(
            client_config(
                s.ca.cert_pem(),
                None,
                persys_certs::Expected::role(persys_certs::Role::Scheduler),
            )
            .expect("tls"),
        );
        if h2 {
            builder = builder.http2_prior_knowledge();
        }
        let client = builder.build().expect("client");
        let url = format!("https://127.0.0.1:{}/stream", s.addr.port());
        let text = client.get(&url).send().await.expect("send").text().await;
        assert_eq!(
            text.expect("the whole stream"),
            "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n",
            "h2={h2}"
        );
    }
    assert_eq!(closed_count(&s, "idle"), 0, "no stream was cut");
}
