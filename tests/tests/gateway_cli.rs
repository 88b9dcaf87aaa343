//! The `persys` CLI through the gateway with API tokens: run --wait, apply -f YAML,
//! -o json, and one exit code per error kind.

use persys_tests::{AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use std::time::Duration;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn cli_through_the_gateway_runs_applies_yaml_prints_json_and_exits_by_error_kind() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(&[], &[]).await.expect("gateway starts");
    let admin = c.gateway.as_ref().expect("gateway").admin_token.clone();

    // run --wait: exits 0 once Running and prints the id.
    let o = c
        .gateway_cli(
            &admin,
            &[
                "run", "--name", "gw-run", "--wait", TEST_IMAGE, "--", "sleep", "3600",
            ],
        )
        .expect("run");
    assert!(o.status.success(), "run --wait: {}", err(&o));
    let id = out(&o)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let w = c
        .wait_status(&id, "Running", Duration::from_secs(2))
        .await
        .expect("Running");
    assert_eq!(w["name"], "gw-run");

    // run --wait on a workload that cannot start exits non-zero with the reason.
    let o = c
        .gateway_cli(&admin, &["run", "--wait", "persys-test/absent:never"])
        .expect("run");
    assert!(
        !o.status.success(),
        "a failed workload makes run --wait fail"
    );
    assert!(err(&o).contains("ImagePullBackOff"), "{}", err(&o));

    // apply -f with a multi-document YAML file.
    let file = c.dir.path().join("apply.yaml");
    std::fs::write(
        &file,
        format!(
            "name: yaml-one\nimage: {TEST_IMAGE}\ncommand: sleep 3600\nlabels:\n  app: y\n---\nname: yaml-two\nimage: {TEST_IMAGE}\ncommand: [\"sleep\", \"3600\"]\nenvVars:\n  MODE: prod\n"
        ),
    )
    .expect("write yaml");
    let o = c
        .gateway_cli(&admin, &["apply", "-f", file.to_str().expect("path")])
        .expect("apply");
    assert!(o.status.success(), "apply: {}", err(&o));

    // -o json parses and shows both applied workloads.
    let o = c.gateway_cli(&admin, &["ps", "-o", "json"]).expect("ps");
    assert!(o.status.success(), "{}", err(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("-o json is JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    for n in ["gw-run", "yaml-one", "yaml-two"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let two = list
        .as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == "yaml-two"))
        .expect("yaml-two");
    assert_eq!(two["envVars"]["MODE"], "prod");
    assert_eq!(two["command"], serde_json::json!(["sleep", "3600"]));

    // Exit codes: usage 2, auth 3, not found 4, server/unreachable 5.
    let o = c
        .gateway_cli(&admin, &["run", "--cpu", "many", TEST_IMAGE])
        .expect("usage");
    assert_eq!(o.status.code(), Some(2), "usage: {}", err(&o));
    let o = c.gateway_cli("persys_bogus", &["ps"]).expect("auth");
    assert_eq!(o.status.code(), Some(3), "auth: {}", err(&o));
    assert_eq!(err(&o).trim().lines().count(), 1, "one line: {}", err(&o));
    let viewer = {
        let o = c
            .gateway_cli(
                &admin,
                &[
                    "token",
                    "create",
                    "--name",
                    "cli-viewer",
                    "--role",
                    "viewer",
                ],
            )
            .expect("token create");
        assert!(o.status.success(), "{}", err(&o));
        out(&o).trim().to_string()
    };
    let o = c.gateway_cli(&viewer, &["rm", &id]).expect("forbidden");
    assert_eq!(o.status.code(), Some(3), "forbidden: {}", err(&o));
    let o = c
        .gateway_cli(&admin, &["get", "00000000-0000-4000-8000-000000000000"])
        .expect("not found");
    assert_eq!(o.status.code(), Some(4), "not found: {}", err(&o));
    assert!(
        err(&o).contains("request id"),
        "the server's request id is shown: {}",
        err(&o)
    );
    if let Some(g) = c.gateway.as_mut() {
        g.process.kill();
    }
    let o = c.gateway_cli(&admin, &["ps"]);
    // The gateway is gone: the CLI needs its config, which still exists.
    let o = o.expect("unreachable");
    assert_eq!(o.status.code(), Some(5), "unreachable: {}", err(&o));
}
