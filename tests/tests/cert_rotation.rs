//! Certificate rotation on real processes, Docker and mTLS: with certificates valid for
//! seconds, the agent, the scheduler and the gateway renew theirs before expiry without
//! a restart; heartbeats, reports and new calls go on over new connections, and a
//! connection opened before a renewal (a followed log) is not dropped.

use futures::StreamExt;
use persys_tests::{AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Node certificates live this long in this test.
const VALIDITY_SECS: u64 = 9;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_node_renews_its_short_lived_certificate_without_a_restart_or_a_dropped_stream() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        node_timeout_ms: Some(3000),
        // The scheduler's own certificate is as short-lived: both ends renew.
        scheduler_args: vec![
            "--node-cert-validity".into(),
            format!("{VALIDITY_SECS}s"),
            "--cert-validity".into(),
            format!("{VALIDITY_SECS}s"),
        ],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let cert_file = c.dir.path().join("agent-1").join("node.crt");
    let first = std::fs::read_to_string(&cert_file).expect("node certificate");
    let (_, first_expiry) = persys_certs::renew::validity_unix(&first).expect("parses");
    assert!(
        first_expiry - now_unix() <= VALIDITY_SECS as i64 + 1,
        "signed for --node-cert-validity"
    );

    let w = c
        .submit(json!({"image": TEST_IMAGE,
                       "command": "sh -c 'while true; do echo tick; sleep 0.5; done'"}))
        .await
        .expect("submit");
    let id = w["id"].as_str().expect("id").to_string();
    c.wait_status(&id, "Running", Duration::from_secs(30))
        .await
        .expect("running");
    // A followed log: one scheduler → agent connection, opened on the first certificate.
    let resp = api
        .client()
        .get(api.url(&format!("/workloads/{id}/logs?follow=true")))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();

    // Past the first certificate's expiry, twice over.
    let until = Instant::now() + Duration::from_secs(2 * VALIDITY_SECS + 2);
    let mut renewals = std::collections::BTreeSet::new();
    let mut ticks_after_expiry = 0;
    while Instant::now() < until {
        tokio::select! {
            chunk = body.next() => {
                let chunk = chunk.expect("the followed log went on").expect("no stream error");
                if now_unix() > first_expiry && String::from_utf8_lossy(&chunk).contains("tick") {
                    ticks_after_expiry += 1;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Ok(pem) = std::fs::read_to_string(&cert_file) {
            renewals.insert(pem);
        }
    }
    assert!(
        renewals.len() >= 3,
        "renewed at least twice in {}s: {} certificates seen",
        2 * VALIDITY_SECS + 2,
        renewals.len()
    );
    assert!(
        ticks_after_expiry > 0,
        "the stream opened before the renewal kept delivering after the first certificate expired"
    );
    let now_cert = std::fs::read_to_string(&cert_file).expect("node certificate");
    let (_, expiry) = persys_certs::renew::validity_unix(&now_cert).expect("parses");
    assert!(expiry > now_unix(), "the current certificate is valid");

    // The node kept heartbeating and reporting with its renewed certificate...
    let node_id = &c.node_ids()[0];
    let node = api
        .get_json(&format!("/nodes/{node_id}"))
        .await
        .expect("node");
    assert_eq!(node["status"], "Active", "{node}");
    assert!(
        c.all_logs().contains("scheduler certificate renewed"),
        "the scheduler renewed its own certificate"
    );
    // A new client of the scheduler (a new handshake, past its first certificate).
    let fresh = c.api().expect("api");
    fresh.get_json("/nodes").await.expect("a new connection");
    // ...and new work reaches it on new connections, both ways.
    let w2 = c
        .submit(json!({"image": TEST_IMAGE, "command": "sleep 3600"}))
        .await
        .expect("submit");
    c.wait_status(
        w2["id"].as_str().expect("id"),
        "Running",
        Duration::from_secs(30),
    )
    .await
    .expect("a workload runs after the renewals");
}

#[tokio::test]
async fn the_gateway_renews_its_certificates_without_a_restart_or_a_dropped_stream() {
    const GATEWAY_VALIDITY: u64 = 6;
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let started = Instant::now();
    c.start_gateway(&[], &["--cert-validity", &format!("{GATEWAY_VALIDITY}s")])
        .await
        .expect("gateway starts");
    let admin = c.gateway_admin().expect("admin");
    let (status, w) = admin
        .post(
            "/workloads",
            &json!({"image": TEST_IMAGE,
                    "command": "sh -c 'while true; do echo tick; sleep 0.5; done'"}),
        )
        .await
        .expect("create");
    assert_eq!(status, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_string();
    c.wait_status(&id, "Running", Duration::from_secs(30))
        .await
        .expect("running");
    // A followed log through the gateway: a user connection and an upstream one, both
    // on the first certificates.
    let resp = admin
        .client()
        .get(admin.url(&format!("/workloads/{id}/logs?follow=true")))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("logs");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let first_expired = started + Duration::from_secs(GATEWAY_VALIDITY + 1);
    let until = started + Duration::from_secs(2 * GATEWAY_VALIDITY + 2);
    let mut ticks_after_expiry = 0;
    while Instant::now() < until {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the followed log went on")
            .expect("not ended")
            .expect("no stream error");
        if Instant::now() > first_expired && String::from_utf8_lossy(&chunk).contains("tick") {
            ticks_after_expiry += 1;
        }
    }
    assert!(
        ticks_after_expiry > 0,
        "the stream opened before the renewal went on"
    );
    // A new client (a new handshake) after the first certificates expired: the gateway
    // serves a renewed certificate, and reaches the scheduler with a renewed one.
    let fresh = c.gateway_admin().expect("admin");
    let (status, list) = fresh.get("/workloads").await.expect("a new connection");
    assert_eq!(status, 200, "{list}");
    let logs = c.all_logs();
    assert!(
        logs.contains("certificates renewed"),
        "the gateway logged its renewal"
    );
}
