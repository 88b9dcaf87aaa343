//! The workload verbs of issue 4 through the built binary, against a canned plain-HTTP
//! server: token auth, apply, ps filters and formats, get/describe, run --wait progress.

mod common;

use common::*;
use predicates::prelude::*;

fn workload_event(record: &str) -> String {
    format!("event: workload\ndata: {{\"kind\":\"workload\",\"workload\":{record}}}\n\n")
}

#[test]
fn config_token_is_sent_as_a_bearer_token() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(200, "[]")]);
    let cfg = config_with(home.path(), &url, "token: persys_abc\n");
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .arg("ps")
        .assert()
        .success();
    let req = seen.recv().expect("request");
    assert_eq!(
        req.header("authorization").as_deref(),
        Some("Bearer persys_abc")
    );
}

#[test]
fn persys_token_env_overrides_the_config_token() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(200, "[]")]);
    let cfg = config_with(home.path(), &url, "token: from-config\n");
    persys(home.path())
        .env("PERSYS_TOKEN", "from-env")
        .arg("--config")
        .arg(&cfg)
        .arg("ps")
        .assert()
        .success();
    let req = seen.recv().expect("request");
    assert_eq!(
        req.header("authorization").as_deref(),
        Some("Bearer from-env")
    );
}

#[test]
fn no_token_sends_no_authorization_header() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(200, "[]")]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .arg("ps")
        .assert()
        .success();
    assert_eq!(seen.recv().expect("request").header("authorization"), None);
}

#[test]
fn apply_yaml_documents_posts_each_workload_and_prints_a_line_each() {
    let home = tempfile::tempdir().expect("tempdir");
    let placed = workload_with("Scheduled", 0, "");
    let pending = workload_with("Pending", 0, r#""statusReason":"no node fits","#)
        .replace(r#""nodeId":"node-1""#, r#""nodeId":null"#);
    let (url, seen) = serve(vec![json(201, placed), json(201, pending)]);
    let cfg = config_for(home.path(), &url);
    let file = home.path().join("w.yaml");
    std::fs::write(
        &file,
        "name: web\nimage: busybox:local\nenvVars:\n  PORT: 8080\n---\nname: big\nimage: busybox:local\nresources:\n  cpu: 64000\n",
    )
    .expect("write");
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["apply", "-f"])
        .arg(&file)
        .assert()
        .success();
    let lines: Vec<String> = stdout_of(&out).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            format!("web created: {WORKLOAD_ID} (Scheduled on node-1)"),
            format!("big created: {WORKLOAD_ID} (Pending: no node fits)"),
        ]
    );
    let first = seen.recv().expect("first");
    assert_eq!(first.request_line, "POST /workloads HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&first.body).expect("JSON body");
    assert_eq!(body["name"], "web");
    assert_eq!(body["envVars"]["PORT"], "8080");
    let second: serde_json::Value =
        serde_json::from_str(&seen.recv().expect("second").body).expect("JSON body");
    assert_eq!(second["resources"]["cpu"], 64000);
}

#[test]
fn apply_json_list_with_o_json_prints_the_created_records() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = fake_server(vec![(201, WORKLOAD), (201, WORKLOAD)]);
    let cfg = config_for(home.path(), &url);
    let file = home.path().join("w.json");
    std::fs::write(
        &file,
        r#"[{"name":"a","image":"busybox:local"},{"name":"b","image":"busybox:local"}]"#,
    )
    .expect("write");
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["apply", "-o", "json", "-f"])
        .arg(&file)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
}

#[test]
fn apply_reads_standard_input() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = fake_server(vec![(201, WORKLOAD)]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["apply", "-f", "-"])
        .write_stdin("- name: web\n  image: busybox:local\n")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("web created: "));
    assert_eq!(
        seen.recv().expect("post").request_line,
        "POST /workloads HTTP/1.1"
    );
}

#[test]
fn apply_of_an_invalid_file_sends_nothing_and_names_the_workload() {
    let home = tempfile::tempdir().expect("tempdir");
    // Nothing listens: had anything been sent, the exit code would be 5.
    let cfg = config_for(home.path(), &format!("http://127.0.0.1:{}", dead_port()));
    let file = home.path().join("w.yaml");
    std::fs::write(&file, "name: ok\nimage: x\n---\nname: bad\n").expect("write");
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["apply", "-f"])
        .arg(&file)
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("cannot apply")
                .and(predicate::str::contains("workload 2 (bad): image")),
        );
}

#[test]
fn apply_partial_failure_reports_each_and_exits_with_the_first_code() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = fake_server(vec![
        (201, WORKLOAD),
        (
            403,
            r#"{"error":"role viewer may not POST /workloads","code":"forbidden","requestId":"r-9"}"#,
        ),
    ]);
    let cfg = config_for(home.path(), &url);
    let file = home.path().join("w.yaml");
    std::fs::write(&file, "- {name: a, image: x}\n- {name: b, image: x}\n").expect("write");
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["apply", "-f"])
        .arg(&file)
        .assert()
        .code(3);
    assert!(stdout_of(&out).starts_with("a created: "));
    let err = stderr_of(&out);
    assert!(
        err.contains("error: b: role viewer may not POST /workloads (request id r-9)"),
        "{err}"
    );
    assert!(err.contains("1 of 2 workloads not created"), "{err}");
}

