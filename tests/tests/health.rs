//! Health checks run by the agent against real containers: HTTP and TCP probes from the
//! agent, exec probes through the engine; unhealthy past `retries` restarts the
//! container (liveness), and the record carries `health` and the failure's output.

use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::Duration;

fn one_agent() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    }
}

/// busybox httpd serving one page on `port`.
fn httpd(port: u16) -> Value {
    json!([
        "sh",
        "-c",
        format!("mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p {port} -h /www")
    ])
}

fn started_at(container: &str) -> String {
    docker::inspect(container)
        .map(|v| {
            v["State"]["StartedAt"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn probes_report_health_and_an_unhealthy_container_is_restarted_with_its_output() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let web = c
        .submit(json!({
            "name": "web", "image": TEST_IMAGE, "command": httpd(8080),
            "healthCheck": {"http": {"path": "/", "port": 8080}, "intervalSeconds": 1, "retries": 2}
        }))
        .await
        .expect("web submitted");
    let tcp = c
        .submit(json!({
            "name": "tcp", "image": TEST_IMAGE, "command": httpd(8081),
            "healthCheck": {"tcp": {"port": 8081}, "intervalSeconds": 1}
        }))
        .await
        .expect("tcp submitted");
    let sick = c
        .submit(json!({
            "name": "sick", "image": TEST_IMAGE, "command": ["sleep", "3600"],
            "healthCheck": {"exec": ["sh", "-c", "echo database not ready >&2; exit 3"],
                            "intervalSeconds": 1, "retries": 2}
        }))
        .await
        .expect("sick submitted");
    let wrong_port = c
        .submit(json!({
            "name": "wrong-port", "image": TEST_IMAGE, "command": httpd(8082),
            "healthCheck": {"http": {"path": "/", "port": 9999}, "intervalSeconds": 1, "retries": 2}
        }))
        .await
        .expect("wrong-port submitted");
    let id = |w: &Value| w["id"].as_str().expect("id").to_string();

    for w in [&web, &tcp] {
        let healthy = c
            .wait_workload(&id(w), Duration::from_secs(30), "healthy", |w| {
                w["status"] == "Running" && w["health"] == "healthy"
            })
            .await
            .expect("healthy");
        assert_eq!(
            healthy["restartCount"], 0,
            "a healthy container is not restarted: {healthy}"
        );
    }

    let out = c.cli(&["describe", &id(&web)]).expect("persys describe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("http GET :8080/ every 1s"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Health") && l.ends_with("healthy")),
        "{text}"
    );

    // Exec: the probe's own output is what the record shows, and the container restarts.
    let sick_id = id(&sick);
    let first = c
        .wait_status(&sick_id, "Running", Duration::from_secs(20))
        .await
        .expect("sick runs");
    let container = first["containerId"]
        .as_str()
        .expect("container")
        .to_string();
    let first_start = started_at(&container);
    let restarted = c
        .wait_workload(
            &sick_id,
            Duration::from_secs(30),
            "restarted as unhealthy",
            |w| w["restartCount"].as_u64().unwrap_or(0) >= 1,
        )
        .await
        .expect("restarted");
    let output = restarted["healthOutput"].as_str().unwrap_or_default();
    assert!(
        output.contains("database not ready"),
        "output recorded: {restarted}"
    );
    assert!(
        output.contains("exit code 3"),
        "exit code recorded: {restarted}"
    );
    let again = c
        .wait_workload(&sick_id, Duration::from_secs(20), "running again", |w| {
            w["status"] == "Running"
        })
        .await
        .expect("running again");
    assert_eq!(
        again["containerId"], container,
        "the same container was restarted"
    );
    assert_ne!(
        started_at(&container),
        first_start,
        "the engine started it again"
    );
    assert_ne!(
        again["health"], "healthy",
        "a failing check never reads healthy: {again}"
    );

    // HTTP on a port nothing serves: unhealthy, the connection error recorded.
    let wrong = c
        .wait_workload(
            &id(&wrong_port),
            Duration::from_secs(30),
            "restarted",
            |w| w["restartCount"].as_u64().unwrap_or(0) >= 1,
        )
        .await
        .expect("wrong port restarted");
    let output = wrong["healthOutput"].as_str().unwrap_or_default();
    assert!(
        output.contains(":9999/"),
        "the probed URL is in the output: {wrong}"
    );

    // The healthy ones stayed healthy and were never restarted.
    for w in [&web, &tcp] {
        let now = c
            .api()
            .expect("api")
            .get_json(&format!("/workloads/{}", id(w)))
            .await
            .expect("get");
        assert_eq!(now["health"], "healthy", "{now}");
        assert_eq!(now["restartCount"], 0, "{now}");
    }
}

#[tokio::test]
async fn a_restarted_agent_goes_on_probing_what_runs() {
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    let w = c
        .submit(json!({
            "name": "flaky", "image": TEST_IMAGE, "command": httpd(8080),
            "healthCheck": {"http": {"path": "/", "port": 8080}, "intervalSeconds": 1, "retries": 2}
        }))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let healthy = c
        .wait_workload(&id, Duration::from_secs(30), "healthy", |w| {
            w["health"] == "healthy"
        })
        .await
        .expect("healthy");
    let container = healthy["containerId"]
        .as_str()
        .expect("container")
        .to_string();
    c.kill_agent(0);
    c.start_agent(0).await.expect("agent starts again");
    // The page disappears: only an agent that resumed probing notices.
    let out = std::process::Command::new("docker")
        .args(["exec", &container, "rm", "/www/index.html"])
        .output()
        .expect("docker exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restarted = c
        .wait_workload(
            &id,
            Duration::from_secs(30),
            "restarted by the new agent",
            |w| w["restartCount"].as_u64().unwrap_or(0) >= 1,
        )
        .await
        .expect("restarted");
    assert!(
        restarted["healthOutput"]
            .as_str()
            .unwrap_or_default()
            .contains("404"),
        "the failing answer is recorded: {restarted}"
    );
}

#[tokio::test]
async fn a_bad_health_check_is_refused_naming_the_field() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let api = c.api().expect("api");
    for (check, field) in [
        (
            json!({"tcp": {"port": 80}, "exec": ["true"]}),
            "healthCheck",
        ),
        (json!({"http": {"port": 0}}), "healthCheck.http.port"),
        (
            json!({"exec": ["true"], "retries": 0}),
            "healthCheck.retries",
        ),
    ] {
        let (status, body) = api
            .post(
                "/workloads",
                &json!({"image": TEST_IMAGE, "healthCheck": check}),
            )
            .await
            .expect("post");
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(field),
            "{field}: {body}"
        );
        assert!(body["requestId"].is_string(), "{body}");
    }
}
