//! Services on real Docker: replicas spread over nodes and kept at their count, rolling
//! updates that wait for health, roll back a bad revision without touching the old
//! replicas, and `undo`.

use persys_tests::{docker, AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn agents(n: usize) -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default(); n],
        node_timeout_ms: Some(2000),
        ..Default::default()
    }
}

/// A service of busybox httpd on 8080 serving `page`, with an HTTP health check on
/// `check_port`.
fn web(replicas: u32, page: &str, check_port: u16) -> Value {
    json!({
        "kind": "Service",
        "name": "web",
        "replicas": replicas,
        "template": {
            "image": TEST_IMAGE,
            "command": ["sh", "-c", format!("mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www")],
            "healthCheck": {"http": {"path": "/", "port": check_port}, "intervalSeconds": 1, "retries": 2}
        },
        "update": {"parallelism": 1, "order": "start-first", "minHealthySeconds": 2,
                   "healthyDeadlineSeconds": 15, "failureAction": "rollback"}
    })
}

async fn service(api: &Api) -> Value {
    api.get_json("/services/web")
        .await
        .expect("GET /services/web")
}

/// Wait until `pred` holds for the service view.
async fn wait_service(
    api: &Api,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = service(api).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "service not {what} within {timeout:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn replicas(s: &Value) -> Vec<Value> {
    s["replicaWorkloads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Replicas running revision `rev` that serve (running and healthy).
fn serving_at(s: &Value, rev: u64) -> usize {
    replicas(s)
        .iter()
        .filter(|w| {
            w["serviceRevision"] == rev && w["status"] == "Running" && w["health"] == "healthy"
        })
        .count()
}

fn container_ip(container: &str) -> Option<String> {
    let v = docker::inspect(container)?;
    v["NetworkSettings"]["Networks"]
        .as_object()?
        .values()
        .find_map(|n| {
            n["IPAddress"]
                .as_str()
                .filter(|ip| !ip.is_empty())
                .map(String::from)
        })
}

#[tokio::test]
async fn replicas_spread_over_nodes_and_come_back_after_a_killed_container_and_a_lost_node() {
    let mut c = Cluster::start(agents(3)).await.expect("cluster starts");
    let api = c.api().expect("api");
    let (status, body) = api
        .put("/services/web", &web(3, "v1", 8080))
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "created");
    let s = wait_service(&api, Duration::from_secs(40), "3 healthy", |s| {
        serving_at(s, 1) == 3
    })
    .await;
    let nodes: BTreeSet<String> = replicas(&s)
        .iter()
        .filter_map(|w| w["nodeId"].as_str().map(String::from))
        .collect();
    assert_eq!(nodes.len(), 3, "one replica per node: {s}");
    let names: BTreeSet<String> = replicas(&s)
        .iter()
        .filter_map(|w| w["name"].as_str().map(String::from))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["web-0".into(), "web-1".into(), "web-2".into()])
    );
    assert_eq!(s["readyReplicas"], 3);

    // The same manifest again changes nothing.
    let (_, again) = api
        .put("/services/web", &web(3, "v1", 8080))
        .await
        .expect("apply");
    assert_eq!(again["result"], "unchanged", "{again}");

    // A replica's container is killed: the engine restarts it, it serves again.
    let victim = replicas(&s)[0]["containerId"]
        .as_str()
        .expect("container")
        .to_string();
    let out = std::process::Command::new("docker")
        .args(["kill", &victim])
        .output()
        .expect("docker kill");
    assert!(out.status.success());
    // A node is lost: its replica is placed elsewhere.
    let lost = c.agents[2].node_id.clone();
    c.kill_agent(2);
    docker::remove_node_containers(&lost);
    let s = wait_service(&api, Duration::from_secs(40), "back to 3 healthy", |s| {
        serving_at(s, 1) == 3 && replicas(s).iter().all(|w| w["nodeId"] != lost.as_str())
    })
    .await;
    assert_eq!(replicas(&s).len(), 3, "exactly 3 replicas: {s}");

    // Scale down removes the highest indexes.
    let (status, _) = api
        .post("/services/web/scale", &json!({"replicas": 1}))
        .await
        .expect("scale");
    assert_eq!(status, 200);
    let s = wait_service(&api, Duration::from_secs(30), "scaled to 1", |s| {
        replicas(s).len() == 1
    })
    .await;
    assert_eq!(replicas(&s)[0]["name"], "web-0");
    // Deleting the service removes its replicas.
    let (status, _) = api.delete("/services/web").await.expect("delete");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = api.get_json("/workloads").await.expect("list");
        if all
            .as_array()
            .is_some_and(|a| a.iter().all(|w| w["serviceId"] != "web"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "replicas removed: {all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = api.get("/services/web").await.expect("get");
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_failing_revision_rolls_back_and_the_old_replicas_serve_throughout() {
    let c = Cluster::start(agents(3)).await.expect("cluster starts");
    let api = c.api().expect("api");
    let (status, body) = api
        .put("/services/web", &web(3, "v1", 8080))
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    let s = wait_service(&api, Duration::from_secs(40), "3 healthy", |s| {
        serving_at(s, 1) == 3
    })
    .await;
    let old: Vec<(String, String)> = replicas(&s)
        .iter()
        .map(|w| {
            let id = w["id"].as_str().expect("id").to_string();
            let ip = container_ip(w["containerId"].as_str().expect("container")).expect("ip");
            (id, ip)
        })
        .collect();

    // A client polls every old replica every 100 ms for the whole rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (stop, failures, rounds) = (stop.clone(), failures.clone(), rounds.clone());
        let ips: Vec<String> = old.iter().map(|(_, ip)| ip.clone()).collect();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .no_proxy()
                .build()
                .expect("client");
            while !stop.load(Ordering::Relaxed) {
                for ip in &ips {
                    let ok = http
                        .get(format!("http://{ip}:8080/"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Revision 2 checks a port nothing serves: it never becomes healthy.
    let (status, body) = api
        .put("/services/web", &web(3, "v2", 9999))
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "configured");
    assert_eq!(body["service"]["revision"], 2);
    let s = wait_service(&api, Duration::from_secs(60), "rolled back", |s| {
        s["rollout"] == "rolledBack"
    })
    .await;
    assert_eq!(s["revision"], 1, "revision 1 is current again: {s}");
    assert!(
        s["rolloutReason"]
            .as_str()
            .unwrap_or_default()
            .contains("did not serve within 15s"),
        "{s}"
    );
    let s = wait_service(
        &api,
        Duration::from_secs(30),
        "back to the old replicas only",
        |s| replicas(s).len() == 3 && serving_at(s, 1) == 3,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    poller.await.expect("poller");
    let ids: BTreeSet<String> = replicas(&s)
        .iter()
        .filter_map(|w| w["id"].as_str().map(String::from))
        .collect();
    let old_ids: BTreeSet<String> = old.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, old_ids, "the old replicas were never replaced");
    assert!(
        rounds.load(Ordering::Relaxed) > 50,
        "the client polled throughout"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request to an old replica failed"
    );
}

#[tokio::test]
async fn a_good_revision_rolls_out_one_at_a_time_and_undo_goes_back() {
    let c = Cluster::start(agents(2)).await.expect("cluster starts");
    let api = c.api().expect("api");
    let (status, body) = api
        .put("/services/web", &web(2, "v1", 8080))
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    wait_service(&api, Duration::from_secs(40), "2 healthy", |s| {
        serving_at(s, 1) == 2
    })
    .await;
    let (_, body) = api
        .put("/services/web", &web(2, "v2", 8080))
        .await
        .expect("apply");
    assert_eq!(body["result"], "configured");
    // One at a time: never more than one replica of revision 2 not serving, and never
    // fewer than 2 serving replicas in all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut min_serving = usize::MAX;
    loop {
        let s = service(&api).await;
        let starting = replicas(&s)
            .iter()
            .filter(|w| w["serviceRevision"] == 2 && w["health"] != "healthy")
            .count();
        assert!(starting <= 1, "parallelism 1: {s}");
        let serving = serving_at(&s, 1) + serving_at(&s, 2);
        min_serving = min_serving.min(serving);
        if s["rollout"] == "complete" && serving_at(&s, 2) == 2 && replicas(&s).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "rollout did not complete: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        min_serving >= 2,
        "start-first kept 2 serving (saw {min_serving})"
    );
    let s = service(&api).await;
    let revisions: Vec<u64> = s["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|r| r["revision"].as_u64())
        .collect();
    assert_eq!(revisions, [1, 2]);
    // Undo: revision 1's template again, as revision 3.
    let (status, body) = api
        .post("/services/web/undo", &json!({}))
        .await
        .expect("undo");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revision"], 3);
    let s = wait_service(&api, Duration::from_secs(60), "undone", |s| {
        s["rollout"] == "complete" && serving_at(s, 3) == 2 && replicas(s).len() == 2
    })
    .await;
    let page = s["template"]["command"][2]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        page.contains("echo v1"),
        "revision 3 is revision 1's template: {page}"
    );
}

fn cli_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.cli(args).expect("persys runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "persys {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_documented_service_applies_as_written_and_the_cli_follows_its_rollouts() {
    let c = Cluster::start(agents(2)).await.expect("cluster starts");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/services/web.yaml");
    let out = cli_ok(&c, &["apply", "-f", file]);
    assert!(
        out.contains("service/web created (revision 1, 3 replicas)"),
        "{out}"
    );
    cli_ok(
        &c,
        &["service", "rollout", "status", "web", "--timeout", "60"],
    );
    let api = c.api().expect("api");
    let s = wait_service(&api, Duration::from_secs(30), "3 healthy", |s| {
        serving_at(s, 1) == 3
    })
    .await;
    for w in replicas(&s) {
        assert_eq!(w["serviceId"], "web");
        assert_eq!(w["health"], "healthy");
    }
    let ls = cli_ok(&c, &["service", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("web") && l.contains("3/3")),
        "{ls}"
    );
    // Applying it again changes nothing.
    let out = cli_ok(&c, &["apply", "-f", file]);
    assert!(out.contains("service/web unchanged"), "{out}");
    // A changed template rolls out.
    let dir = tempfile::tempdir().expect("tempdir");
    let changed = dir.path().join("web.yaml");
    let text = std::fs::read_to_string(file)
        .expect("read")
        .replace("\"8080\", \"-h\"", "\"8080\", \"-v\", \"-h\"");
    std::fs::write(&changed, text).expect("write");
    let out = cli_ok(&c, &["apply", "-f", changed.to_str().expect("path")]);
    assert!(
        out.contains("service/web configured (revision 2, 3 replicas)"),
        "{out}"
    );
    cli_ok(
        &c,
        &["service", "rollout", "status", "web", "--timeout", "90"],
    );
    let history = cli_ok(&c, &["service", "rollout", "history", "web"]);
    assert!(
        history.contains("2 (current)") && history.lines().any(|l| l.starts_with('1')),
        "{history}"
    );
    let out = cli_ok(&c, &["service", "rollout", "undo", "web"]);
    assert!(out.is_empty() || out.contains("revision"), "{out}");
    cli_ok(
        &c,
        &["service", "rollout", "status", "web", "--timeout", "90"],
    );
    let get = cli_ok(&c, &["service", "get", "web"]);
    assert!(get.contains("Revision:  3"), "{get}");
    // The CLI's failure: one line, non-zero.
    let out = c.cli(&["service", "get", "nope"]).expect("persys runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("service nope not found"), "{err}");
    cli_ok(&c, &["service", "rm", "web"]);
}

#[tokio::test]
async fn a_scheduled_service_with_forbid_never_overlaps_its_runs_and_trims_its_history() {
    let c = Cluster::start(agents(1)).await.expect("cluster starts");
    let api = c.api().expect("api");
    let (status, body) = api
        .put(
            "/services/tick",
            &json!({
                "name": "tick",
                "schedule": "*/2 * * * * *",
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistory": 2,
                "template": {"image": TEST_IMAGE, "command": ["sleep", "5"]}
            }),
        )
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    let mut seen = BTreeSet::new();
    let mut most_active = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let all = api.get_json("/workloads").await.expect("list");
        let runs: Vec<&Value> = all
            .as_array()
            .expect("array")
            .iter()
            .filter(|w| w["serviceId"] == "tick" && w["desiredState"] == "Running")
            .collect();
        let active = runs
            .iter()
            .filter(|w| !matches!(w["status"].as_str(), Some("Exited" | "Failed" | "Stopped")))
            .count();
        most_active = most_active.max(active);
        for w in &runs {
            seen.insert(w["id"].as_str().unwrap_or_default().to_string());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most_active, 1, "Forbid: one run at a time");
    assert!(seen.len() >= 3, "a new run after each one ended: {seen:?}");
    // Finished runs beyond the history are removed.
    let kept = wait_finished_at_most(&api, 2).await;
    assert!(
        kept <= 2,
        "history trimmed to 2 successful runs, {kept} kept"
    );
    assert!(seen.len() > kept, "older runs were removed");
    let rec = api.get_json("/services/tick").await.expect("get");
    assert_eq!(rec["schedule"], "*/2 * * * * *");
    assert!(rec["lastScheduleTime"].is_string(), "{rec}");
}

/// Finished runs of `tick` once trimming had its chance (a few seconds).
async fn wait_finished_at_most(api: &Api, limit: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = api.get_json("/workloads").await.expect("list");
        let finished = all
            .as_array()
            .expect("array")
            .iter()
            .filter(|w| {
                w["serviceId"] == "tick"
                    && w["desiredState"] == "Running"
                    && w["status"] == "Exited"
            })
            .count();
        if finished <= limit || Instant::now() > deadline {
            return finished;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The skydns entries under `<name>.<domain>`: (key, record).
async fn dns_entries(c: &Cluster, domain: &str, name: &str) -> Vec<(String, Value)> {
    let mut prefix = String::from("/skydns");
    for label in domain.trim_matches('.').rsplit('.') {
        prefix.push('/');
        prefix.push_str(label);
    }
    prefix.push('/');
    prefix.push_str(name);
    prefix.push('/');
    let mut etcd = c.etcd.client().await.expect("etcd");
    let got = etcd
        .get(
            prefix.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    got.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).to_string(),
                serde_json::from_slice(kv.value()).unwrap_or(Value::Null),
            )
        })
        .collect()
}

async fn wait_entries(c: &Cluster, domain: &str, name: &str, n: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = dns_entries(c, domain, name).await;
        if e.len() == n {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {} DNS entries, not {n}: {e:?}",
            e.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serving_replicas_have_dns_records_and_lose_them_when_unhealthy_or_gone() {
    let c = Cluster::start(agents(2)).await.expect("cluster starts");
    let api = c.api().expect("api");
    let node = api
        .get_json(&format!("/nodes/{}", c.agents[0].node_id))
        .await
        .expect("node");
    let domain = node["domainName"]
        .as_str()
        .and_then(|d| d.split_once('.'))
        .map(|(_, d)| d.to_string())
        .expect("the node's domain");
    let (status, body) = api
        .put("/services/web", &web(2, "v1", 8080))
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .put(
            "/services/api",
            &json!({"name": "api", "template": {"image": TEST_IMAGE, "command": ["sleep", "3600"], "ports": ["18181:8080"]}}),
        )
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    let s = wait_service(&api, Duration::from_secs(40), "2 healthy", |s| {
        serving_at(s, 1) == 2
    })
    .await;
    let entries = wait_entries(&c, &domain, "web", 2).await;
    for (_, r) in &entries {
        assert_eq!(r["host"], "127.0.0.1", "the node's address: {r}");
        assert!(r.get("port").is_none(), "no published port, no SRV: {r}");
    }
    // Each workload has its own name too.
    wait_entries(&c, &domain, "web-0", 1).await;
    // A published port is an SRV entry.
    let api_entries = wait_entries(&c, &domain, "api", 1).await;
    assert_eq!(api_entries[0].1["port"], 18181, "{api_entries:?}");

    // One replica stops serving: its entry goes, the other stays.
    let sick = replicas(&s)[0].clone();
    let container = sick["containerId"].as_str().expect("container");
    let out = std::process::Command::new("docker")
        .args(["exec", container, "rm", "/www/index.html"])
        .output()
        .expect("docker exec");
    assert!(out.status.success());
    let left = wait_entries(&c, &domain, "web", 1).await;
    assert!(
        !left[0].0.contains(sick["id"].as_str().expect("id")),
        "the sick replica's entry went: {left:?}"
    );

    // The service goes: its entries go.
    api.delete("/services/web").await.expect("delete");
    api.delete("/services/api").await.expect("delete");
    wait_entries(&c, &domain, "web", 0).await;
    wait_entries(&c, &domain, "api", 0).await;
}
