//! The built `persys` binary: usage errors, config errors, exit codes and output, against
//! a canned plain-HTTP server (the real cluster is exercised by the workspace `tests/`).

mod common;

use common::{config_for, fake_server, persys, WORKLOAD};
use predicates::prelude::*;

#[test]
fn help_lists_every_verb() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = persys(home.path()).arg("--help").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for verb in [
        "dev",
        "run",
        "apply",
        "ps",
        "get",
        "describe",
        "workload",
        "logs",
        "stop",
        "start",
        "rm",
        "node",
        "events",
        "metrics",
        "token",
        "completion",
        "version",
    ] {
        assert!(text.contains(verb), "{verb} missing from --help:\n{text}");
    }
}

#[test]
fn no_verb_is_a_usage_error() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path()).assert().code(2);
}

#[test]
fn run_without_image_is_a_usage_error() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .arg("run")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("error:"));
}

#[test]
fn malformed_env_flag_is_a_usage_error() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .args(["run", "-e", "NOEQUALS", "busybox:local"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("KEY=VALUE"));
}

#[test]
fn missing_config_flag_file_is_one_line_and_exit_1() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .args(["--config", "/nonexistent/persys.yaml", "workload", "list"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::starts_with("error: config file /nonexistent/persys.yaml not found")
                .and(predicate::function(|s: &str| s.lines().count() == 1)),
        );
}

#[test]
fn persys_config_env_selects_the_file() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .env("PERSYS_CONFIG", "/nonexistent/from-env.yaml")
        .args(["node", "list"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("/nonexistent/from-env.yaml")
                .and(predicate::str::contains("PERSYS_CONFIG")),
        );
}

#[test]
fn config_flag_wins_over_persys_config_env() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .env("PERSYS_CONFIG", "/nonexistent/from-env.yaml")
        .args(["--config", "/nonexistent/from-flag.yaml", "node", "list"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("from-flag.yaml")
                .and(predicate::str::contains("from-env").not()),
        );
}

#[test]
fn default_config_is_under_home() {
    let home = tempfile::tempdir().expect("tempdir");
    persys(home.path())
        .args(["workload", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(".persys/config.yaml"));
}

#[test]
fn unreachable_server_exits_5() {
    let home = tempfile::tempdir().expect("tempdir");
    let port = persys_testports::free_port();
    let cfg = config_for(home.path(), &format!("http://127.0.0.1:{port}"));
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["workload", "list"])
        .assert()
        .code(5)
        .stderr(predicate::str::starts_with("error: cannot reach"));
}

#[test]
fn not_found_answer_exits_4_with_message_and_request_id() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(
        404,
        r#"{"error":"workload 0b3e4c1a-1111-4222-8333-444455556666 not found","code":"not_found","requestId":"req-7"}"#,
    )]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["workload", "get", "0b3e4c1a-1111-4222-8333-444455556666"])
        .assert()
        .code(4)
        .stderr(
            "error: workload 0b3e4c1a-1111-4222-8333-444455556666 not found (request id req-7)\n",
        );
    let req = seen.recv().expect("request");
    assert_eq!(
        req.request_line,
        "GET /workloads/0b3e4c1a-1111-4222-8333-444455556666 HTTP/1.1"
    );
}

#[test]
fn unauthorized_answer_exits_3_and_server_error_exits_5() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = fake_server(vec![
        (
            401,
            r#"{"error":"client certificate required","code":"unauthenticated","requestId":"a"}"#,
        ),
        (
            503,
            r#"{"error":"etcd unavailable","code":"unavailable","requestId":"b"}"#,
        ),
    ]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["node", "list"])
        .assert()
        .code(3);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["node", "list"])
        .assert()
        .code(5);
}

