//! Forwarding over real mTLS to a stand-in scheduler: request ids, credentials,
//! streaming, bodies, failover, limits.

use crate::testutil::{app, dead_port, fake_scheduler, fake_scheduler_on, pki};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use persys_certs::PeerIdentity;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tower::ServiceExt;

/// Echoes what the scheduler received.
async fn echo(headers: HeaderMap) -> Json<serde_json::Value> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    Json(serde_json::json!({
        "requestId": h("x-request-id"),
        "authorization": h("authorization"),
        "forwardedProto": h("x-forwarded-proto"),
    }))
}

async fn echo_body(req: Request) -> impl IntoResponse {
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .expect("body");
    (StatusCode::CREATED, bytes)
}

fn admin_request(method: &str, uri: &str, body: Body) -> Request {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .expect("request");
    req.extensions_mut()
        .insert(PeerIdentity::new(persys_certs::Identity::admin()));
    req
}

async fn json(resp: axum::response::Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test]
async fn request_id_reaches_the_scheduler_and_returns_and_the_token_does_not() {
    let pki = pki();
    let (addr, _stop) =
        fake_scheduler(&pki.ca, Router::new().route("/workloads/{id}", get(echo))).await;
    let app = app(&pki, &[format!("https://127.0.0.1:{}", addr.port())], &[]).await;
    let router = crate::router(app);

    let mut req = admin_request("GET", "/workloads/w1", Body::empty());
    req.headers_mut()
        .insert("x-request-id", "rid-123".parse().expect("hv"));
    let resp = router.clone().oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-request-id"], "rid-123");
    let seen = json(resp).await;
    assert_eq!(seen["requestId"], "rid-123");
    assert_eq!(seen["forwardedProto"], "https");
    assert_eq!(seen["authorization"], serde_json::Value::Null);

    // Without one, the gateway makes one up and both sides see the same.
    let resp = router
        .oneshot(admin_request("GET", "/workloads/w1", Body::empty()))
        .await
        .expect("answer");
    let generated = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    assert_eq!(json(resp).await["requestId"], generated);
}

#[tokio::test]
async fn event_stream_passes_chunk_by_chunk() {
    let pki = pki();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
    let events = move || {
        let rx = rx.lock().expect("lock").take().expect("one subscriber");
        async move {
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(ReceiverStream::new(rx)),
            )
        }
    };
    let (addr, _stop) = fake_scheduler(&pki.ca, Router::new().route("/events", get(events))).await;
    let app = app(&pki, &[format!("https://127.0.0.1:{}", addr.port())], &[]).await;
    let resp = crate::router(app)
        .oneshot(admin_request("GET", "/events", Body::empty()))
        .await
        .expect("answer");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    for n in 1..=3 {
        let line = format!("event: workload\ndata: {n}\n\n");
        tx.send(Ok(line.clone())).await.expect("send");
        // The upstream stream is still open: each event must arrive on its own.
        let chunk = tokio::time::timeout(Duration::from_secs(2), body.next())
            .await
            .expect("event arrives before the stream ends")
            .expect("chunk")
            .expect("ok");
        assert_eq!(chunk, line.as_bytes());
    }
}

#[tokio::test]
async fn fails_over_to_the_next_scheduler_with_the_body_intact() {
    let pki = pki();
    let (addr, _stop) =
        fake_scheduler(&pki.ca, Router::new().route("/workloads", post(echo_body))).await;
    let dead = format!("https://127.0.0.1:{}", dead_port().await);
    let live = format!("https://127.0.0.1:{}", addr.port());
    let app = app(&pki, &[dead.clone(), live.clone()], &[]).await;
    let router = crate::router(app.clone());
    let payload = r#"{"image":"busybox:local","name":"web"}"#;
    let resp = router
        .oneshot(admin_request("POST", "/workloads", Body::from(payload)))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(bytes, payload.as_bytes());
    assert_eq!(app.upstreams.health(), vec![(dead, false), (live, true)]);
}

#[tokio::test]
async fn no_reachable_scheduler_is_503_json_after_the_wait() {
    let pki = pki();
    let dead = format!("https://127.0.0.1:{}", dead_port().await);
    let app = app(&pki, &[dead], &["--upstream-wait-ms", "600"]).await;
    let started = std::time::Instant::now();
    let resp = crate::router(app)
        .oneshot(admin_request("GET", "/nodes", Body::empty()))
        .await
        .expect("answer");
    let waited = started.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(json(resp).await["code"], "unavailable");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "waited {waited:?} for a scheduler"
    );
}

