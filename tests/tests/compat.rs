//! The original persys CLI's bodies and list shapes.

use persys_tests::{AgentOptions, Cluster, ClusterOptions};

const FIXTURES: [&str; 3] = [
    "schedule-minimal.json",
    "schedule-flags-all.json",
    "schedule-full.json",
];

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/fixtures/compat/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

/// `POST /workloads/schedule` of fixture `f` (`body`): the answer the original CLI
/// needs (200, string `workloadId`, `nodeId`, `status`), placed on `node`.
async fn schedule(
    api: &persys_tests::Api,
    f: &str,
    body: Vec<u8>,
    node: &str,
) -> serde_json::Value {
    let (status, v) = api
        .post_raw("/workloads/schedule", body, "application/json")
        .await
        .expect("answer");
    assert_eq!(status, 200, "{f}: {v}");
    for key in ["workloadId", "nodeId", "status"] {
        assert!(v[key].is_string(), "{f}: {key} is a string in {v}");
    }
    assert_eq!(v["nodeId"], node, "{f} placed");
    v
}

#[tokio::test]
async fn original_cli_bodies_are_accepted_stored_and_listed_in_original_shapes() {
    // schedule-full.json carries labels env=prod, region=us-west, which the original
    // treats as a placement constraint: give the node those labels.
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions {
            cpu: Some(2.0),
            memory_mb: Some(2048),
            ..Default::default()
        }
        .label("env", "prod")
        .label("region", "us-west")],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    // schedule-full.json bind mounts /srv/...: host paths are refused until an admin's
    // cluster policy allows them.
    let (status, v) = api
        .post_raw(
            "/workloads/schedule",
            fixture("schedule-full.json"),
            "application/json",
        )
        .await
        .expect("answer");
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("policy_denied")),
        "{v}"
    );
    let (status, v) = api
        .put(
            "/cluster/policy",
            &serde_json::json!({"allowedHostPaths": [{"prefix": "/srv", "mode": "rw"}]}),
        )
        .await
        .expect("policy");
    assert_eq!(status, 200, "{v}");
    let node = c.agents[0].node_id.clone();
    let mut etcd = c.etcd.client().await.expect("etcd");

    for f in FIXTURES {
        let v = schedule(&api, f, fixture(f), &node).await;
        assert_eq!(v["node_id"], node.as_str(), "{f}: original server key");
        let id = v["workloadId"].as_str().expect("id");
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "server-assigned id, not the client's"
        );
        let got = etcd
            .get(format!("/workloads/{id}"), None)
            .await
            .expect("etcd get");
        assert_eq!(got.kvs().len(), 1, "{f} stored in etcd");
    }

    let list = api.get_json("/workloads").await.expect("list");
    let arr = list.as_array().expect("GET /workloads is a bare array");
    assert_eq!(arr.len(), 3);
    for w in arr {
        assert!(w["id"].is_string() && w["name"].is_string() && w["image"].is_string());
        assert!(w["createdAt"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
        assert!(w["resources"]["cpu"].is_u64() && w["resources"]["memory"].is_u64());
        assert!(w["envVars"].is_object() && w["labels"].is_object());
        assert!(w["ports"].is_array() && w["volumes"].is_array());
        if !w["command"].is_null() {
            assert!(w["command"].is_string(), "original commands stay strings");
        }
    }
    let full = arr
        .iter()
        .find(|w| w["name"] == "web-full")
        .expect("full fixture stored");
    assert_eq!(full["resources"]["cpu"], 500);
    assert_eq!(full["envVars"]["TEST"], "value");
    assert_eq!(full["ports"][1], "8443:443");
    let flags = arr
        .iter()
        .find(|w| w["name"] == "api")
        .expect("flags fixture stored");
    assert_eq!(flags["envVars"]["URL"], "http://x/?a=1&b=2");
    assert_eq!(flags["restartPolicy"], "always");

    let nodes = api.get_json("/nodes").await.expect("nodes");
    let list = nodes["nodes"].as_array().expect("{\"nodes\": [...]}");
    let n = list
        .iter()
        .find(|n| n["nodeId"] == node.as_str())
        .expect("our node");
    assert!(n["ipAddress"].is_string() && n["labels"].is_object());
    assert_eq!(n["status"], "Active");
    assert!(n["lastHeartbeat"]
        .as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
    assert!(n["totalCpu"].is_number() && n["totalMemory"].is_number());

    let (status, metrics) = api.get("/cluster/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.is_object());

    // The original CLI's filter shapes: status and node.
    let filtered = api
        .get_json(&format!("/workloads?node={node}"))
        .await
        .expect("filter");
    assert_eq!(filtered.as_array().map(Vec::len), Some(3));
    let none = api
        .get_json("/workloads?status=Stopped")
        .await
        .expect("filter");
    assert_eq!(none, serde_json::json!([]));
}

/// The original CLI's Compose bodies (`--type docker-compose --compose <base64>`,
/// `--type docker-compose --local-path DIR`, `--type git-compose --git-repo URL
/// --git-token T`): 200 with the ids it reads, and the projects run. The fixtures name
/// `/srv/shop` and `file:///srv/git`; the test puts them in its own directory.
#[tokio::test]
async fn original_cli_compose_bodies_are_accepted_and_their_projects_run() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let root = c.dir.path().join("compat");
    // A local project that builds its image from a context next to its Compose file.
    let local = root.join("shop");
    std::fs::create_dir_all(local.join("app")).expect("dirs");
    std::fs::write(
        local.join("docker-compose.yml"),
        "services:\n  app:\n    build: ./app\n    command: [\"sh\", \"-c\", \"cat /built.txt; sleep 3600\"]\n",
    )
    .expect("compose");
    std::fs::write(
        local.join("app/Dockerfile"),
        "FROM busybox:local\nRUN echo compat-local-built > /built.txt\n",
    )
    .expect("Dockerfile");
    // A repository named acme/shop, as GitHub would name it.
    let repo = root.join("git").join("acme").join("shop");
    std::fs::create_dir_all(&repo).expect("repo dir");
    let head = persys_tests::git::commit_files(
        &repo,
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: busybox:local\n    command: [\"sleep\", \"3600\"]\n",
        )],
        "first",
    );
    let root_text = root.to_str().expect("utf-8 path");
    let (status, v) = api
        .put(
            "/cluster/policy",
            &serde_json::json!({"allowedHostPaths": [{"prefix": root_text, "mode": "rw"}]}),
        )
        .await
        .expect("policy");
    assert_eq!(status, 200, "{v}");

    let node = c.agents[0].node_id.clone();
    let mut ids = Vec::new();
    for f in [
        "schedule-compose-inline.json",
        "schedule-compose-local.json",
        "schedule-git-compose.json",
    ] {
        let body = String::from_utf8(fixture(f))
            .expect("utf-8 fixture")
            .replace("file:///srv/git", &format!("file://{root_text}/git"))
            .replace("/srv/shop", local.to_str().expect("utf-8 path"));
        let v = schedule(&api, f, body.into_bytes(), &node).await;
        assert!(
            !v.to_string().contains("ghp_compatTokenNeverShown"),
            "{f}: the token is not echoed: {v}"
        );
        ids.push(v["workloadId"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let w = c
            .wait_status(id, "Running", std::time::Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{id} runs: {e}"));
        assert!(
            w["services"].as_array().is_some_and(|s| !s.is_empty()),
            "{w}"
        );
    }
    let git_record = api
        .get_json(&format!("/workloads/{}", ids[2]))
        .await
        .expect("git-compose record");
    assert_eq!(git_record["revision"], head.as_str(), "{git_record}");
    assert_eq!(git_record["labels"]["persys.io/repo"], "acme/shop");
    let listed = api.get_json("/workloads").await.expect("list").to_string();
    assert!(
        !listed.contains("ghp_compatTokenNeverShown"),
        "the token is not in the list"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let logs = loop {
        let text = match api
            .client()
            .get(api.url(&format!("/workloads/{}/logs?service=app", ids[1])))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains("compat-local-built") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        logs.contains("compat-local-built"),
        "the local project's image was built from its context: {logs:?}"
    );
}
