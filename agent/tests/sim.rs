//! `persys-agent sim` in process against the minimal fake scheduler over real TLS:
//! every simulated node registers with its own CSR, heartbeats with its own
//! certificate and serves its own mTLS API over the in-memory engine. No Docker.

mod common;

use clap::Parser;
use common::scheduler::{eventually, FakeScheduler};
use persys_agent::{Cli, Command};
use persys_proto::{ContainerState, WorkloadStatus};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn simulated_nodes_join_heartbeat_and_run_workloads_on_their_own_identities() {
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = sched.token.to_string();
    let argv = [
        "persys-agent",
        "sim",
        "--nodes",
        "5",
        "--max-concurrent-joins",
        "2",
        "--node-prefix",
        "fleet-",
        "--scheduler-url",
        &sched.api_url,
        "--bootstrap-url",
        &sched.bootstrap_url,
        "--join-token",
        &token,
        "--data-dir",
        dir.path().to_str().expect("utf-8 path"),
        "--cpu",
        "4",
        "--memory-mb",
        "8192",
    ];
    let Some(Command::Sim(args)) = Cli::try_parse_from(argv).expect("parses").command else {
        panic!("sim expected");
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(persys_agent::sim::run(args, shutdown.clone()));

    let expected: BTreeSet<String> = (0..5).map(|i| format!("fleet-{i}")).collect();
    let registrations = eventually("five registrations", || {
        sched.seen(|s| (s.registrations.len() == 5).then(|| s.registrations.clone()))
    })
    .await;
    let ids: BTreeSet<String> = registrations
        .iter()
        .filter_map(|r| r.node_id.clone())
        .collect();
    assert_eq!(ids, expected);
    let csrs: BTreeSet<&str> = registrations.iter().map(|r| r.csr.as_str()).collect();
    assert_eq!(csrs.len(), 5, "every node its own key and CSR");
    let ports: BTreeSet<u16> = registrations.iter().map(|r| r.agent_port).collect();
    assert_eq!(ports.len(), 5, "every node its own listener");
    assert!(registrations.iter().all(|r| r.total_cpu == 4.0));
    eventually("a heartbeat from every node's certificate", || {
        sched.seen(|s| {
            let beating: BTreeSet<&String> = s.heartbeats.iter().map(|(cn, _)| cn).collect();
            (beating.len() == 5).then_some(())
        })
    })
    .await;
    // Saved before the first heartbeat.
    for id in &expected {
        assert!(
            dir.path().join(id).join("node.crt").exists(),
            "{id} keeps its certificate"
        );
    }

    let node = &registrations[0];
    let node_id = node.node_id.clone().expect("node id");
    let agent_url = format!("https://127.0.0.1:{}", node.agent_port);
    let scheduler = sched.client("persys-scheduler");
    let body = serde_json::json!({
        "workloadId": "w1", "image": "nginx:1.27", "name": "w1", "displayName": "sim",
        "command": ["nginx", "-g", "daemon off;"], "generation": 1
    });
    let resp = scheduler
        .post(format!("{agent_url}/docker/run"))
        .json(&body)
        .send()
        .await
        .expect("run call");
    assert_eq!(resp.status(), 200);
    let state: ContainerState = resp.json().await.expect("state");
    assert_eq!(state.status, WorkloadStatus::Running, "{state:?}");
    // The run's answer is not pushed again; a change the scheduler did not make
    // itself, e.g. the container's exit, is pushed under the node's identity.
    let resp = scheduler
        .post(format!("{agent_url}/docker/stop/w1?timeout=1"))
        .send()
        .await
        .expect("stop call");
    assert_eq!(resp.status(), 200);
    eventually("a pushed stop from that node", || {
        sched.seen(|s| {
            s.reports
                .iter()
                .any(|(cn, _, r)| {
                    cn == &node_id
                        && r.containers
                            .iter()
                            .any(|c| c.workload_id == "w1" && c.status != WorkloadStatus::Running)
                })
                .then_some(())
        })
    })
    .await;
    let logs = scheduler
        .get(format!("{agent_url}/docker/logs/w1"))
        .send()
        .await
        .expect("logs call")
        .text()
        .await
        .expect("text");
    assert!(
        logs.contains("fake container w1-g1 started (image nginx:1.27)"),
        "{logs}"
    );
    assert!(logs.contains("command: nginx -g daemon off;"), "{logs}");

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), sim)
        .await
        .expect("sim stops in time")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn nodes_whose_registration_is_refused_end_the_simulation_with_their_count() {
    let sched = FakeScheduler::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The right CA hash, a secret the scheduler never issued: 401, not retried.
    let wrong = format!("PERSYS1.{}.not-the-secret", sched.token.ca_hash);
    let argv = [
        "persys-agent",
        "sim",
        "--nodes",
        "3",
        "--scheduler-url",
        &sched.api_url,
        "--bootstrap-url",
        &sched.bootstrap_url,
        "--join-token",
        &wrong,
        "--data-dir",
        dir.path().to_str().expect("utf-8 path"),
    ];
    let Some(Command::Sim(args)) = Cli::try_parse_from(argv).expect("parses").command else {
        panic!("sim expected");
    };
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        persys_agent::sim::run(args, CancellationToken::new()),
    )
    .await
    .expect("ends by itself once every node has failed");
    let e = result.expect_err("refused");
    assert!(
        e.to_string().starts_with("3 simulated node(s) failed"),
        "{e}"
    );
    assert!(e.to_string().contains("HTTP 401"), "{e}");
}
