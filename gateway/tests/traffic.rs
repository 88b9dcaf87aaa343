//! Traffic through a real gateway: the GitHub webhook, log streaming, failover between
//! schedulers, readiness, rate limits, and draining on shutdown (in-process and the
//! real binary on SIGTERM).

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{client, eventually, scheduler, Etcd, Gateway, Pki, WEBHOOK_SECRET};

fn push_body(repo: &str, git_ref: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": git_ref, "before": "0000", "after": "abcd", "deleted": false,
        "repository": {"full_name": repo, "name": "web"}, "pusher": {"name": "dev"}
    }))
    .expect("json")
}

async fn deliver(
    c: &reqwest::Client,
    gw: &Gateway,
    event: &str,
    body: Vec<u8>,
    signature: Option<String>,
) -> (StatusCode, Value) {
    let mut req = c
        .post(gw.url("/webhooks/github"))
        .header("x-github-event", event)
        .header("x-github-delivery", "d-1")
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    let resp = req.send().await.expect("answer");
    let st = resp.status();
    (st, resp.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_push_redeploys_matching_workloads_and_bad_signatures_change_nothing() {
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(&pki, &etcd.endpoint, &[sched.url()], &[]).await;
    let c = client(&pki, None);
    let secret = WEBHOOK_SECRET.as_bytes();

    let body = push_body("acme/web", "refs/heads/main");
    let forged = persys_gateway::webhook::sign(b"wrong secret", &body);
    let (st, v) = deliver(&c, &gw, "push", body.clone(), Some(forged)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "unauthenticated");
    let (st, _) = deliver(&c, &gw, "push", body.clone(), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        sched.seen.redeployed.lock().expect("lock").is_empty(),
        "a refused delivery changed something"
    );

    let (st, v) = deliver(
        &c,
        &gw,
        "push",
        body.clone(),
        Some(persys_gateway::webhook::sign(secret, &body)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"event": "push", "repository": "acme/web", "branch": "main", "redeployed": ["w-main"]})
    );
    assert_eq!(*sched.seen.redeployed.lock().expect("lock"), ["w-main"]);

    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let (st, v) = deliver(
        &c,
        &gw,
        "ping",
        ping.clone(),
        Some(persys_gateway::webhook::sign(secret, &ping)),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({"ok": true, "zen": "Keep it logically awesome."}));

    let tag = push_body("acme/web", "refs/tags/v1");
    let (st, _) = deliver(
        &c,
        &gw,
        "push",
        tag.clone(),
        Some(persys_gateway::webhook::sign(secret, &tag)),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let issue = br#"{"action":"opened"}"#.to_vec();
    let (st, v) = deliver(
        &c,
        &gw,
        "issues",
        issue.clone(),
        Some(persys_gateway::webhook::sign(secret, &issue)),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(v["ignored"], true);
    assert_eq!(sched.seen.redeployed.lock().expect("lock").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_arrive_line_by_line() {
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    *sched.seen.log_lines.lock().expect("lock") = Some(rx);
    let gw = Gateway::start(&pki, &etcd.endpoint, &[sched.url()], &[]).await;
    let token = gw.admin_token().await;
    let c = client(&pki, None);
    let mut resp = c
        .get(gw.url("/workloads/w-main/logs?follow=true"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(1), resp.chunk())
        .await
        .expect("first line within a second")
        .expect("chunk")
        .expect("some");
    assert_eq!(first, "first line\n");
    tx.send("written later\n".to_string()).await.expect("send");
    let started = Instant::now();
    let later = tokio::time::timeout(Duration::from_secs(1), resp.chunk())
        .await
        .expect("later line within a second")
        .expect("chunk")
        .expect("some");
    assert_eq!(later, "written later\n");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_answering_when_the_first_scheduler_stops() {
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let first = scheduler::start(&pki.ca).await;
    let second = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(&pki, &etcd.endpoint, &[first.url(), second.url()], &[]).await;
    let token = gw.admin_token().await;
    let c = client(&pki, None);
    let get = || async {
        c.get(gw.url("/workloads/w-main"))
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status())
    };
    assert_eq!(get().await.expect("answer"), StatusCode::OK);
    assert_eq!(
        c.get(gw.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        StatusCode::OK
    );
    let before = first.seen.request_ids.lock().expect("lock").len();
    assert!(before > 0, "the first scheduler is preferred");

    first.shut_down().await;
    for _ in 0..20 {
        assert_eq!(get().await.expect("answer"), StatusCode::OK);
    }
    assert!(second.seen.request_ids.lock().expect("lock").len() >= 20);
    let metrics = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("persys_gateway_upstream_failovers_total"),
        "{metrics}"
    );

    second.stop.cancel();
    let down = eventually(Duration::from_secs(5), || async {
        c.get(gw.url("/readyz"))
            .send()
            .await
            .ok()
            .map(|r| r.status())
            == Some(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    assert!(down, "readyz stays 200 with no scheduler");
    assert_eq!(
        get().await.expect("answer"),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(
        &pki,
        &etcd.endpoint,
        &[sched.url()],
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "3"],
    )
    .await;
    let token = gw.admin_token().await;
    let c = client(&pki, None);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let resp = c
            .get(gw.url("/workloads"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answer");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp.headers().get("retry-after").cloned();
            let v: Value = resp.json().await.expect("json");
            assert_eq!(v["code"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(retry_after.expect("retry-after"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(&pki, &etcd.endpoint, &[sched.url()], &[]).await;
    let token = gw.admin_token().await;
    let c = client(&pki, None);
    // GET /nodes takes 600 ms at the stand-in.
    let in_flight = tokio::spawn({
        let (c, url, token) = (c.clone(), gw.url("/nodes"), token.clone());
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.shutdown.cancel();
    let healthz = gw.url("/healthz");
    assert_eq!(
        in_flight.await.expect("join").expect("answer"),
        StatusCode::OK
    );
    tokio::time::timeout(Duration::from_secs(5), gw.done)
        .await
        .expect("stops")
        .expect("join")
        .expect("clean stop");
    assert!(client(&pki, None).get(healthz).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exits_zero_on_sigterm() {
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let port = support::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_persys-gateway"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--scheduler-data-dir")
        .arg(pki.dir.path())
        .args([
            "--etcd-endpoints",
            &etcd.endpoint,
            "--scheduler-url",
            &sched.url(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn gateway");
    let c = client(&pki, None);
    let url = format!("https://localhost:{port}/readyz");
    let ready = eventually(Duration::from_secs(15), || async {
        c.get(&url).send().await.ok().map(|r| r.status()) == Some(StatusCode::OK)
    })
    .await;
    assert!(ready, "gateway binary never became ready");
    let spec = c
        .get(format!("https://localhost:{port}/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json::<Value>()
        .await
        .expect("json");
    assert!(spec["paths"]["/workloads"].is_object());
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}
