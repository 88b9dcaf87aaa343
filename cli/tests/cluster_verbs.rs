//! The cluster verbs of issue 4 through the built binary, against a canned plain-HTTP
//! server: node control, events, metrics, tokens, completion and version.

mod common;

use common::*;
use predicates::prelude::*;

fn workload_event(record: &str) -> String {
    format!("event: workload\ndata: {{\"kind\":\"workload\",\"workload\":{record}}}\n\n")
}

#[test]
fn node_cordon_posts_and_prints_the_new_status() {
    let home = tempfile::tempdir().expect("tempdir");
    let cordoned: &'static str = Box::leak(
        NODE.replace(r#""status":"Active""#, r#""status":"Cordoned""#)
            .into_boxed_str(),
    );
    let (url, seen) = fake_server(vec![(200, cordoned)]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["node", "cordon", "node-1"])
        .assert()
        .success()
        .stdout("node-1: Cordoned\n");
    assert_eq!(
        seen.recv().expect("cordon").request_line,
        "POST /nodes/node-1/cordon HTTP/1.1"
    );
}

#[test]
fn node_drain_of_an_unknown_node_exits_4() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = fake_server(vec![(
        404,
        r#"{"error":"node nope not found","code":"not_found","requestId":"r-1"}"#,
    )]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["node", "drain", "nope"])
        .assert()
        .code(4)
        .stderr("error: node nope not found (request id r-1)\n");
}

#[test]
fn events_print_one_line_per_event_until_the_stream_ends() {
    let home = tempfile::tempdir().expect("tempdir");
    let stream = format!(
        ": keep-alive\n\n{}{}event: workloadDeleted\ndata: {{\"kind\":\"workloadDeleted\",\"id\":\"{WORKLOAD_ID}\"}}\n\n",
        workload_event(&workload_with("Scheduled", 1, "")),
        workload_event(&workload_with("Running", 2, "")),
    );
    let (url, seen) = serve(vec![sse(stream)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .arg("events")
        .assert()
        .success();
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("TIME"), "{text}");
    for (line, status) in lines[1..].iter().zip(["Scheduled", "Running", "Deleted"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells[1..4],
            ["workload", "hello/0b3e4c1a", status],
            "{line}"
        );
    }
    assert_eq!(
        seen.recv().expect("events").request_line,
        "GET /events HTTP/1.1"
    );
}

#[test]
fn events_json_prints_each_event_as_one_json_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let node_event = format!("event: node\ndata: {{\"kind\":\"node\",\"node\":{NODE}}}\n\n");
    let stream = format!("{}{node_event}", workload_event(WORKLOAD));
    let (url, _seen) = serve(vec![sse(stream)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["events", "-o", "json"])
        .assert()
        .success();
    let kinds: Vec<String> = stdout_of(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            v["kind"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(kinds, ["workload", "node"]);
}

#[test]
fn events_kind_filter_skips_other_kinds() {
    let home = tempfile::tempdir().expect("tempdir");
    let node_event = format!("event: node\ndata: {{\"kind\":\"node\",\"node\":{NODE}}}\n\n");
    let stream = format!("{}{node_event}", workload_event(WORKLOAD));
    let (url, _seen) = serve(vec![sse(stream)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["events", "--kind", "node", "-o", "json"])
        .assert()
        .success();
    assert_eq!(stdout_of(&out).lines().count(), 1);
}

#[test]
fn metrics_prints_a_summary_or_the_json() {
    let home = tempfile::tempdir().expect("tempdir");
    let metrics: &'static str = Box::leak(
        format!(
            r#"{{"nodes":[{NODE}],"workloadsByStatus":{{"Running":2,"Failed":0}},"totalWorkloads":2,"totalCpuMillis":4000,"totalMemoryMb":8000,"allocatedCpuMillis":250,"allocatedMemoryMb":64}}"#
        )
        .into_boxed_str(),
    );
    let (url, seen) = fake_server(vec![(200, metrics), (200, metrics)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .arg("metrics")
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(text.contains("0.25 of 4 cores allocated (6%)"), "{text}");
    assert!(text.contains("Running   2"), "{text}");
    assert_eq!(
        seen.recv().expect("metrics").request_line,
        "GET /cluster/metrics HTTP/1.1"
    );
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["metrics", "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    assert_eq!(v["totalWorkloads"], 2);
}

#[test]
fn token_create_prints_only_the_secret_on_stdout() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(
        201,
        r#"{"id":"0f1e","name":"ci","role":"operator","token":"persys_secret","createdAt":"2024-01-01T00:00:00Z"}"#,
    )]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["token", "create", "--name", "ci", "--role", "operator"])
        .assert()
        .success()
        .stdout("persys_secret\n")
        .stderr(predicate::str::contains("shown only now"));
    let req = seen.recv().expect("create");
    assert_eq!(req.request_line, "POST /tokens HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&req.body).expect("JSON");
    assert_eq!(body, serde_json::json!({"name": "ci", "role": "operator"}));
}

#[test]
fn token_list_and_revoke() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![
        (
            200,
            r#"{"tokens":[{"id":"0f1e","name":"ci","role":"viewer","createdAt":"2024-01-01T00:00:00Z"}]}"#,
        ),
        (
            200,
            r#"{"id":"0f1e","name":"ci","role":"viewer","createdAt":"2024-01-01T00:00:00Z"}"#,
        ),
    ]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["token", "list"])
        .assert()
        .success();
    let text = stdout_of(&out);
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["0f1e", "ci", "viewer"]);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["token", "revoke", "0f1e"])
        .assert()
        .success()
        .stdout("0f1e\n");
    seen.recv().expect("list");
    assert_eq!(
        seen.recv().expect("revoke").request_line,
        "DELETE /tokens/0f1e HTTP/1.1"
    );
}

#[test]
fn completion_needs_no_config_and_prints_a_script() {
    let home = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "_persys()"),
        ("zsh", "#compdef persys"),
        ("fish", "complete -c persys"),
    ] {
        persys(home.path())
            .args(["completion", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(marker));
    }
    persys(home.path())
        .args(["completion", "tcsh"])
        .assert()
        .code(2);
}

#[test]
fn version_needs_no_config() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .arg("version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(concat!(
            "persys ",
            env!("CARGO_PKG_VERSION")
        )));
    let out = persys(home.path())
        .args(["version", "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}