#[test]
fn workload_list_json_is_the_servers_array_and_nothing_else() {
    let home = tempfile::tempdir().expect("tempdir");
    let body: &'static str = Box::leak(format!("[{WORKLOAD}]").into_boxed_str());
    let (url, _seen) = fake_server(vec![(200, body)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["workload", "list", "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("pure JSON");
    assert_eq!(v[0]["name"], "hello");
}

#[test]
fn workload_list_table_has_the_documented_columns() {
    let home = tempfile::tempdir().expect("tempdir");
    let body: &'static str = Box::leak(format!("[{WORKLOAD}]").into_boxed_str());
    let (url, _seen) = fake_server(vec![(200, body)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["workload", "list"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["ID", "NAME", "IMAGE", "STATUS", "NODE", "AGE"]);
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [
            "0b3e4c1a-1111-4222-8333-444455556666",
            "hello",
            "busybox:local",
            "Running",
            "node-1"
        ]
    );
}

#[test]
fn run_posts_the_mapped_request_and_prints_the_id() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(201, WORKLOAD)]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args([
            "run",
            "--name",
            "hello",
            "-e",
            "A=1",
            "--cpu",
            "250",
            "--memory",
            "64",
            "--label",
            "team=web",
            "--node-selector",
            "zone=a",
            "--restart",
            "always",
            "busybox:local",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .assert()
        .success()
        .stdout("0b3e4c1a-1111-4222-8333-444455556666\n");
    let req = seen.recv().expect("request");
    assert_eq!(req.request_line, "POST /workloads HTTP/1.1");
    let v: serde_json::Value = serde_json::from_str(&req.body).expect("JSON body");
    assert_eq!(v["name"], "hello");
    assert_eq!(v["type"], "docker-container");
    assert_eq!(v["command"], serde_json::json!(["sh", "-c", "echo hi"]));
    assert_eq!(v["envVars"]["A"], "1");
    assert_eq!(
        v["resources"],
        serde_json::json!({"cpu": 250, "memory": 64})
    );
    assert_eq!(v["labels"]["team"], "web");
    assert_eq!(v["nodeSelector"]["zone"], "a");
    assert_eq!(v["restartPolicy"], "always");
}

#[test]
fn invalid_name_is_refused_before_anything_is_sent() {
    let home = tempfile::tempdir().expect("tempdir");
    let port = persys_testports::free_port();
    let cfg = config_for(home.path(), &format!("http://127.0.0.1:{port}"));
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--name", "bad name!", "busybox:local"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: invalid workload: name"));
}

#[test]
fn schedule_sends_the_file_unchanged_and_prints_the_original_keys() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(
        200,
        r#"{"id":"w1","workloadId":"w1","nodeId":"node-1","node_id":"node-1","status":"Scheduled"}"#,
    )]);
    let cfg = config_for(home.path(), &url);
    let file = home.path().join("w.json");
    let body = r#"{"id":"","name":"web","type":"docker-container","image":"nginx:latest","gitBranch":"main"}"#;
    std::fs::write(&file, body).expect("write");
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["workload", "schedule"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("workloadId: w1").and(predicate::str::contains("node-1")));
    let req = seen.recv().expect("request");
    assert_eq!(req.request_line, "POST /workloads/schedule HTTP/1.1");
    assert_eq!(req.body, body);
}

#[test]
fn logs_stream_the_body_to_stdout() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(200, "line one\nline two\n")]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args([
            "logs",
            "0b3e4c1a-1111-4222-8333-444455556666",
            "--tail",
            "5",
            "-f",
        ])
        .assert()
        .success()
        .stdout("line one\nline two\n");
    let req = seen.recv().expect("request");
    assert_eq!(
        req.request_line,
        "GET /workloads/0b3e4c1a-1111-4222-8333-444455556666/logs?tail=5&follow=true HTTP/1.1"
    );
}

#[test]
fn name_is_resolved_to_an_id_before_stopping() {
    let home = tempfile::tempdir().expect("tempdir");
    let list: &'static str = Box::leak(format!("[{WORKLOAD}]").into_boxed_str());
    let (url, seen) = fake_server(vec![(200, list), (200, WORKLOAD)]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["stop", "hello", "-o", "json"])
        .assert()
        .success();
    assert_eq!(
        seen.recv().expect("list").request_line,
        "GET /workloads?limit=500 HTTP/1.1"
    );
    assert_eq!(
        seen.recv().expect("stop").request_line,
        "POST /workloads/0b3e4c1a-1111-4222-8333-444455556666/stop HTTP/1.1"
    );
}
