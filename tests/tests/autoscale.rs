//! Autoscaling on real Docker: agents sample their replicas' CPU from the engine's
//! stats, the leader scales a service up under a CPU-burning replica at once, never
//! above `max`, and back down to `min` only after the stabilization window; each
//! decision carries the figures that caused it.

use persys_tests::{docker, AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Stabilization window of the test service, seconds.
const WINDOW_SECS: u64 = 6;

fn cluster() -> ClusterOptions {
    let agent = AgentOptions {
        args: vec!["--usage-interval-ms".into(), "1000".into()],
        ..Default::default()
    };
    ClusterOptions {
        agents: vec![agent.clone(), agent],
        node_timeout_ms: Some(3000),
        scheduler_args: vec!["--autoscale-interval-ms".into(), "1000".into()],
        ..Default::default()
    }
}

/// Replicas asking for 0.1 core that burn it (the engine caps them there) until
/// `/tmp/idle` exists.
fn burner() -> Value {
    json!({
        "kind": "Service",
        "name": "burner",
        "template": {
            "image": TEST_IMAGE,
            "command": ["sh", "-c", "while [ ! -f /tmp/idle ]; do :; done; exec sleep 3600"],
            "resources": {"cpu": 100}
        },
        "autoscale": {"min": 1, "max": 3, "targetCpuPercent": 50,
                      "scaleDownStabilizationSeconds": WINDOW_SECS}
    })
}

async fn service(api: &Api) -> Value {
    api.get_json("/services/burner")
        .await
        .expect("GET /services/burner")
}

fn running(s: &Value) -> Vec<Value> {
    s["replicaWorkloads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w["status"] == "Running")
        .collect()
}

fn events(s: &Value) -> Vec<Value> {
    s["scaleEvents"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_cpu_burning_service_scales_up_at_once_within_max_and_down_after_the_window() {
    let c = Cluster::start(cluster()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let (status, body) = api.put("/services/burner", &burner()).await.expect("apply");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"]["replicas"], 1, "starts at min: {body}");

    // A manual scale of an autoscaled service is refused: the autoscaler owns it.
    let (status, body) = api
        .post("/services/burner/scale", &json!({"replicas": 2}))
        .await
        .expect("scale");
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("autoscaled"));

    // Up: one replica at ~100% of its request against a 50% target.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut most = 0;
    let s = loop {
        let s = service(&api).await;
        let replicas = s["replicas"].as_u64().unwrap_or(0);
        most = most.max(replicas);
        if replicas == 3 && running(&s).len() == 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "not scaled up to 3: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(most <= 3, "never above max (saw {most})");
    let up = events(&s);
    let first = up.first().expect("a decision");
    assert_eq!(first["from"], 1, "{first}");
    assert_eq!(first["metric"], "cpu");
    assert_eq!(first["targetPercent"], 50);
    assert!(
        first["currentPercent"].as_u64().unwrap_or(0) >= 75,
        "the burning replica's figure caused it: {first}"
    );
    assert_eq!(first["measuredReplicas"], 1);
    assert!(first["reason"].as_str().unwrap_or("").contains("cpu"));
    let nodes: std::collections::BTreeSet<String> = running(&s)
        .iter()
        .filter_map(|w| w["nodeId"].as_str().map(String::from))
        .collect();
    assert_eq!(nodes.len(), 2, "replicas spread over both nodes: {s}");

    // Idle: every replica stops burning. Down to min, but only after the window.
    for w in running(&s) {
        let container = w["containerId"].as_str().expect("container id");
        let out = std::process::Command::new("docker")
            .args(["exec", container, "touch", "/tmp/idle"])
            .output()
            .expect("docker exec");
        assert!(out.status.success(), "{out:?}");
    }
    let idle_at = Instant::now();
    let deadline = idle_at + Duration::from_secs(60);
    let s = loop {
        let s = service(&api).await;
        let replicas = s["replicas"].as_u64().unwrap_or(0);
        assert!((1..=3).contains(&replicas), "outside min..max: {s}");
        if replicas == 1 && s["replicaWorkloads"].as_array().map(Vec::len) == Some(1) {
            break s;
        }
        assert!(Instant::now() < deadline, "not scaled down to 1: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        idle_at.elapsed() >= Duration::from_secs(WINDOW_SECS - 1),
        "scaled down after {:?}, inside the {WINDOW_SECS} s window",
        idle_at.elapsed()
    );
    let down = events(&s);
    let last = down.last().expect("a decision");
    assert_eq!(last["to"], 1, "{last}");
    assert!(
        last["currentPercent"].as_u64().unwrap_or(100) < 50,
        "idle figures caused it: {last}"
    );
    // The removed replicas' containers are gone from the engine.
    let ids: Vec<String> = s["replicaWorkloads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["id"].as_str().map(String::from))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = docker::containers_with_label("persys.io/service", "burner");
        let kept: usize = ids
            .iter()
            .map(|id| docker::workload_containers(id).len())
            .sum();
        if all.len() == kept {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "removed replicas' containers remain: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
