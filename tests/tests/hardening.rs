//! Hardening of every listener against a hostile client (issue 9): idle and
//! half-open connections are closed, connections beyond the cap are refused, metric
//! labels and log lines stay bounded whatever the method and path, failed
//! authentication is rate limited per source, and HTTP/2 clients get the JSON error
//! before their stream closes.

use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use serde_json::Value;
use std::time::Duration;

async fn cluster_with_gateway(extra: &[&str]) -> Cluster {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(&[], extra).await.expect("gateway starts");
    c
}

fn gateway_base(c: &Cluster) -> String {
    format!(
        "https://127.0.0.1:{}",
        c.gateway.as_ref().expect("gateway").port
    )
}

fn ca_pem(c: &Cluster) -> String {
    std::fs::read_to_string(c.scheduler_dir().join("ca.crt")).expect("ca")
}

/// An HTTP/2 client (prior knowledge over TLS) without credentials.
fn h2_client(c: &Cluster) -> reqwest::Client {
    let tls = persys_certs::client_config(&ca_pem(c), None).expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Sends `request`; the JSON error it got, or what went wrong instead.
async fn json_error(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    let resp = request.send().await.map_err(|e| format!("send: {e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("body of {status}: {e:?}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{status} {text:?}: {e}"))?;
    if v["error"].is_string() && v["code"].is_string() && v["requestId"].is_string() {
        Ok((status, v))
    } else {
        Err(format!("{status}: not the JSON error: {v}"))
    }
}

async fn create_token(c: &Cluster, role: &str) -> String {
    let (status, v) = c
        .gateway_admin()
        .expect("admin")
        .post(
            "/tokens",
            &serde_json::json!({"name": format!("{role}-1"), "role": role}),
        )
        .await
        .expect("create token");
    assert_eq!(status, 201, "{v}");
    v["token"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn http2_clients_get_the_json_error_for_early_401_403_and_413() {
    let c = cluster_with_gateway(&["--rate-limit-per-second", "0"]).await;
    let base = gateway_base(&c);
    let admin = c.gateway.as_ref().expect("gateway").admin_token.clone();
    let viewer = create_token(&c, "viewer").await;
    let client = h2_client(&c);
    let big = vec![b'x'; 10 * 1024 * 1024];
    let small = br#"{"image":"busybox:local","command":"sleep 1"}"#.to_vec();
    let mut failures = Vec::new();
    for i in 0..50 {
        let cases = [
            ("401 small", None, small.clone(), false, 401),
            ("401 10 MB", None, big.clone(), false, 401),
            ("401 10 MB streamed", None, big.clone(), true, 401),
            ("403 10 MB", Some(viewer.as_str()), big.clone(), false, 403),
            ("413 10 MB", Some(admin.as_str()), big.clone(), false, 413),
            (
                "413 10 MB streamed",
                Some(admin.as_str()),
                big.clone(),
                true,
                413,
            ),
        ];
        for (what, token, body, streamed, want) in cases {
            let body = if streamed {
                // No content-length: the limit is only hit while reading.
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
                reqwest::Body::wrap_stream(futures::stream::iter(chunks))
            } else {
                reqwest::Body::from(body)
            };
            let mut req = client
                .post(format!("{base}/workloads"))
                .header("content-type", "application/json")
                .body(body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match json_error(req).await {
                Ok((status, _)) if status == want => {}
                Ok((status, v)) => failures.push(format!("#{i} {what}: {status} {v}")),
                Err(e) => failures.push(format!("#{i} {what}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 150 HTTP/2 answers were not the JSON error:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn zz_probe_curl() {
    let c = cluster_with_gateway(&["--rate-limit-per-second", "0"]).await;
    let base = gateway_base(&c);
    let big = c.dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 10 * 1024 * 1024]).expect("w");
    let ca = c.scheduler_dir().join("ca.crt");
    let mut bad = 0;
    for i in 0..20 {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(&ca)
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", big.display()))
            .arg(format!("{base}/workloads"))
            .output()
            .expect("curl");
        let o = String::from_utf8_lossy(&out.stdout);
        if !o.contains("requestId") {
            bad += 1;
            eprintln!("#{i}: {o} {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let out = std::process::Command::new("curl")
        .args(["-v", "--http2", "--cacert"])
        .arg(&ca)
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", big.display()))
        .arg(format!("{base}/workloads"))
        .output()
        .expect("curl");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("bad {bad}");
}
