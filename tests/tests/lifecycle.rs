//! Stop, start, delete and exits: the Docker container follows the record.

use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

fn one_agent() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    }
}

fn container_running(id: &str) -> bool {
    docker::inspect(id).is_some_and(|v| v["State"]["Running"] == true)
}

#[tokio::test]
async fn stop_start_and_delete_are_followed_by_the_docker_container() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let w = c
        .submit(json!({"name": "life", "image": TEST_IMAGE, "command": ["sleep", "3600"]}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running");
    let container = running["containerId"]
        .as_str()
        .expect("container id")
        .to_string();
    assert!(container_running(&container));

    let (s, v) = api
        .post(&format!("/workloads/{id}/stop"), &json!({}))
        .await
        .expect("stop");
    assert!((200..300).contains(&s), "stop answered {s}: {v}");
    let stopped = c
        .wait_status(&id, "Stopped", Duration::from_secs(20))
        .await
        .expect("Stopped");
    assert_eq!(stopped["desiredState"], "Stopped");
    assert!(!container_running(&container), "container stopped");

    let (s, v) = api
        .post(&format!("/workloads/{id}/start"), &json!({}))
        .await
        .expect("start");
    assert!((200..300).contains(&s), "start answered {s}: {v}");
    c.wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running again");
    assert_eq!(docker::running_workload_containers(&id).len(), 1);

    let (s, v) = api
        .delete(&format!("/workloads/{id}"))
        .await
        .expect("delete");
    assert!((200..300).contains(&s), "delete answered {s}: {v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) = api.get(&format!("/workloads/{id}")).await.expect("get");
        if s == 404 && docker::workload_containers(&id).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "record and container removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut etcd = c.etcd.client().await.expect("etcd");
    let got = etcd
        .get(format!("/workloads/{id}"), None)
        .await
        .expect("get");
    assert!(got.kvs().is_empty(), "record removed from etcd");
    let (s, body) = api.get(&format!("/workloads/{id}")).await.expect("get");
    assert_eq!(s, 404);
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn container_exiting_with_code_3_is_failed_with_exit_code_quickly() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let w = c
        .submit(json!({"image": TEST_IMAGE, "command": "sleep 1; exit 3", "restartPolicy": "no"}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    c.wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running first");
    let started = Instant::now();
    let failed = c
        .wait_workload(&id, Duration::from_secs(5), "Failed with exit 3", |w| {
            w["status"] == "Failed" || w["status"] == "Exited"
        })
        .await
        .expect("Failed");
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["exitCode"], 3);
    // The container sleeps 1 s; the push must arrive well within 2 s after that.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exit reported after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn missing_image_reports_image_pull_back_off_with_the_engine_reason() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let w = c
        .submit(json!({"image": "persys-test/does-not-exist:never"}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let v = c
        .wait_status(&id, "ImagePullBackOff", Duration::from_secs(60))
        .await
        .expect("ImagePullBackOff");
    let reason = v["statusReason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "reason given");
}

#[tokio::test]
async fn container_gets_limits_labels_env_and_the_shell_form_inside_the_container() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let w = c
        .submit(json!({
            "name": "limited",
            "image": TEST_IMAGE,
            "command": "echo $MODE; sleep 3600",
            "envVars": {"MODE": "prod"},
            "resources": {"cpu": 250, "memory": 64},
            "labels": {"team": "web"},
        }))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(20))
        .await
        .expect("Running");
    let cid = running["containerId"].as_str().expect("container id");
    let info = docker::inspect(cid).expect("inspect");
    let generation = running["generation"].as_u64().expect("generation");
    assert_eq!(
        info["Name"],
        format!("/{}", persys_proto::container_name(&id, generation)),
        "named by workload id and generation"
    );
    assert_eq!(info["HostConfig"]["NanoCpus"], 250_000_000_i64);
    assert_eq!(info["HostConfig"]["Memory"], 64_i64 * 1024 * 1024);
    let labels = &info["Config"]["Labels"];
    assert_eq!(labels["persys.workloadId"], id.as_str());
    assert_eq!(labels["persys.displayName"], "limited");
    assert_eq!(
        labels["persys.generation"],
        running["generation"].to_string()
    );
    assert_eq!(labels["persys.nodeId"], c.agents[0].node_id.as_str());
    assert_eq!(labels["team"], "web");
    assert_eq!(
        info["Config"]["Cmd"],
        json!(["/bin/sh", "-c", "echo $MODE; sleep 3600"]),
        "a string command is the container's own shell form"
    );
    let env = info["Config"]["Env"].as_array().expect("env");
    assert!(env.iter().any(|e| e == "MODE=prod"), "{env:?}");
}