#[tokio::test]
async fn a_write_waits_for_a_scheduler_that_comes_back() {
    let pki = pki();
    let port = dead_port().await;
    let app = app(
        &pki,
        &[format!("https://127.0.0.1:{port}")],
        &["--upstream-wait-ms", "5000"],
    )
    .await;
    let ca = persys_certs::CertificateAuthority::from_pem(pki.ca.cert_pem(), &pki.ca.key_pem())
        .expect("ca");
    // The scheduler is restarting: it listens again after 700 ms.
    let back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        fake_scheduler_on(
            &ca,
            Router::new().route("/workloads", post(echo_body)),
            port,
        )
        .await
    });
    let resp = crate::router(app)
        .oneshot(admin_request(
            "POST",
            "/workloads",
            Body::from(r#"{"image":"busybox"}"#),
        ))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(&bytes[..], br#"{"image":"busybox"}"#);
    let (_, stop) = back.await.expect("scheduler");
    stop.cancel();
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let pki = pki();
    let (addr, _stop) =
        fake_scheduler(&pki.ca, Router::new().route("/workloads", post(echo_body))).await;
    let app = app(
        &pki,
        &[format!("https://127.0.0.1:{}", addr.port())],
        &["--max-body-bytes", "64"],
    )
    .await;
    let router = crate::router(app);
    let mut declared = admin_request("POST", "/workloads", Body::from(vec![b'x'; 100]));
    declared
        .headers_mut()
        .insert("content-length", "100".parse().expect("hv"));
    let resp = router.clone().oneshot(declared).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(resp).await["code"], "too_large");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'x'; 40]), Ok(vec![b'y'; 40])];
    let streamed = admin_request(
        "POST",
        "/workloads",
        Body::from_stream(futures::stream::iter(chunks)),
    );
    let resp = router.oneshot(streamed).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let pki = pki();
    let dead = format!("https://127.0.0.1:{}", dead_port().await);
    let router = crate::router(app(&pki, &[dead], &[]).await);
    let resp = router
        .clone()
        .oneshot(admin_request("GET", "/nope", Body::empty()))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().contains_key("x-request-id"));
    let resp = router
        .clone()
        .oneshot(admin_request("PATCH", "/workloads", Body::empty()))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().contains_key("allow"), "{:?}", resp.headers());
    assert_eq!(json(resp).await["code"], "method_not_allowed");
    // The agent-only scheduler routes are not reachable through the gateway.
    let resp = router
        .oneshot(admin_request("POST", "/nodes/heartbeat", Body::from("{}")))
        .await
        .expect("answer");
    assert!(resp.status().is_client_error());
    assert_ne!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn viewer_certificate_less_request_is_401_and_operator_cert_cannot_cordon() {
    let pki = pki();
    let dead = format!("https://127.0.0.1:{}", dead_port().await);
    let router = crate::router(app(&pki, &[dead], &[]).await);
    let anonymous = Request::builder()
        .uri("/workloads")
        .body(Body::empty())
        .expect("req");
    let resp = router.clone().oneshot(anonymous).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(json(resp).await["code"], "unauthenticated");

    let mut req = Request::builder()
        .method("POST")
        .uri("/nodes/node-1/cordon")
        .body(Body::empty())
        .expect("req");
    req.extensions_mut()
        .insert(PeerIdentity::new(persys_certs::Identity::user("alice")));
    let resp = router.oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(resp).await["code"], "forbidden");
}

#[tokio::test]
async fn placement_explanation_is_forwarded_to_the_scheduler() {
    let pki = pki();
    let (addr, _stop) = fake_scheduler(
        &pki.ca,
        Router::new().route(
            "/workloads/{id}/placement",
            get(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    Json(serde_json::json!({"workloadId": id, "nodes": []}))
                },
            ),
        ),
    )
    .await;
    let app = app(&pki, &[format!("https://127.0.0.1:{}", addr.port())], &[]).await;
    let resp = crate::router(app)
        .oneshot(admin_request(
            "GET",
            "/workloads/w1/placement",
            Body::empty(),
        ))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await["workloadId"], "w1");
}
