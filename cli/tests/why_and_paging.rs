//! `persys why` and the paged lists (`ps`, `node list`) through the built binary,
//! against a canned plain-HTTP server.

mod common;

use common::*;

/// What the scheduler answers for a Pending workload nothing fits.
fn pending_explanation() -> String {
    format!(
        r#"{{"workloadId":"{WORKLOAD_ID}","name":"hello","status":"Pending","nodeId":null,"strategy":"spread",
        "request":{{"cpu":500,"memory":0}},"nodeSelector":{{"zone":"eu"}},
        "nodes":[
          {{"nodeId":"eu-1","verdict":"rejected","filter":"resources","reason":"needs 500m CPU, 200m free",
            "allocatedCpu":800,"allocatedMemory":0,"availableCpu":200,"availableMemory":1024,"workloads":1}},
          {{"nodeId":"us-1","verdict":"rejected","filter":"nodeSelector","reason":"lacks label zone=eu",
            "allocatedCpu":0,"allocatedMemory":0,"availableCpu":1000,"availableMemory":1024,"workloads":0}}],
        "hint":"needs 300m more CPU on node eu-1: free that much there (stop, remove or move workloads) or request less"}}"#
    )
}

#[test]
fn why_prints_each_nodes_verdict_then_the_hint() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = serve(vec![json(200, pending_explanation())]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["why", WORKLOAD_ID])
        .assert()
        .success();
    assert_eq!(
        seen.recv().expect("placement").request_line,
        format!("GET /workloads/{WORKLOAD_ID}/placement HTTP/1.1")
    );
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("workload hello ({WORKLOAD_ID}): Pending")),
        "{text}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["NODE", "VERDICT", "FILTER/REASON", "SCORE"],
        "{text}"
    );
    assert!(
        lines[3].starts_with("eu-1") && lines[3].contains("resources: needs 500m CPU, 200m free"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("us-1") && lines[4].contains("nodeSelector: lacks label zone=eu"),
        "{text}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("no node fits: needs 300m more CPU on node eu-1")),
        "{text}"
    );
}

#[test]
fn why_json_is_the_schedulers_answer_and_a_name_is_resolved_first() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, seen) = serve(vec![
        json(200, format!("[{WORKLOAD}]")),
        json(200, pending_explanation()),
    ]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["why", "hello", "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    let want: serde_json::Value = serde_json::from_str(&pending_explanation()).expect("JSON");
    assert_eq!(v, want);
    assert_eq!(
        seen.recv().expect("resolve").request_line,
        "GET /workloads?limit=500 HTTP/1.1"
    );
    assert_eq!(
        seen.recv().expect("placement").request_line,
        format!("GET /workloads/{WORKLOAD_ID}/placement HTTP/1.1")
    );
}

#[test]
fn why_of_an_unknown_workload_is_one_line_and_exits_4() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _seen) = serve(vec![json(
        404,
        format!(
            r#"{{"error":"workload {WORKLOAD_ID} not found","code":"not_found","requestId":"r-7"}}"#
        ),
    )]);
    let cfg = config_for(home.path(), &url);
    persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["why", WORKLOAD_ID])
        .assert()
        .code(4)
        .stdout("")
        .stderr(format!(
            "error: workload {WORKLOAD_ID} not found (request id r-7)\n"
        ));
}

#[test]
fn ps_follows_continue_tokens_until_the_last_page() {
    let home = tempfile::tempdir().expect("tempdir");
    let second_id = "1b3e4c1a-1111-4222-8333-444455556666";
    let second = WORKLOAD
        .replace(WORKLOAD_ID, second_id)
        .replace(r#""name":"hello""#, r#""name":"second""#);
    let (url, seen) = serve(vec![
        json(
            200,
            format!(r#"{{"items":[{WORKLOAD}],"continue":"tok/1"}}"#),
        ),
        json(200, format!(r#"{{"items":[{second}],"continue":null}}"#)),
    ]);
    let cfg = config_for(home.path(), &url);
    let out = persys(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["ps", "--status", "Running", "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON");
    let ids: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, [WORKLOAD_ID, second_id]);
    assert_eq!(
        seen.recv().expect("page 1").request_line,
        "GET /workloads?status=Running&limit=500 HTTP/1.1"
    );
    assert_eq!(
        seen.recv().expect("page 2").request_line,
        "GET /workloads?status=Running&limit=500&continue=tok%2F1 HTTP/1.1"
    );
}

#[test]
fn node_list_pages_and_takes_an_older_servers_whole_list() {
    let home = tempfile::tempdir().expect("tempdir");
    let node2 = NODE.replace("node-1", "node-2");
    let (url, seen) = serve(vec![
        json(200, format!(r#"{{"items":[{NODE}],"continue":"n1"}}"#)),
        json(200, format!(r#"{{"items":[{node2}]}}"#)),
        // An older server ignores `limit`: the whole list, in its own shape.
        json(200, format!(r#"{{"nodes":[{NODE},{node2}]}}"#)),
    ]);
    let cfg = config_for(home.path(), &url);
    for _ in 0..2 {
        let out = persys(home.path())
            .arg("--config")
            .arg(&cfg)
            .args(["node", "list"])
            .assert()
            .success();
        let text = stdout_of(&out);
        let nodes: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(nodes, ["node-1", "node-2"], "{text}");
    }
    let lines: Vec<String> = seen.try_iter().map(|s| s.request_line).collect();
    assert_eq!(
        lines,
        [
            "GET /nodes?limit=500 HTTP/1.1",
            "GET /nodes?limit=500&continue=n1 HTTP/1.1",
            "GET /nodes?limit=500 HTTP/1.1",
        ]
    );
}
