//! `--log-format json` on real processes: every line the gateway, the scheduler and the
//! agent write is one JSON object, and a request's id (`X-Request-Id`, given by the
//! client) is on the lines each of them logs while handling it: the gateway, the
//! scheduler it forwards to, and the agent the scheduler calls.

use persys_tests::{AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::Duration;

fn json_flag() -> Vec<String> {
    vec!["--log-format".into(), "json".into()]
}

/// The lines of `file` in the cluster's directory, each parsed.
fn lines(c: &Cluster, file: &str) -> Vec<(String, Option<Value>)> {
    std::fs::read_to_string(c.dir.path().join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (l.to_string(), serde_json::from_str::<Value>(l).ok()))
        .collect()
}

/// The request id a JSON line carries: its span's field, or an event field.
fn request_id(line: &Value) -> Option<&str> {
    line["span"]["request_id"]
        .as_str()
        .or_else(|| line["request_id"].as_str())
}

#[tokio::test]
async fn every_service_logs_json_lines_with_the_request_id_of_the_request_they_handle() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions {
            args: json_flag(),
            ..Default::default()
        }],
        scheduler_args: json_flag(),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(&[], &["--log-format", "json"])
        .await
        .expect("gateway starts");
    let admin = c.gateway_admin().expect("admin");
    let create_id = format!("rid-create-{}", uuid::Uuid::new_v4().simple());
    let r = admin
        .client()
        .post(admin.url("/workloads"))
        .header("x-request-id", &create_id)
        .json(&json!({"image": TEST_IMAGE, "command": "sh -c 'echo hello; sleep 3600'"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(create_id.as_str())
    );
    let w: Value = r.json().await.expect("json");
    let id = w["id"].as_str().expect("id").to_string();
    c.wait_status(&id, "Running", Duration::from_secs(30))
        .await
        .expect("running");
    // Logs go gateway → scheduler → agent, all on the one request.
    let logs_id = format!("rid-logs-{}", uuid::Uuid::new_v4().simple());
    let r = admin
        .client()
        .get(admin.url(&format!("/workloads/{id}/logs")))
        .header("x-request-id", &logs_id)
        .send()
        .await
        .expect("logs");
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.expect("body");
    assert!(text.contains("hello"), "{text}");
    // Let the request lines reach the files.
    tokio::time::sleep(Duration::from_millis(500)).await;

    for file in ["gateway.log", "scheduler.log", "agent-1.log"] {
        let all = lines(&c, file);
        assert!(all.len() > 5, "{file} has lines: {}", all.len());
        for (raw, parsed) in &all {
            let v = parsed
                .as_ref()
                .unwrap_or_else(|| panic!("{file}: not a JSON line: {raw}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{file}: {raw}"
            );
        }
        let of_logs: Vec<&Value> = all
            .iter()
            .filter_map(|(_, v)| v.as_ref())
            .filter(|v| request_id(v) == Some(logs_id.as_str()))
            .collect();
        assert!(!of_logs.is_empty(), "{file}: no line of request {logs_id}");
    }
    // The create's lines in the scheduler carry its id (placement happens in it).
    let sched = lines(&c, "scheduler.log");
    assert!(
        sched
            .iter()
            .filter_map(|(_, v)| v.as_ref())
            .any(|v| request_id(v) == Some(create_id.as_str())),
        "the scheduler logged nothing of the create"
    );
}
