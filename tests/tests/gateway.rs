//! Through the gateway: roles, tokens, streaming logs and events, the GitHub webhook.

use futures::StreamExt;
use persys_tests::{AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn cluster_with_gateway(extra: &[&str]) -> Cluster {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(&[], extra).await.expect("gateway starts");
    c
}

async fn create_token(admin: &Api, name: &str, role: &str) -> (String, String) {
    let (s, v) = admin
        .post("/tokens", &json!({"name": name, "role": role}))
        .await
        .expect("create token");
    assert_eq!(s, 201, "{v}");
    (
        v["id"].as_str().expect("id").to_string(),
        v["token"].as_str().expect("token").to_string(),
    )
}

#[tokio::test]
async fn each_role_may_do_what_it_is_allowed_and_gets_403_otherwise() {
    let c = cluster_with_gateway(&[]).await;
    let admin = c.gateway_admin().expect("admin");
    let node = c.agents[0].node_id.clone();
    let (_, viewer_tok) = create_token(&admin, "viewer-1", "viewer").await;
    let (op_id, op_tok) = create_token(&admin, "operator-1", "operator").await;
    let viewer = c.gateway_api(&viewer_tok).expect("viewer");
    let operator = c.gateway_api(&op_tok).expect("operator");
    let body = json!({"image": TEST_IMAGE, "command": "sleep 3600"});

    // viewer: reads only.
    assert_eq!(viewer.get("/workloads").await.expect("get").0, 200);
    assert_eq!(viewer.get("/nodes").await.expect("get").0, 200);
    let (s, v) = viewer.post("/workloads", &body).await.expect("post");
    assert_eq!(s, 403, "viewer may not schedule: {v}");
    assert_eq!(v["code"], "forbidden");
    assert!(v["requestId"].is_string());

    // operator: workloads, not nodes or tokens.
    let (s, w) = operator.post("/workloads", &body).await.expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id");
    assert_eq!(
        operator
            .post(&format!("/workloads/{id}/stop"), &json!({}))
            .await
            .expect("stop")
            .0,
        200
    );
    let (s, _) = operator
        .post(&format!("/nodes/{node}/cordon"), &json!({}))
        .await
        .expect("cordon");
    assert_eq!(s, 403, "operator may not cordon");
    let (s, _) = operator
        .post("/tokens", &json!({"name": "x", "role": "admin"}))
        .await
        .expect("tokens");
    assert_eq!(s, 403, "operator may not create tokens");

    // admin: everything.
    let (s, v) = admin
        .post(&format!("/nodes/{node}/cordon"), &json!({}))
        .await
        .expect("cordon");
    assert_eq!(s, 200, "{v}");
    let (s, v) = admin
        .post(&format!("/nodes/{node}/uncordon"), &json!({}))
        .await
        .expect("uncordon");
    assert_eq!(s, 200, "{v}");

    // No token, a wrong token and a revoked token: 401.
    let ca = c.scheduler_dir().join("ca.crt");
    let base = format!("https://127.0.0.1:{}", c.gateway.as_ref().expect("gw").port);
    let anon = Api::new(&base, &ca, None).expect("anon");
    let (s, v) = anon.get("/workloads").await.expect("get");
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["code"], "unauthenticated");
    let bogus = Api::with_token(&base, &ca, "persys_not-a-real-token").expect("bogus");
    assert_eq!(bogus.get("/workloads").await.expect("get").0, 401);
    assert_eq!(
        admin
            .delete(&format!("/tokens/{op_id}"))
            .await
            .expect("revoke")
            .0
            / 100,
        2
    );
    let mut revoked = false;
    for _ in 0..50 {
        if operator.get("/workloads").await.expect("get").0 == 401 {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(revoked, "a revoked token gets 401");

    // A token secret never appears in an API answer or a log line.
    let (_, list) = admin.get("/tokens").await.expect("list");
    let listed = list.to_string();
    let admin_tok = c.gateway.as_ref().expect("gw").admin_token.clone();
    let logs = c.all_logs();
    for secret in [&viewer_tok, &op_tok, &admin_tok] {
        assert!(
            !listed.contains(secret.as_str()),
            "GET /tokens leaks a secret"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "a log line contains a token"
        );
    }
    assert!(
        list["tokens"].as_array().is_some_and(|t| t.len() >= 2),
        "{list}"
    );
}

#[tokio::test]
async fn logs_follow_and_events_stream_through_the_gateway() {
    let c = cluster_with_gateway(&[]).await;
    let admin = c.gateway_admin().expect("admin");

    // Events: open the stream first, then schedule, and see Scheduled → Running.
    let events = admin
        .client()
        .get(admin.url("/events"))
        .send()
        .await
        .expect("events answer");
    assert_eq!(events.status(), 200);
    let mut events = events.bytes_stream();
    let (s, w) = admin
        .post(
            "/workloads",
            &json!({"image": TEST_IMAGE, "command": "while true; do echo tick; sleep 1; done"}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_string();
    let mut statuses: Vec<String> = Vec::new();
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !statuses.iter().any(|s| s == "Running") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.next())
            .await
            .expect("events within the deadline")
            .expect("stream open")
            .expect("chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find('\n') {
            let line = buf[..pos].to_string();
            buf.drain(..=pos);
            if let Some(data) = line.strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                    if v["workload"]["id"] == id.as_str() {
                        if let Some(st) = v["workload"]["status"].as_str() {
                            if statuses.last().map(String::as_str) != Some(st) {
                                statuses.push(st.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    let sched = statuses.iter().position(|s| s == "Scheduled");
    let run = statuses.iter().position(|s| s == "Running");
    assert!(
        matches!((sched, run), (Some(a), Some(b)) if a < b),
        "Scheduled then Running: {statuses:?}"
    );

    // Logs: with timestamps, each line arrives within a second of being written.
    let resp = admin
        .client()
        .get(admin.url(&format!(
            "/workloads/{id}/logs?follow=true&timestamps=true&tail=0"
        )))
        .send()
        .await
        .expect("logs answer");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut lines = 0;
    let mut buf = String::new();
    while lines < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a line within 5 s")
            .expect("open")
            .expect("chunk");
        let arrived = chrono::Utc::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find('\n') {
            let line = buf[..pos].to_string();
            buf.drain(..=pos);
            let ts = line.split_whitespace().next().unwrap_or_default();
            let written = chrono::DateTime::parse_from_rfc3339(ts)
                .unwrap_or_else(|e| panic!("timestamped line {line:?}: {e}"));
            let lag = arrived.signed_duration_since(written);
            assert!(
                lag < chrono::Duration::seconds(1),
                "line delivered {lag} after it was written: {line:?}"
            );
            assert!(line.contains("tick"));
            lines += 1;
        }
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn signed_github_push_redeploys_the_matching_workload_and_a_bad_signature_changes_nothing() {
    let secret = "webhook-test-secret";
    let c = cluster_with_gateway(&["--github-webhook-secret", secret]).await;
    let admin = c.gateway_admin().expect("admin");
    let (s, w) = admin
        .post(
            "/workloads",
            &json!({"image": TEST_IMAGE, "command": "sleep 3600",
                    "labels": {"persys.io/repo": "acme/app", "persys.io/branch": "main"}}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_string();
    let before = c
        .wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running");
    let (gen0, cid0) = (
        before["generation"].as_u64().expect("gen"),
        before["containerId"].clone(),
    );

    let push =
        json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}, "after": "abc"});
    let body = serde_json::to_vec(&push).expect("json");
    let hook = admin.url("/webhooks/github");
    let anon = reqwest::Client::builder()
        .use_preconfigured_tls(
            persys_certs::client_config(
                &std::fs::read_to_string(c.scheduler_dir().join("ca.crt")).expect("ca"),
                None,
                persys_certs::Expected::role(persys_certs::Role::Gateway),
            )
            .expect("tls"),
        )
        .build()
        .expect("client");

    // Wrong signature: 401, nothing changes.
    let r = anon
        .post(&hook)
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign("wrong-secret", &body))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    let r = anon
        .post(&hook)
        .header("X-GitHub-Event", "push")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401, "missing signature");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let same = admin
        .get_json(&format!("/workloads/{id}"))
        .await
        .expect("get");
    assert_eq!(same["generation"].as_u64(), Some(gen0));
    assert_eq!(same["containerId"], cid0, "container untouched");

    // Correct signature: redeployed with a new generation and a new container.
    let r = anon
        .post(&hook)
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(secret, &body))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["redeployed"], json!([id.clone()]), "{answer}");
    let after = c
        .wait_workload(
            &id,
            Duration::from_secs(20),
            "redeployed and Running",
            |w| w["status"] == "Running" && w["generation"].as_u64() > Some(gen0),
        )
        .await
        .expect("redeployed");
    assert_ne!(after["containerId"], cid0, "container replaced");
    assert_eq!(
        persys_tests::docker::running_workload_containers(&id).len(),
        1
    );

    // ping is answered.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let r = anon
        .post(&hook)
        .header("X-GitHub-Event", "ping")
        .header("X-Hub-Signature-256", sign(secret, &ping))
        .header("content-type", "application/json")
        .body(ping)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn openapi_document_is_served_and_valid_openapi_3() {
    let c = cluster_with_gateway(&[]).await;
    let doc = c
        .gateway_admin()
        .expect("admin")
        .get_json("/openapi.json")
        .await
        .expect("openapi");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/workloads",
        "/workloads/{id}",
        "/nodes",
        "/tokens",
        "/events",
        "/webhooks/github",
    ] {
        assert!(doc["paths"][path].is_object(), "documents {path}");
    }
}

#[tokio::test]
async fn gateway_with_two_schedulers_keeps_answering_when_the_first_is_killed() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        schedulers: 2,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    let ports = [c.replica_ports(0).0, c.replica_ports(1).0];
    c.start_gateway(&ports, &[]).await.expect("gateway starts");
    let admin = c.gateway_admin().expect("admin");
    let (s, w) = admin
        .post(
            "/workloads",
            &json!({"image": TEST_IMAGE, "command": "sleep 3600"}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_string();

    // The first scheduler configured dies (leader or not).
    c.kill_replica(0);
    let killed = Instant::now();
    // Reads keep answering through the gateway at once (the survivor's cache).
    let (s, v) = admin.get(&format!("/workloads/{id}")).await.expect("get");
    assert_eq!(s, 200, "read after the kill: {v}");
    // A write sent right after the kill waits (in the gateway and the survivor) until
    // the survivor leads, and is answered 201: no 503 while the leader changes, and no
    // client change.
    let (s, v) = admin
        .post(
            "/workloads",
            &json!({"image": TEST_IMAGE, "command": "sleep 3600"}),
        )
        .await
        .expect("answer");
    assert_eq!(s, 201, "the write rides through the failover: {v}");
    println!(
        "write sent at the kill answered 201 after {} ms",
        killed.elapsed().as_millis()
    );
    let new_id = v["id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = admin
            .get_json(&format!("/workloads/{new_id}"))
            .await
            .expect("get");
        if w["status"] == "Running" {
            break;
        }
        assert!(Instant::now() < deadline, "the new workload runs: {w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admin.get("/workloads").await.expect("list").0, 200);
}
