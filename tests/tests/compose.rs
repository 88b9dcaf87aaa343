//! docker-compose workloads on real Docker: projects run through the agent's own Compose
//! engine (bollard), services reach each other by name, `depends_on: service_healthy`
//! waits for the health check, builds run through the engine, and stop, start, delete,
//! logs per service and an agent killed mid-start behave as for single containers.

use base64::Engine;
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn one_agent() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `web` serves a page and turns healthy once it answers; `client` starts only then and
/// fetches the page by the service name.
const WEB_AND_CLIENT: &str = r#"
services:
  web:
    image: busybox:local
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && sleep 2 && httpd -f -p 8080 -h /www"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"]
      interval: 500ms
      timeout: 2s
      retries: 30
  client:
    image: busybox:local
    depends_on:
      web: {condition: service_healthy}
    command: ["sh", "-c", "wget -q -O - http://web:8080/ && echo fetched; sleep 3600"]
"#;

fn service<'a>(w: &'a Value, name: &str) -> &'a Value {
    w["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or(&Value::Null)
}

async fn logs(c: &Cluster, id: &str, service: &str) -> String {
    let api = c.api().expect("api");
    let url = api.url(&format!("/workloads/{id}/logs?service={service}"));
    match api.client().get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_logs(c: &Cluster, id: &str, service: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = logs(c, id, service).await;
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One label's value on each running container of the project.
fn running_label(workload: &str, label: &str) -> Vec<String> {
    docker::running_workload_labels(workload)
        .iter()
        .filter_map(|l| l[label].as_str().map(String::from))
        .collect()
}

fn running_services(workload: &str) -> Vec<String> {
    running_label(workload, "persys.service")
}

#[tokio::test]
async fn a_two_service_project_runs_by_service_name_and_follows_stop_start_delete() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let w = c
        .submit(json!({"name": "shop", "type": "docker-compose", "compose": b64(WEB_AND_CLIENT)}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running");
    assert_eq!(service(&running, "web")["status"], "Running", "{running}");
    assert_eq!(service(&running, "web")["health"], "healthy", "{running}");
    assert_eq!(
        service(&running, "client")["status"],
        "Running",
        "{running}"
    );
    assert_eq!(running["type"], "docker-compose");

    // The client reached the web service by its name, and only once it was healthy.
    let client_log = wait_logs(&c, &id, "client", "fetched").await;
    assert!(
        client_log.contains("hello-from-web"),
        "client log: {client_log:?}"
    );
    let mut services = running_services(&id);
    services.sort();
    assert_eq!(services, ["client", "web"], "one container per service");
    let web_started = service(&running, "web")["containerIds"][0]
        .as_str()
        .map(String::from);
    let client_started = service(&running, "client")["containerIds"][0]
        .as_str()
        .map(String::from);
    let started_at = |cid: Option<String>| {
        cid.and_then(|c| docker::inspect(&c))
            .and_then(|v| v["State"]["StartedAt"].as_str().map(String::from))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .expect("started")
    };
    // web sleeps 2 s before it serves: the client cannot have started before that.
    let gap = started_at(client_started) - started_at(web_started);
    assert!(
        gap >= chrono::Duration::milliseconds(1900),
        "client started {gap} after web"
    );

    let (s, v) = api
        .post(&format!("/workloads/{id}/stop"), &json!({}))
        .await
        .expect("stop");
    assert!((200..300).contains(&s), "stop answered {s}: {v}");
    c.wait_status(&id, "Stopped", Duration::from_secs(30))
        .await
        .expect("Stopped");
    assert!(running_services(&id).is_empty(), "every service stopped");

    let (s, v) = api
        .post(&format!("/workloads/{id}/start"), &json!({}))
        .await
        .expect("start");
    assert!((200..300).contains(&s), "start answered {s}: {v}");
    c.wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running again");
    assert_eq!(
        running_services(&id).len(),
        2,
        "both services again, no copies"
    );

    let (s, v) = api
        .delete(&format!("/workloads/{id}"))
        .await
        .expect("delete");
    assert!((200..300).contains(&s), "delete answered {s}: {v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = api.get(&format!("/workloads/{id}")).await.expect("get");
        if s == 404
            && docker::workload_containers(&id).is_empty()
            && docker::labelled("network", "persys.workloadId", &id).is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "record, containers and network removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_original_cli_body_is_accepted_and_runs_with_replicas_and_volumes() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let yaml = r#"
services:
  worker:
    image: busybox:local
    command: ["sh", "-c", "echo $$HOSTNAME >> /data/seen; sleep 3600"]
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.1", memory: 32M}}
    volumes: ["data:/data"]
volumes:
  data: {}
"#;
    // As the original CLI sends it (`workload schedule --type docker-compose --compose`).
    let body = json!({
        "id": "", "name": "workers", "type": "docker-compose", "compose": b64(yaml),
        "gitBranch": "main", "restartPolicy": "no", "resources": {"cpu": 0, "memory": 0},
        "status": "", "createdAt": "0001-01-01T00:00:00Z"
    });
    let api = c.api().expect("api");
    let (s, v) = api
        .post("/workloads/schedule", &body)
        .await
        .expect("schedule");
    assert_eq!(s, 200, "{v}");
    let id = v["workloadId"].as_str().expect("workloadId").to_string();
    assert!(v["nodeId"].is_string(), "{v}");
    let w = c
        .wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running");
    assert_eq!(
        service(&w, "worker")["containerIds"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Placement reserved both replicas' limits.
    assert_eq!(w["resources"]["cpu"], 200, "{w}");
    assert_eq!(w["resources"]["memory"], 64, "{w}");
    let volumes = docker::labelled("volume", "persys.workloadId", &id);
    assert_eq!(
        volumes.len(),
        1,
        "one named volume for the workload: {volumes:?}"
    );
    let text = logs(&c, &id, "worker").await;
    let _ = text; // both replicas write to the shared volume; their logs are empty by design
    let (s, _) = api
        .delete(&format!("/workloads/{id}"))
        .await
        .expect("delete");
    assert!((200..300).contains(&s));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker::labelled("volume", "persys.workloadId", &id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the workload's volume is removed with it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_compose_files_are_clear_errors_and_nothing_is_stored() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let api = c.api().expect("api");
    for (yaml, expect) in [
        ("services: [web", "not valid YAML"),
        (
            "services: {web: {image: a, depends_on: [db]}}",
            "services.web.depends_on: unknown service \"db\"",
        ),
        (
            "services: {web: {image: a, privileged: true}}",
            "services.web.privileged: unsupported key",
        ),
        (
            "services: {web: {image: a, volumes: ['/:/host']}}",
            "outside the project directory",
        ),
    ] {
        let (s, v) = api
            .post(
                "/workloads",
                &json!({"type": "docker-compose", "compose": b64(yaml)}),
            )
            .await
            .expect("post");
        assert_eq!(s, 400, "{yaml}: {v}");
        assert_eq!(v["code"], "invalid", "{v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.starts_with("compose: "), "names the field: {msg}");
        assert!(msg.contains(expect), "{yaml}: {msg}");
        assert!(v["requestId"].is_string(), "{v}");
    }
    let listed = api.get_json("/workloads").await.expect("list");
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(0),
        "nothing stored: {listed}"
    );
}

#[tokio::test]
async fn an_image_that_is_not_there_fails_the_project_and_leaves_nothing_running() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let yaml = r#"
services:
  ok:
    image: busybox:local
    command: ["sleep", "3600"]
  broken:
    image: persys-test/absent:never
    depends_on: [ok]
"#;
    let w = c
        .submit(json!({"name": "broken", "type": "docker-compose", "compose": b64(yaml)}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let failed = c
        .wait_status(&id, "Failed", Duration::from_secs(90))
        .await
        .expect("Failed");
    let reason = failed["statusReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("persys-test/absent:never"),
        "reason names the image: {reason}"
    );
    assert!(
        docker::running_workload_containers(&id).is_empty(),
        "nothing left running"
    );
}

#[tokio::test]
async fn an_agent_killed_during_a_project_start_finishes_it_without_duplicates() {
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    let yaml = r#"
services:
  db:
    image: busybox:local
    command: ["sh", "-c", "sleep 4; touch /tmp/ready; sleep 3600"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 500ms
      retries: 40
  app:
    image: busybox:local
    depends_on: {db: {condition: service_healthy}}
    command: ["sleep", "3600"]
"#;
    let w = c
        .submit(json!({"name": "slow", "type": "docker-compose", "compose": b64(yaml)}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    // Killed while db is not yet healthy: app is not made yet.
    let deadline = Instant::now() + Duration::from_secs(20);
    while running_services(&id).is_empty() {
        assert!(Instant::now() < deadline, "db started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill_agent(0);
    assert_eq!(running_services(&id), ["db"], "killed before app was made");
    c.start_agent(0).await.expect("agent back");
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running after the restart");
    assert_eq!(service(&running, "app")["status"], "Running", "{running}");
    let mut services = running_services(&id);
    services.sort();
    assert_eq!(services, ["app", "db"], "adopted, not duplicated");
    assert_eq!(
        docker::workload_containers(&id).len(),
        2,
        "no second copy of anything"
    );
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Generations of the project's running containers, one entry per container.
fn running_generations(workload: &str) -> Vec<String> {
    running_label(workload, "persys.generation")
}

#[tokio::test]
async fn the_cli_runs_a_compose_file_describes_its_services_logs_one_and_redeploys_it() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let file = c.dir.path().join("compose.yaml");
    std::fs::write(&file, WEB_AND_CLIENT).expect("compose file");
    let path = file.to_str().expect("utf-8 path");
    let o = c
        .cli(&["run", "--name", "cli-shop", "--compose", path, "--wait"])
        .expect("persys run");
    assert!(
        o.status.success(),
        "persys run --compose --wait: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let id = stdout(&o)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let running = c
        .wait_status(&id, "Running", Duration::from_secs(5))
        .await
        .expect("Running once run --wait returns");
    assert_eq!(running["type"], "docker-compose");

    let o = c.cli(&["describe", &id]).expect("describe");
    assert!(o.status.success());
    let text = stdout(&o);
    let services: Vec<&str> = text.lines().filter(|l| l.starts_with("Service:")).collect();
    assert_eq!(services.len(), 2, "{text}");
    assert!(
        services
            .iter()
            .any(|l| l.contains(" web Running, healthy, 1 container")),
        "{text}"
    );
    assert!(
        services.iter().any(|l| l.contains(" client Running")),
        "{text}"
    );

    // logs --service shows that service's lines only.
    let deadline = Instant::now() + Duration::from_secs(20);
    let client_log = loop {
        let o = c.cli(&["logs", &id, "--service", "client"]).expect("logs");
        let text = stdout(&o);
        if text.contains("fetched") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(client_log.contains("hello-from-web"), "{client_log:?}");
    let o = c.cli(&["logs", &id, "--service", "web"]).expect("logs");
    assert!(o.status.success());
    assert!(
        !stdout(&o).contains("fetched"),
        "web's log has no client lines"
    );
    let o = c.cli(&["logs", &id, "--service", "nope"]).expect("logs");
    assert!(!o.status.success(), "an unknown service is an error");

    // redeploy: a new generation replaces the whole project, one copy per service.
    let before = running["generation"].as_u64().expect("generation");
    let o = c.cli(&["redeploy", &id]).expect("redeploy");
    assert!(
        o.status.success(),
        "redeploy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Make before break: web needs 2 s to turn healthy and client waits for it, so the
    // old generation is seen running beside the new one while the new one comes up.
    let old_generation = before.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gens = running_generations(&id);
        if gens.contains(&old_generation) && gens.iter().any(|g| *g != old_generation) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old generation ran until the new one was up: {gens:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = c
        .wait_workload(
            &id,
            Duration::from_secs(60),
            "redeployed and Running",
            |w| w["generation"].as_u64() > Some(before) && w["status"] == "Running",
        )
        .await
        .expect("redeployed");
    let generation = after["generation"]
        .as_u64()
        .expect("generation")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gens = running_generations(&id);
        if gens.len() == 2 && gens.iter().all(|g| *g == generation) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only the new generation runs, one copy per service: {gens:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_project_deleted_while_it_starts_leaves_nothing_behind() {
    let c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    // `client` waits for a health check that passes only after a minute: the start is
    // still in flight when the workload is deleted.
    let yaml = r#"
services:
  slow:
    image: busybox:local
    command: ["sh", "-c", "sleep 60; touch /tmp/ready; sleep 3600"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 500ms
      retries: 200
  client:
    image: busybox:local
    depends_on:
      slow: {condition: service_healthy}
    command: ["sleep", "3600"]
"#;
    let w = c
        .submit(json!({"name": "slow", "type": "docker-compose", "compose": b64(yaml)}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    // Wait until the first service's container exists: the start is under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_services(&id) != ["slow"] {
        assert!(Instant::now() < deadline, "the slow service starts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = api.get(&format!("/workloads/{id}")).await.expect("get");
    assert_eq!(s, 200);
    let (s, v) = api
        .delete(&format!("/workloads/{id}"))
        .await
        .expect("delete");
    assert!((200..300).contains(&s), "delete answered {s}: {v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = api.get(&format!("/workloads/{id}")).await.expect("get");
        if s == 404 && docker::workload_containers(&id).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "record and containers removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing the cut-short start was making shows up afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        docker::workload_containers(&id).is_empty(),
        "no container appeared after the delete"
    );
    assert!(
        docker::labelled("network", "persys.workloadId", &id).is_empty(),
        "no network left"
    );
}

#[tokio::test]
async fn a_project_on_a_lost_node_is_placed_again_whole_on_another() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(), AgentOptions::default()],
        node_timeout_ms: Some(3000),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let w = c
        .submit(json!({
            "name": "mover", "type": "docker-compose", "compose": b64(WEB_AND_CLIENT),
            "restartPolicy": "always"
        }))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let first = c
        .wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running");
    let lost = first["nodeId"].as_str().expect("placed").to_string();
    let idx = c
        .agents
        .iter()
        .position(|a| a.node_id == lost)
        .expect("an agent of the cluster");
    let gen1 = first["generation"].as_u64().expect("generation");
    c.kill_agent(idx);
    let moved = c
        .wait_workload(
            &id,
            Duration::from_secs(90),
            "Running on the other node",
            |w| w["status"] == "Running" && w["nodeId"] != lost.as_str(),
        )
        .await
        .expect("placed again");
    let gen2 = moved["generation"].as_u64().expect("generation");
    assert!(gen2 > gen1, "a new generation: {moved}");
    let survivor = moved["nodeId"].as_str().expect("node").to_string();
    // Both services run on the new node, of the new generation.
    let mut on_new: Vec<String> = docker::running_workload_containers(&id)
        .iter()
        .filter_map(|c| docker::inspect(c))
        .filter(|v| {
            v["Config"]["Labels"]["persys.nodeId"] == survivor.as_str()
                && v["Config"]["Labels"]["persys.generation"] == gen2.to_string().as_str()
        })
        .filter_map(|v| {
            v["Config"]["Labels"]["persys.service"]
                .as_str()
                .map(String::from)
        })
        .collect();
    on_new.sort();
    assert_eq!(on_new, ["client", "web"], "the whole project moved");
    let client_log = wait_logs(&c, &id, "client", "fetched").await;
    assert!(client_log.contains("hello-from-web"), "{client_log:?}");
}

#[tokio::test]
async fn a_stopped_project_stays_stopped_across_an_agent_restart_until_started() {
    let mut c = Cluster::start(one_agent()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let yaml = "services:\n  web:\n    image: busybox:local\n    command: [\"sleep\", \"3600\"]\n";
    let w = c
        .submit(json!({"name": "held", "type": "docker-compose", "compose": b64(yaml)}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    c.wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running");
    let (s, v) = api
        .post(&format!("/workloads/{id}/stop"), &json!({}))
        .await
        .expect("stop");
    assert!((200..300).contains(&s), "stop answered {s}: {v}");
    c.wait_status(&id, "Stopped", Duration::from_secs(30))
        .await
        .expect("Stopped");
    c.kill_agent(0);
    c.start_agent(0).await.expect("agent back");
    // The agent resumes the starts it kept; a stopped project is not one of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        running_services(&id).is_empty(),
        "the stopped project was started again by the agent's restart"
    );
    let (s, v) = api
        .post(&format!("/workloads/{id}/start"), &json!({}))
        .await
        .expect("start");
    assert!((200..300).contains(&s), "start answered {s}: {v}");
    c.wait_status(&id, "Running", Duration::from_secs(60))
        .await
        .expect("Running again");
    assert_eq!(running_services(&id), ["web"]);
}
