//! Writes, registrations, heartbeats and status pushes sent to a follower reach the
//! leader; the forwarded identity is believed only from a replica.

use super::{admin, client, one_leader, replica, Replica};
use crate::testutil::{wait_until, Etcd};
use persys_proto::{keys, RegisterRequest, RegisterResponse, StatusReport, Workload};
use std::path::Path;

/// Register `node_id` through `via`'s bootstrap port; the node's (cert, key).
async fn register(dir: &Path, via: &Replica, node_id: &str) -> reqwest::Response {
    let token = std::fs::read_to_string(dir.join("join-token")).expect("token");
    let (csr, _key) = persys_certs::generate_csr(node_id, &["127.0.0.1".to_string()]).expect("csr");
    let body = RegisterRequest {
        node_id: Some(node_id.into()),
        csr,
        hostname: node_id.into(),
        ip_address: "127.0.0.1".into(),
        agent_port: 1,
        os_name: "linux".into(),
        kernel_version: "6".into(),
        total_cpu: 2.0,
        total_memory: 1024,
        labels: Default::default(),
    };
    let ca = std::fs::read_to_string(dir.join("ca.crt")).expect("ca");
    let tls = persys_certs::client_config(
        &ca,
        None,
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
    )
    .expect("tls");
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    http.post(format!("{}/nodes/register", via.bootstrap_url()))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .expect("answer")
}

/// Register and return a client presenting the node's new certificate.
async fn join(dir: &Path, via: &Replica, node_id: &str) -> reqwest::Client {
    let token = std::fs::read_to_string(dir.join("join-token")).expect("token");
    let (csr, key) = persys_certs::generate_csr(node_id, &["127.0.0.1".to_string()]).expect("csr");
    let ca = std::fs::read_to_string(dir.join("ca.crt")).expect("ca");
    let body = serde_json::json!({
        "nodeId": node_id, "csr": csr, "hostname": node_id, "ipAddress": "127.0.0.1",
        "agentPort": 1, "osName": "linux", "kernelVersion": "6", "totalCpu": 2.0,
        "totalMemory": 1024, "labels": {}
    });
    let tls = persys_certs::client_config(
        &ca,
        None,
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
    )
    .expect("tls");
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    let resp = http
        .post(format!("{}/nodes/register", via.bootstrap_url()))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let answer: RegisterResponse = resp.json().await.expect("json");
    client(dir, &answer.certificate, &key)
}

async fn two(etcd: &Etcd, dir: &Path) -> (Replica, Replica) {
    let a = replica(etcd, dir, None).await;
    let b = replica(etcd, dir, None).await;
    assert_eq!(one_leader(&[&a, &b], 3.0).await, 0);
    (a, b)
}

#[tokio::test]
async fn a_write_to_the_follower_is_forwarded_keeping_its_request_id() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (leader, follower) = two(&etcd, dir.path()).await;
    let http = admin(dir.path());
    let resp = http
        .post(format!("{}/workloads", follower.url()))
        .header("x-request-id", "forwarded-1")
        .json(&serde_json::json!({"name": "web", "image": "busybox:local"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-request-id"], "forwarded-1");
    let w: Workload = resp.json().await.expect("record");
    // Stored by the leader (the follower's own writes are fenced off) …
    let stored = etcd
        .store()
        .await
        .get::<Workload>(&keys::workload(&w.id))
        .await
        .expect("read");
    assert!(stored.is_some());
    assert!(leader.running.ctx.cache().workload(&w.id).is_some());
    // … and readable on the follower through its watch.
    assert!(
        wait_until(2.0, || follower
            .running
            .ctx
            .cache()
            .workload(&w.id)
            .is_some())
        .await
    );
    let got = http
        .get(format!("{}/workloads/{}", follower.url(), w.id))
        .send()
        .await
        .expect("answer");
    assert_eq!(got.status(), 200);
    // The original route too, with its 200.
    let resp = http
        .post(format!("{}/workloads/schedule", follower.url()))
        .json(&serde_json::json!({"image": "busybox:local"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    follower.stop().await;
    leader.stop().await;
}

#[tokio::test]
async fn agents_can_join_heartbeat_and_report_through_a_follower() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (leader, follower) = two(&etcd, dir.path()).await;
    let node = join(dir.path(), &follower, "node-1").await;
    assert!(leader.running.ctx.cache().node("node-1").is_some());

    let resp = node
        .post(format!("{}/nodes/heartbeat", follower.url()))
        .json(&serde_json::json!({"availableCpu": 1.5, "availableMemory": 512}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["reregister"], false);
    let beat = leader.running.ctx.liveness().get("node-1").expect("beat");
    assert!(beat.wall.is_some(), "the leader recorded the heartbeat");
    assert_eq!(beat.available_memory, 512);

    let report = StatusReport {
        containers: vec![],
        full: false,
    };
    let own = node
        .post(format!("{}/nodes/node-1/status", follower.url()))
        .json(&report)
        .send()
        .await
        .expect("answer");
    assert_eq!(own.status(), 204);
    let other = node
        .post(format!("{}/nodes/node-2/status", follower.url()))
        .json(&report)
        .send()
        .await
        .expect("answer");
    assert_eq!(other.status(), 403, "the node's identity travelled with it");
    follower.stop().await;
    leader.stop().await;
}

#[tokio::test]
async fn an_identity_header_is_believed_only_from_a_scheduler_replica() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (leader, follower) = two(&etcd, dir.path()).await;
    let node = join(dir.path(), &leader, "node-1").await;
    // The admin claims to be node-1: still the admin, who may not heartbeat.
    let resp = admin(dir.path())
        .post(format!("{}/nodes/heartbeat", leader.url()))
        .header("x-persys-peer", "spiffe://persys/node/node-1 ")
        .json(&serde_json::json!({"availableCpu": 1.0, "availableMemory": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 403);
    assert!(leader
        .running
        .ctx
        .liveness()
        .get("node-1")
        .is_some_and(|b| b.wall.is_none()));
    // node-1 claims to be node-2 through the follower: still node-1.
    let resp = node
        .post(format!("{}/nodes/node-2/status", follower.url()))
        .header("x-persys-peer", "spiffe://persys/node/node-2 ")
        .json(&StatusReport {
            containers: vec![],
            full: false,
        })
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 403);
    follower.stop().await;
    leader.stop().await;
}

#[tokio::test]
async fn component_names_cannot_be_registered_as_nodes() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), None).await;
    for id in ["persys-scheduler", "admin", "persys-gateway"] {
        let resp = register(dir.path(), &a, id).await;
        assert_eq!(resp.status(), 400, "{id}");
    }
    a.stop().await;
}
