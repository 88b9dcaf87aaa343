//! A simulated fleet (`persys-agent sim`, the real binary) against the real scheduler,
//! etcd and mTLS: its nodes join with the join token and their own CSRs, run workloads
//! on the fake runtime and show its log lines; crashes and unpullable images end as
//! they do with Docker.

use persys_tests::{Cluster, ClusterOptions, SimFleet};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// A fleet has this long to be Active (20 nodes take about a second).
const FLEET_START: Duration = Duration::from_secs(30);

fn on_fleet(w: &Value, fleet: &SimFleet) -> bool {
    w["nodeId"]
        .as_str()
        .is_some_and(|n| n.starts_with(&fleet.prefix))
}

#[tokio::test]
async fn twenty_simulated_nodes_register_run_a_workload_and_serve_its_logs() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let fleet = c
        .start_sim("sim", 20, &[], FLEET_START)
        .await
        .expect("20 simulated nodes Active");

    let api = c.api().expect("api");
    let nodes = api.get_json("/nodes").await.expect("GET /nodes");
    let active: BTreeSet<String> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["status"] == "Active")
        .filter_map(|n| n["nodeId"].as_str().map(String::from))
        .collect();
    assert_eq!(
        active,
        fleet.node_ids().into_iter().collect::<BTreeSet<_>>()
    );
    // Each joined with its own key: twenty distinct certificates on disk.
    let certs: BTreeSet<String> = fleet
        .node_ids()
        .iter()
        .map(|id| {
            let path = c
                .dir
                .path()
                .join(format!("{}fleet", fleet.prefix))
                .join(id)
                .join("node.crt");
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    assert_eq!(certs.len(), 20);

    let w = c
        .submit(json!({"name": "sim-web", "image": "nginx:1.27", "command": ["nginx", "-g", "daemon off;"]}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running on a simulated node");
    assert!(on_fleet(&running, &fleet), "{running}");
    assert!(
        running["containerId"]
            .as_str()
            .is_some_and(|c| c.starts_with("fake")),
        "{running}"
    );

    let logs = api
        .client()
        .get(api.url(&format!("/workloads/{id}/logs")))
        .send()
        .await
        .expect("logs call");
    assert_eq!(logs.status(), 200);
    let text = logs.text().await.expect("text");
    assert!(text.contains("command: nginx -g daemon off;"), "{text}");
    assert!(text.contains("started (image nginx:1.27)"), "{text}");
}

#[tokio::test]
async fn on_simulated_nodes_an_unpullable_image_backs_off_and_a_crashing_container_fails() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    // Every container of this fleet crashes (exit 1) 0.2-2 s after starting.
    let fleet = c
        .start_sim(
            "crashy",
            3,
            &["--fake-crash-rate", "1", "--fake-seed", "1"],
            FLEET_START,
        )
        .await
        .expect("3 simulated nodes Active");

    // The same status the Docker runtime gives (tests/tests/lifecycle.rs).
    let w = c
        .submit(json!({"image": "persys-test/does-not-exist:never"}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let v = c
        .wait_status(&id, "ImagePullBackOff", Duration::from_secs(20))
        .await
        .expect("ImagePullBackOff");
    assert!(on_fleet(&v, &fleet), "{v}");
    let reason = v["statusReason"].as_str().unwrap_or_default();
    assert!(reason.contains("pull access denied"), "{v}");

    let w = c
        .submit(
            json!({"image": "busybox:local", "command": ["sleep", "3600"], "restartPolicy": "no"}),
        )
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let v = c
        .wait_workload(
            &id,
            Duration::from_secs(20),
            "Failed with exit code 1",
            |w| w["status"] == "Failed" && w["exitCode"] == 1,
        )
        .await
        .expect("the simulated crash is reported");
    assert!(on_fleet(&v, &fleet), "{v}");
}
