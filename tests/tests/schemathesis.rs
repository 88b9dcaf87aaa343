//! schemathesis (PyPI) against the gateway with a valid token: no 5xx, and no answer
//! that breaks the OpenAPI document the gateway serves.

use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use std::process::Command;

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    // A generous rate limit: schemathesis is a burst of one credential's requests.
    c.start_gateway(
        &[],
        &[
            "--rate-limit-per-second",
            "100000",
            "--rate-limit-burst",
            "100000",
        ],
    )
    .await
    .expect("gateway starts");
    let g = c.gateway.as_ref().expect("gateway");
    let url = format!("https://127.0.0.1:{}/openapi.json", g.port);
    let ca = c.scheduler_dir().join("ca.crt");
    let report = c.dir.path().join("schemathesis-report");
    let out = Command::new("schemathesis")
        .arg("run")
        .arg(&url)
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", g.admin_token))
        .arg("--tls-verify")
        .arg(&ca)
        .arg("--checks")
        .arg("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance")
        // The event stream never ends by design; tests/tests/gateway.rs covers it.
        .arg("--exclude-path")
        .arg("/events")
        .arg("--max-examples")
        .arg("15")
        .arg("--max-time")
        .arg("60")
        .arg("--workers")
        .arg("2")
        .arg("--seed")
        .arg("42")
        .arg("--no-color")
        .arg("--output-sanitize")
        .arg("true")
        .arg("--report-dir")
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis is installed (scripts/install-deps.sh installs it from PyPI)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("passed") || stdout.contains("Passed") || stdout.contains("cases"),
        "schemathesis ran test cases:\n{stdout}"
    );
}
