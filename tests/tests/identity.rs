//! No credential is a root credential (issue 9, rows 3–6 of the audit), on a real
//! cluster: real etcd with client-certificate auth, scheduler, agent, mTLS.
//! - etcd refuses a client without its certificate; nothing can be written around
//!   the scheduler;
//! - the join token cannot take over an existing node id; a legitimate
//!   re-registration revokes the older certificate; `node rm` frees the id;
//! - a node certificate may act only as its own node, on its own routes;
//! - the CLI and the agents refuse a server whose certificate is another role's.

use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// An mTLS client presenting `cert`/`key` of the cluster CA, talking to any server role.
fn client_with(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
    let read = |p: &Path| std::fs::read_to_string(p).expect("pem");
    let any = persys_certs::Expected::Roles(vec![
        persys_certs::Role::Scheduler,
        persys_certs::Role::Node,
        persys_certs::Role::Gateway,
    ]);
    let tls =
        persys_certs::client_config(&read(ca), Some((&read(cert), &read(key))), any).expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A client with node `idx`'s own certificate (from its data dir).
fn node_client(c: &Cluster, idx: usize) -> reqwest::Client {
    let d = &c.agents[idx].data_dir;
    client_with(
        &c.scheduler_dir().join("ca.crt"),
        &d.join("node.crt"),
        &d.join("node.key"),
    )
}

fn register_body(node_id: &str, csr: &str) -> serde_json::Value {
    json!({
        "nodeId": node_id, "csr": csr, "hostname": "attacker", "ipAddress": "127.0.0.1",
        "agentPort": 1, "osName": "linux", "kernelVersion": "6", "totalCpu": 64.0,
        "totalMemory": 1_000_000, "labels": {"evil": "yes"}
    })
}

/// The join token's holder, without any node's certificate.
fn joiner(c: &Cluster) -> reqwest::Client {
    let token = c.join_token().expect("token");
    let ca_hash = persys_certs::JoinToken::parse(&token)
        .expect("token")
        .ca_hash;
    let tls = persys_certs::client_config_pinned(
        &ca_hash,
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
        None,
    )
    .expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn etcd_refuses_clients_without_its_certificate() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    // What a workload on the host network would try: write a token record directly.
    let outcome = match c.etcd.anonymous_client().await {
        Err(_) => Err("connect refused".to_string()),
        Ok(mut anon) => anon
            .put("/persys/tokens/forged", r#"{"kind":"api"}"#, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    assert!(
        outcome.is_err(),
        "etcd took a write without a client certificate"
    );
    let mut etcd = c
        .etcd
        .client()
        .await
        .expect("with the scheduler's certificate");
    let got = etcd.get("/persys/tokens/forged", None).await.expect("get");
    assert!(got.kvs().is_empty(), "nothing was written");
    // And there is no plaintext listener to go around TLS.
    let plain = reqwest::Client::new()
        .get(c.etcd.endpoint().replace("https://", "http://") + "/health")
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "etcd answered plain HTTP"
    );
}

#[tokio::test]
async fn the_join_token_cannot_take_over_a_node_and_a_reregistration_revokes_the_old_certificate() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let node = c.node_ids()[0].clone();
    let api = c.api().expect("api");
    let before = api.get_json(&format!("/nodes/{node}")).await.expect("node");

    // Row 4: the join token re-registers the existing id with a key of its own.
    let (csr, _key) = persys_certs::generate_csr(&node, &[]).expect("csr");
    let url = format!("https://127.0.0.1:{}/nodes/register", c.bootstrap_port);
    let resp = joiner(&c)
        .post(&url)
        .bearer_auth(c.join_token().expect("token"))
        .json(&register_body(&node, &csr))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 403, "take-over refused");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("node rm")),
        "{v}"
    );
    let after = api.get_json(&format!("/nodes/{node}")).await.expect("node");
    for field in ["ipAddress", "agentPort", "labels", "totalCpu", "certSerial"] {
        assert_eq!(after[field], before[field], "{field} unchanged");
    }

    // A legitimate re-registration (the agent restarts and renews with its current
    // certificate) works, and the certificate it replaced stops working.
    let d = c.agents[0].data_dir.clone();
    let old = c.dir.path().join("old-node");
    std::fs::create_dir_all(&old).expect("dir");
    for f in ["node.crt", "node.key"] {
        std::fs::copy(d.join(f), old.join(f)).expect("copy");
    }
    c.kill_agent(0);
    c.start_agent(0).await.expect("agent restarts");
    assert!(before["certSerial"].is_string(), "{before}");
    // Until the agent has re-registered and saved the certificate it was given.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let renewed = api.get_json(&format!("/nodes/{node}")).await.expect("node");
        let on_disk = std::fs::read_to_string(d.join("node.crt"))
            .ok()
            .and_then(|pem| persys_certs::pem::parse_certs(&pem).ok())
            .and_then(|c| {
                c.first()
                    .and_then(|der| persys_certs::identity::serial_of(der))
            });
        if renewed["certSerial"] != before["certSerial"]
            && on_disk.as_deref() == renewed["certSerial"].as_str()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted agent renews its certificate: {renewed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = client_with(
        &c.scheduler_dir().join("ca.crt"),
        &old.join("node.crt"),
        &old.join("node.key"),
    );
    let resp = stale
        .post(format!("https://127.0.0.1:{}/nodes/heartbeat", c.api_port))
        .json(&json!({"availableCpu": 1.0, "availableMemory": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 403, "the replaced certificate is refused");
    let fresh = node_client(&c, 0)
        .post(format!("https://127.0.0.1:{}/nodes/heartbeat", c.api_port))
        .json(&json!({"availableCpu": 1.0, "availableMemory": 1}))
        .send()
        .await
        .expect("answer");
    assert_eq!(fresh.status(), 200, "the current certificate works");

    // An admin's `persys node rm` frees the id once nothing is placed there.
    c.kill_agent(0);
    let out = c.cli(&["node", "rm", &node]).expect("cli");
    assert!(
        out.status.success(),
        "node rm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = api.get(&format!("/nodes/{node}")).await.expect("get");
    assert_eq!(s, 404, "the node is gone");
    let resp = joiner(&c)
        .post(&url)
        .bearer_auth(c.join_token().expect("token"))
        .json(&register_body(&node, &csr))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200, "the freed id registers again");
}

#[tokio::test]
async fn a_node_certificate_acts_only_as_its_own_node() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(), AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let (n1, n2) = (c.node_ids()[0].clone(), c.node_ids()[1].clone());
    let node1 = node_client(&c, 0);
    let base = format!("https://127.0.0.1:{}", c.api_port);
    // Row 5: user routes, another node's routes.
    let attempts = [
        ("POST", format!("/nodes/{n2}/cordon"), json!({})),
        ("POST", format!("/nodes/{n1}/cordon"), json!({})),
        (
            "POST",
            "/workloads".to_string(),
            json!({"image": "busybox:local", "volumes": ["/:/host"]}),
        ),
        ("GET", "/workloads".to_string(), json!(null)),
        ("GET", "/events".to_string(), json!(null)),
        (
            "POST",
            format!("/nodes/{n2}/status"),
            json!({"containers": [], "full": true}),
        ),
    ];
    for (method, path, body) in &attempts {
        let req = match *method {
            "GET" => node1.get(format!("{base}{path}")),
            _ => node1.post(format!("{base}{path}")).json(body),
        };
        let resp = req.send().await.expect("answer");
        assert_eq!(resp.status(), 403, "{method} {path} as node {n1}");
        let v: serde_json::Value = resp.json().await.expect("json error");
        assert_eq!(v["code"], "forbidden", "{v}");
    }
    let api = c.api().expect("api");
    let (s, list) = api.get("/workloads").await.expect("list");
    assert_eq!(s, 200);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "nothing was created"
    );
    let n2_now = api.get_json(&format!("/nodes/{n2}")).await.expect("node");
    assert_eq!(n2_now["status"], "Active", "node-2 was not cordoned");
    // Its own routes work.
    let own = node1
        .post(format!("{base}/nodes/{n1}/status"))
        .json(&json!({"containers": [], "full": false}))
        .send()
        .await
        .expect("answer");
    assert_eq!(own.status(), 204);
}