#[test]
fn ps_sends_filters_and_checks_extra_labels_itself() {
    let home = tempfile::tempdir().expect("tempdir");
    let labelled = WORKLOAD.replace(r#""labels":{}"#, r#""labels":{"team":"web","tier":"1"}"#);
    let other = labelled
        .replace(r#""tier":"1""#, r#""tier":"2""#)
        .replace(WORKLOAD_ID, "1b3e4c1a-1111-4222-8333-444455556666");
    let (url, seen) = serve(vec![json(200, format!("[{labelled},{other}]"))]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args([
            "ps", "--status", "Running", "--node", "node-1", "-l", "team=web", "-l", "tier=1",
            "-o", "json",
        ])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["id"], WORKLOAD_ID);
    assert_eq!(
        seen.recv().expect("list").request_line,
        "GET /workloads?status=Running&node=node-1&label=team%3Dweb&limit=500 HTTP/1.1"
    );
}

#[test]
fn ps_yaml_is_the_array_as_yaml() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = serve(vec![json(200, format!("[{WORKLOAD}]"))]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["ps", "-o", "yaml"])
        .assert()
        .success();
    let v: serde_json::Value =
        serde_yaml_ng::from_slice(&out.get_output().stdout).expect("pure YAML");
    assert_eq!(v[0]["name"], "hello");
}

#[test]
fn ps_wide_adds_columns_and_pipes_get_no_colour() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = serve(vec![json(200, format!("[{WORKLOAD}]"))]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["ps", "-o", "wide"])
        .assert()
        .success();
    let text = stdout_of(&out);
    let header: Vec<&str> = text
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "NAME", "IMAGE", "STATUS", "NODE", "RESTARTS", "GEN", "PORTS", "AGE", "REASON"]
    );
    assert!(!text.contains('\x1b'), "no colour on a pipe: {text:?}");
}

#[test]
fn describe_shows_the_record_with_its_node() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = serve(vec![json(200, WORKLOAD), json(200, NODE)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["describe", WORKLOAD_ID])
        .assert()
        .success();
    let text = stdout_of(&out);
    assert!(
        text.contains("node-1 (127.0.0.1:8080, Active, node-1.cluster.local.dev)"),
        "{text}"
    );
    assert!(text.contains("Status:"), "{text}");
    seen.recv().expect("workload");
    assert_eq!(
        seen.recv().expect("node").request_line,
        "GET /nodes/node-1 HTTP/1.1"
    );
}

#[test]
fn get_json_is_the_record() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = fake_server(vec![(200, WORKLOAD)]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["get", WORKLOAD_ID, "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    assert_eq!(v["id"], WORKLOAD_ID);
}

#[test]
fn run_wait_reports_each_status_change_from_the_event_stream() {
    let home = tempfile::tempdir().expect("tempdir");
    let stream = [
        workload_event(&workload_with("Scheduled", 1, "")),
        workload_event(&workload_with("ContainerCreating", 2, "")),
        workload_event(&workload_with("Running", 3, "")),
    ]
    .concat();
    // The stream is opened before the workload is posted.
    let (url, seen) = serve(vec![
        sse(stream),
        json(201, workload_with("Scheduled", 1, "")),
    ]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--wait", "busybox:local", "--", "sleep", "60"])
        .assert()
        .success()
        .stdout(format!("{WORKLOAD_ID}\n"));
    let err = stderr_of(&out);
    let statuses: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{WORKLOAD_ID}: ")))
        .collect();
    assert_eq!(
        statuses,
        ["Scheduled", "ContainerCreating", "Running"],
        "{err}"
    );
    assert_eq!(
        seen.recv().expect("events").request_line,
        "GET /events HTTP/1.1"
    );
    assert_eq!(
        seen.recv().expect("post").request_line,
        "POST /workloads HTTP/1.1"
    );
}

#[test]
fn run_wait_exits_non_zero_with_the_reason_of_a_failure() {
    let home = tempfile::tempdir().expect("tempdir");
    let failed = workload_with(
        "ImagePullBackOff",
        2,
        r#""statusReason":"no such image: nope:latest","#,
    );
    let (url, _seen) = serve(vec![
        sse(workload_event(&failed)),
        json(201, workload_with("Scheduled", 1, "")),
    ]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--wait", "nope:latest"])
        .assert()
        .code(1);
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("{WORKLOAD_ID}: ImagePullBackOff")),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("error: workload")
                && l.ends_with("did not run: ImagePullBackOff: no such image: nope:latest")),
        "{err}"
    );
}
