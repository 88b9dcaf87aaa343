//! The whole agent (`persys_agent::run`) against a minimal fake scheduler over real
//! TLS: join with a token and CSR, heartbeats and status pushes with the node
//! certificate, the mTLS API open only to the scheduler, graceful shutdown.

mod common;

use common::scheduler::{eventually, FakeScheduler};
use common::{ensure_image, unique, Cleanup};
use persys_certs::{CertificateAuthority, JoinToken};
use persys_proto::{ContainerState, WorkloadStatus};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_agent_joins_heartbeats_serves_the_scheduler_only_and_shuts_down_cleanly() {
    ensure_image();
    let node = unique("t-agent");
    let _cleanup = Cleanup(node.clone());
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(persys_agent::run(
        sched.config(&node, dir.path(), &sched.token.to_string()),
        shutdown.clone(),
    ));

    let reg = eventually("registration", || {
        sched.seen(|s| s.registrations.first().cloned())
    })
    .await;
    assert_eq!(reg.node_id.as_deref(), Some(node.as_str()));
    assert_eq!((reg.total_cpu, reg.total_memory), (2.0, 2048));
    assert_eq!(reg.labels["zone"], "a");
    assert_eq!(reg.ip_address, "127.0.0.1");
    assert!(reg.csr.contains("CERTIFICATE REQUEST"));
    for f in ["node.key", "node.crt", "ca.crt", "node-id"] {
        eventually(f, || dir.path().join(f).exists().then_some(())).await;
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("node.key"))
            .expect("meta")
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let (cn, beat) = eventually("a heartbeat", || {
        sched.seen(|s| s.heartbeats.first().cloned())
    })
    .await;
    assert_eq!(cn, node, "heartbeats use the node certificate");
    assert_eq!((beat.available_cpu, beat.available_memory), (2.0, 2048));
    eventually("the startup full report", || {
        sched.seen(|s| s.reports.iter().any(|(_, _, r)| r.full).then_some(()))
    })
    .await;

    let agent_url = format!("https://127.0.0.1:{}", reg.agent_port);
    let scheduler = sched.client("persys-scheduler");
    let workload = unique("w");
    let body = serde_json::json!({
        "workloadId": workload, "image": "busybox:local", "name": workload, "displayName": "e2e",
        "command": "echo from-agent; sleep 30", "generation": 1, "resources": {"cpu": 500, "memory": 64}
    });
    let resp = scheduler
        .post(format!("{agent_url}/docker/run"))
        .json(&body)
        .send()
        .await
        .expect("run call");
    assert_eq!(resp.status(), 200);
    let state: ContainerState = resp.json().await.expect("state");
    assert_eq!(state.status, WorkloadStatus::Running);

    // A change the scheduler did not ask for (a container that exits) is pushed, under
    // the node's own identity; the run's answer is not pushed again.
    let short = unique("w");
    let body = serde_json::json!({
        "workloadId": short, "image": "busybox:local", "name": short, "displayName": "short",
        "command": "exit 3", "generation": 1, "resources": {"cpu": 100, "memory": 16}
    });
    let resp = scheduler
        .post(format!("{agent_url}/docker/run"))
        .json(&body)
        .send()
        .await
        .expect("run call");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let (cn, id) = eventually("a pushed exit of the short container", || {
        sched.seen(|s| {
            s.reports.iter().find_map(|(cn, id, r)| {
                r.containers
                    .iter()
                    .any(|c| c.workload_id == short && c.status == WorkloadStatus::Failed)
                    .then(|| (cn.clone(), id.clone()))
            })
        })
    })
    .await;
    let repeated = sched.seen(|s| {
        s.reports.iter().any(|(_, _, r)| {
            r.containers
                .iter()
                .any(|c| c.workload_id == workload && !r.full)
        })
    });
    assert!(
        !repeated,
        "the Running state the run answered was pushed again"
    );
    assert_eq!((cn.as_str(), id.as_str()), (node.as_str(), node.as_str()));
    eventually("a heartbeat net of the container's limits", || {
        sched.seen(|s| {
            s.heartbeats
                .iter()
                .any(|(_, b)| b.available_cpu == 1.5 && b.available_memory == 1984)
                .then_some(())
        })
    })
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scheduler
            .get(format!("{agent_url}/docker/logs/{workload}?tail=10"))
            .send()
            .await
            .expect("logs call")
            .text()
            .await
            .expect("text");
        if text.contains("from-agent") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logs never showed the line: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let other = sched.client("admin");
    let resp = other
        .get(format!("{agent_url}/docker/list"))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 403);
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(
            persys_certs::client_config(
                sched.ca.cert_pem(),
                None,
                persys_certs::Expected::role(persys_certs::Role::Node),
            )
            .expect("tls"),
        )
        .build()
        .expect("client");
    assert!(
        anonymous
            .get(format!("{agent_url}/docker/list"))
            .send()
            .await
            .is_err(),
        "no client cert, no TLS session"
    );

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("stops in time")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
    let c = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Running}}",
            &format!("{workload}-g1"),
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&c.stdout).trim(),
        "true",
        "containers outlive the agent"
    );
    sched.shutdown.cancel();
}

