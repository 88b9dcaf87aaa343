//! mTLS and join-token checks on real listeners.

use persys_certs::{CertificateAuthority, JoinToken};
use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use std::time::{Duration, Instant};

fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    // Any server role: these tests are about what the servers refuse.
    let any = persys_certs::Expected::Roles(vec![
        persys_certs::Role::Scheduler,
        persys_certs::Role::Gateway,
        persys_certs::Role::Node,
    ]);
    let tls = persys_certs::client_config(ca_pem, identity, any).expect("tls config");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn refused(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Err(_) => true,
        Ok(r) => {
            // A TLS 1.3 server may only reject the client certificate after the
            // handshake; then the body read fails.
            r.text().await.is_err()
        }
    }
}

#[tokio::test]
async fn api_and_agent_ports_refuse_clients_without_a_cluster_certificate() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let d = c.scheduler_dir();
    let ca = std::fs::read_to_string(d.join("ca.crt")).expect("ca");
    let other = CertificateAuthority::generate("other-ca").expect("other ca");
    let foreign = other
        .issue_client(&persys_certs::Identity::admin())
        .expect("foreign cert");

    let api = format!("https://127.0.0.1:{}/workloads", c.api_port);
    let agent = format!("https://127.0.0.1:{}/docker/list", c.agents[0].port);
    for url in [&api, &agent] {
        assert!(
            refused(&client(&ca, None), url).await,
            "no client cert refused on {url}"
        );
        assert!(
            refused(
                &client(&ca, Some((&foreign.cert_pem, &foreign.key_pem))),
                url
            )
            .await,
            "cert from another CA refused on {url}"
        );
    }

    // A cluster client certificate that is not the scheduler's is forbidden on the agent.
    let admin_cert = std::fs::read_to_string(d.join("admin.crt")).expect("admin cert");
    let admin_key = std::fs::read_to_string(d.join("admin.key")).expect("admin key");
    let admin = client(&ca, Some((&admin_cert, &admin_key)));
    let r = admin.get(&agent).send().await.expect("answer");
    assert_eq!(r.status(), 403, "only the scheduler may call the agent");
    let r = admin.get(&api).send().await.expect("answer");
    assert_eq!(
        r.status(),
        200,
        "the admin certificate is accepted by the API"
    );
}

#[tokio::test]
async fn wrong_join_token_gets_401_and_agent_refuses_a_token_with_a_foreign_ca_hash() {
    let mut c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let d = c.scheduler_dir();
    let ca = std::fs::read_to_string(d.join("ca.crt")).expect("ca");
    let good = JoinToken::parse(&c.join_token().expect("token")).expect("parses");

    let wrong = JoinToken {
        ca_hash: good.ca_hash.clone(),
        secret: "0".repeat(64),
    };
    let csr = persys_certs::generate_csr("intruder", &[]).expect("csr").0;
    let body = serde_json::json!({
        "nodeId": "intruder", "csr": csr, "hostname": "x", "ipAddress": "127.0.0.1",
        "agentPort": 1, "totalCpu": 1.0, "totalMemory": 100,
    });
    let url = format!("https://127.0.0.1:{}/nodes/register", c.bootstrap_port);
    let r = client(&ca, None)
        .post(&url)
        .bearer_auth(wrong.to_string())
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);
    let err: serde_json::Value = r.json().await.expect("json error");
    assert!(err["error"].is_string() && err["code"].is_string(), "{err}");
    let r = client(&ca, None)
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401, "no token");

    // An agent whose token pins another CA must refuse to talk to this scheduler.
    let other = CertificateAuthority::generate("other-ca").expect("other ca");
    let foreign = JoinToken {
        ca_hash: other.fingerprint(),
        secret: good.secret.clone(),
    };
    c.agents.push(persys_tests::cluster::Agent {
        node_id: format!("{}-pinned", c.prefix),
        port: persys_tests::process::free_port(),
        data_dir: c.dir.path().join("agent-pinned"),
        options: AgentOptions::default(),
        process: None,
    });
    let cmd = c.agent_command(0, &foreign.to_string());
    let log = c.dir.path().join("agent-pinned.log");
    let mut p = persys_tests::process::Process::spawn("agent-pinned", cmd, &log).expect("spawn");
    let api = c.api().expect("api");
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let (s, _) = api
            .get(&format!("/nodes/{}-pinned", c.prefix))
            .await
            .expect("get");
        assert_eq!(
            s, 404,
            "the agent must not register with a mismatched CA hash"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log_text = p.log().to_lowercase();
    assert!(
        log_text.contains("hash") || log_text.contains("certificate"),
        "the agent says why it refused: {log_text}"
    );
    p.kill();
}
