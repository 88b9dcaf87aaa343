//! The `persys` CLI driven as a user would, against a running cluster.

use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use std::time::Duration;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn cli_runs_lists_logs_stops_starts_and_removes_a_workload() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");

    let out = c
        .cli(&[
            "run",
            "--name",
            "clitest",
            "-e",
            "GREETING=hi-cli",
            "--wait",
            TEST_IMAGE,
            "--",
            "sh",
            "-c",
            "echo $GREETING; sleep 3600",
        ])
        .expect("persys run");
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let id = stdout(&out)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "run prints the id last: {:?}",
        stdout(&out)
    );
    let w = c
        .wait_status(&id, "Running", Duration::from_secs(5))
        .await
        .expect("Running");
    assert_eq!(w["name"], "clitest");

    let out = c.cli(&["workload", "list", "-o", "json"]).expect("list");
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json is JSON");
    assert!(list
        .as_array()
        .is_some_and(|a| a.iter().any(|w| w["id"] == id.as_str())));

    let out = c.cli(&["workload", "list"]).expect("list table");
    assert!(stdout(&out).contains("clitest") && stdout(&out).contains("Running"));

    let out = c.cli(&["workload", "get", &id, "-o", "json"]).expect("get");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["id"], id.as_str());

    let mut logs = String::new();
    for _ in 0..50 {
        let out = c.cli(&["logs", &id]).expect("logs");
        assert!(out.status.success(), "{}", stderr(&out));
        logs = stdout(&out);
        if logs.contains("hi-cli") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logs.contains("hi-cli"), "logs: {logs:?}");

    let out = c.cli(&["node", "list", "-o", "json"]).expect("node list");
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let text = nodes.to_string();
    assert!(text.contains(&c.agents[0].node_id), "{text}");

    let out = c.cli(&["stop", &id]).expect("stop");
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_status(&id, "Stopped", Duration::from_secs(20))
        .await
        .expect("Stopped");
    let out = c.cli(&["start", &id]).expect("start");
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running");
    let out = c.cli(&["rm", &id]).expect("rm");
    assert!(out.status.success(), "{}", stderr(&out));
    let api = c.api().expect("api");
    let mut gone = false;
    for _ in 0..200 {
        let (s, _) = api.get(&format!("/workloads/{id}")).await.expect("get");
        if s == 404 && docker::workload_containers(&id).is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "rm removes record and container");
}

#[tokio::test]
async fn cli_schedules_an_original_workload_file_and_reports_errors_in_one_line() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let file = format!(
        "{}/fixtures/compat/schedule-minimal.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = c.cli(&["workload", "schedule", &file]).expect("schedule");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&c.agents[0].node_id),
        "prints the node: {}",
        stdout(&out)
    );

    let out = c
        .cli(&["workload", "get", "00000000-0000-4000-8000-000000000000"])
        .expect("get");
    assert_eq!(out.status.code(), Some(4), "not found exit code");
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("not found"), "{err}");

    let out = c
        .cli(&["run", "--memory", "lots", TEST_IMAGE])
        .expect("bad flag");
    assert_eq!(out.status.code(), Some(2), "usage error exit code");

    let out = std::process::Command::new(persys_tests::cluster::bin("persys"))
        .args(["workload", "list"])
        .env("PERSYS_CONFIG", c.dir.path().join("no-such-config.yaml"))
        .output()
        .expect("run persys");
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
}

#[tokio::test]
async fn cli_why_explains_a_placed_and_a_pending_workload() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions {
            cpu: Some(1.0),
            memory_mb: Some(512),
            ..Default::default()
        }
        .label("zone", "eu")],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let node = c.agents[0].node_id.clone();
    let fits = c
        .submit(
            serde_json::json!({"name": "why-fits", "image": TEST_IMAGE, "command": "sleep 3600",
                                   "resources": {"cpu": 800}}),
        )
        .await
        .expect("submitted");
    assert_eq!(fits["nodeId"], node.as_str(), "{fits}");
    let waits = c
        .submit(
            serde_json::json!({"name": "why-waits", "image": TEST_IMAGE, "command": "sleep 3600",
                                   "resources": {"cpu": 500}}),
        )
        .await
        .expect("submitted");
    assert_eq!(waits["status"], "Pending", "{waits}");

    // Placed: its own node wins (its own 800m are not held against it).
    let out = c.cli(&["why", "why-fits"]).expect("persys why");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with(node.as_str()))
        .unwrap_or_else(|| panic!("no row for {node}: {text}"));
    assert_eq!(row.split_whitespace().nth(1), Some("winner"), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("winner: {node}"))),
        "{text}"
    );

    // Pending: every node rejected with a reason, and a hint.
    let out = c
        .cli(&["why", "why-waits", "-o", "json"])
        .expect("persys why");
    assert!(out.status.success(), "{}", stderr(&out));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json is JSON");
    assert!(e.get("winner").is_none(), "{e}");
    let nodes = e["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{e}");
    for n in nodes {
        assert_eq!(n["verdict"], "rejected", "{n}");
        assert_eq!(n["filter"], "resources", "{n}");
        assert_eq!(n["reason"], "needs 500m CPU, 200m free", "{n}");
    }
    let hint = e["hint"].as_str().expect("hint");
    assert!(
        hint.starts_with(&format!("needs 300m more CPU on node {node}")),
        "{hint}"
    );
    let out = c.cli(&["why", "why-waits"]).expect("persys why");
    assert!(
        stdout(&out)
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("no node fits: needs 300m more CPU")),
        "{}",
        stdout(&out)
    );

    let out = c
        .cli(&["why", "00000000-0000-4000-8000-000000000000"])
        .expect("persys why");
    assert_eq!(out.status.code(), Some(4), "not found exit code");
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("not found"), "{err}");
}