#[tokio::test]
async fn a_token_whose_ca_hash_does_not_match_the_server_is_refused() {
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let other_ca = CertificateAuthority::generate("other").expect("ca");
    let wrong = JoinToken {
        ca_hash: other_ca.fingerprint(),
        secret: sched.token.secret.clone(),
    };
    let node = unique("t-untrusted");
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        persys_agent::run(
            sched.config(&node, dir.path(), &wrong.to_string()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("fails fast");
    let err = result.expect_err("refused");
    assert!(
        err.to_string().contains("not trusted under the CA hash"),
        "{err}"
    );
    assert!(sched.seen(|s| s.registrations.is_empty()));
    assert!(!dir.path().join("node.key").exists());
}

#[tokio::test]
async fn an_agent_refuses_a_bootstrap_server_with_another_roles_certificate() {
    // A node's (or the gateway's) certificate of the right CA, on the scheduler's address:
    // the agent must not register there (row 6 of the security audit).
    for impostor in [
        persys_certs::Identity::node("node-1"),
        persys_certs::Identity::gateway(),
    ] {
        let sched = FakeScheduler::start_as(impostor.clone()).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let result = tokio::time::timeout(
            Duration::from_secs(15),
            persys_agent::run(
                sched.config(&unique("t-impostor"), dir.path(), &sched.token.to_string()),
                CancellationToken::new(),
            ),
        )
        .await
        .expect("fails fast");
        let err = result.expect_err("refused");
        assert!(
            sched.seen(|s| s.registrations.is_empty()),
            "{impostor} got a registration: {err}"
        );
        assert!(!dir.path().join("node.key").exists(), "{impostor}");
    }
}

#[tokio::test]
async fn a_wrong_join_secret_is_reported_as_refused() {
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = JoinToken {
        ca_hash: sched.token.ca_hash.clone(),
        secret: "wrong".into(),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        persys_agent::run(
            sched.config(&unique("t-401"), dir.path(), &wrong.to_string()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("fails fast");
    let err = result.expect_err("refused");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn a_node_the_scheduler_forgot_registers_again_and_keeps_heartbeating() {
    ensure_image();
    let node = unique("t-rereg");
    let _cleanup = Cleanup(node.clone());
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(persys_agent::run(
        sched.config(&node, dir.path(), &sched.token.to_string()),
        shutdown.clone(),
    ));
    eventually("a first heartbeat", || {
        sched.seen(|s| (!s.heartbeats.is_empty()).then_some(()))
    })
    .await;
    sched.forget_node.store(true, Ordering::SeqCst);
    eventually("a second registration", || {
        sched.seen(|s| (s.registrations.len() == 2).then_some(()))
    })
    .await;
    let after = sched.seen(|s| s.heartbeats.len());
    eventually("heartbeats after re-registering", || {
        sched.seen(|s| (s.heartbeats.len() > after + 1).then_some(()))
    })
    .await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("stops")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
    sched.shutdown.cancel();
}