#[tokio::test]
async fn the_cli_refuses_a_server_with_a_node_certificate() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    // Row 6: a node's certificate on the address the CLI dials (here: the agent's own
    // port). The CLI must not send its credentials there.
    let d = c.scheduler_dir();
    let cfg = c.dir.path().join("to-agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "api_endpoint: https://127.0.0.1:{}\nca_cert_path: {}\ncert_path: {}\nkey_path: {}\n",
            c.agents[0].port,
            d.join("ca.crt").display(),
            d.join("admin.crt").display(),
            d.join("admin.key").display()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(persys_tests::cluster::bin("persys"))
        .args(["node", "list"])
        .env("PERSYS_CONFIG", &cfg)
        .env_remove("HOME")
        .output()
        .expect("cli runs");
    assert!(
        !out.status.success(),
        "the CLI talked to a node as if the API"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    // The same config against the scheduler works.
    let ok = c.cli(&["node", "list"]).expect("cli");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The node's certificate carries only its verified address and its identity.
    let pem = std::fs::read_to_string(c.agents[0].data_dir.join("node.crt")).expect("cert");
    let der = persys_certs::pem::parse_certs(&pem).expect("pem")[0].to_vec();
    assert_eq!(
        persys_certs::Identity::of_certificate(&der),
        Some(persys_certs::Identity::node(&c.node_ids()[0]))
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let names: Vec<String> = cert
        .subject_alternative_name()
        .expect("ext")
        .expect("san")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names.len(), 2, "identity URI and the IP only: {names:?}");
    assert!(!names.iter().any(|n| n.contains("localhost")), "{names:?}");
}

#[tokio::test]
async fn failed_joins_are_rate_limited_per_source_address() {
    let mut c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let token = c.join_token().expect("token");
    let ca_hash = persys_certs::JoinToken::parse(&token)
        .expect("token")
        .ca_hash;
    // The guesser comes from 127.0.0.2; the cluster's agents from 127.0.0.1.
    let tls = persys_certs::client_config_pinned(
        &ca_hash,
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
        None,
    )
    .expect("tls");
    let guesser = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{}/nodes/register", c.bootstrap_port);
    let (csr, _) = persys_certs::generate_csr("guess", &[]).expect("csr");
    let body = register_body("guess", &csr);
    let mut statuses = Vec::new();
    for i in 0..15 {
        let wrong = persys_certs::JoinToken::generate(&ca_hash).to_string();
        let resp = guesser
            .post(&url)
            .bearer_auth(if i < 14 { wrong } else { token.clone() })
            .json(&body)
            .send()
            .await
            .expect("answer");
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"), "429 says when");
            let v: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(v["code"], "rate_limited", "{v}");
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|s| *s == 429),
        "then refused before the token is checked, even the right one: {statuses:?}"
    );
    // Other sources still join.
    c.add_agent(AgentOptions::default())
        .await
        .expect("an agent from 127.0.0.1 joins");
}
