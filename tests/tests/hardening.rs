//! Hardening of every listener against a hostile client (issue 9): idle and
//! half-open connections are closed, connections beyond the cap are refused, metric
//! labels and log lines stay bounded whatever the method and path, failed
//! authentication is rate limited per source, and HTTP/2 clients get the JSON error
//! before their stream closes.

use futures::future::join_all;
use persys_tests::{AgentOptions, Cluster, ClusterOptions};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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

/// Any server role of the cluster (these tests are about what servers refuse).
fn any_role() -> persys_certs::Expected {
    persys_certs::Expected::Roles(vec![
        persys_certs::Role::Scheduler,
        persys_certs::Role::Gateway,
        persys_certs::Role::Node,
    ])
}

fn ca_pem(c: &Cluster) -> String {
    std::fs::read_to_string(c.scheduler_dir().join("ca.crt")).expect("ca")
}

/// An HTTP/2 client (prior knowledge over TLS) without credentials.
fn h2_client(c: &Cluster) -> reqwest::Client {
    let tls = persys_certs::client_config(&ca_pem(c), None, any_role()).expect("tls");
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

/// An HTTP/1.1 client of `c`'s CA with an optional identity and source address.
fn client(c: &Cluster, identity: Option<&str>, source: Option<IpAddr>) -> reqwest::Client {
    let d = c.scheduler_dir();
    let pair = identity.map(|name| {
        (
            std::fs::read_to_string(d.join(format!("{name}.crt"))).expect("cert"),
            std::fs::read_to_string(d.join(format!("{name}.key"))).expect("key"),
        )
    });
    let tls = persys_certs::client_config(
        &ca_pem(c),
        pair.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        any_role(),
    )
    .expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(source)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A TLS connection to `addr` that has finished its handshake (ALPN `alpn`).
async fn tls_connection(
    c: &Cluster,
    addr: SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = persys_certs::client_config(&ca_pem(c), None, any_role()).expect("tls");
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

/// Reads until the server closes the connection; how long after `since` it did.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(mut s: S, since: Instant) -> Duration {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a silent connection open for 30 s"),
        }
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The value of the series of `metric` whose labels contain `labels`.
fn metric_value(text: &str, metric: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn gateway_metrics(c: &Cluster) -> String {
    client(c, None, None)
        .get(format!("{}/metrics", gateway_base(c)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test]
async fn silent_connections_are_closed_by_their_timeouts_and_connections_beyond_the_cap_are_refused(
) {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions {
            args: [
                "--tls-handshake-timeout-ms",
                "1500",
                "--header-read-timeout-ms",
                "1500",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        }],
        scheduler_args: [
            "--tls-handshake-timeout-ms",
            "1500",
            "--header-read-timeout-ms",
            "1500",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(
        &[],
        &[
            "--tls-handshake-timeout-ms",
            "3000",
            "--header-read-timeout-ms",
            "3000",
            "--idle-timeout-ms",
            "3000",
            "--max-connections",
            "210",
        ],
    )
    .await
    .expect("gateway starts");
    let gateway: SocketAddr = format!("127.0.0.1:{}", c.gateway.as_ref().expect("gw").port)
        .parse()
        .expect("addr");
    let pid = c.gateway.as_ref().expect("gw").process.pid().expect("pid");
    // Let the start-up connections (readiness probes) go idle and close.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let files_before = open_files(pid);

    // 200 connections that finish their TLS handshake and say nothing (half of them
    // HTTP/2, half HTTP/1.1), then 20 more: 10 fill the cap, 10 are refused at once.
    let opened = Instant::now();
    let silent = join_all(
        (0..200).map(|i| tls_connection(&c, gateway, if i % 2 == 0 { b"h2" } else { b"http/1.1" })),
    )
    .await;
    assert!(
        open_files(pid) >= files_before + 200,
        "the connections are open"
    );
    let mut extra = Vec::new();
    for _ in 0..20 {
        extra.push(TcpStream::connect(gateway).await.expect("connect"));
    }
    let extra_since = Instant::now();
    let extra_closed = join_all(extra.into_iter().map(|s| closed_after(s, extra_since))).await;
    let refused = extra_closed
        .iter()
        .filter(|d| **d < Duration::from_secs(1))
        .count();
    assert_eq!(
        refused, 10,
        "beyond the cap of 210, connections are refused at once: {extra_closed:?}"
    );

    let closed = join_all(silent.into_iter().map(|s| closed_after(s, opened))).await;
    let slowest = closed.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(8),
        "every silent TLS connection is closed by the 3 s header-read timeout: slowest {slowest:?}"
    );
    let mut files_after = open_files(pid);
    for _ in 0..50 {
        if files_after <= files_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        files_after = open_files(pid);
    }
    assert!(
        files_after <= files_before + 2,
        "open files back to {files_before}: {files_after}"
    );

    let text = gateway_metrics(&c).await;
    let closed = "persys_gateway_connections_closed_total";
    assert_eq!(
        metric_value(&text, closed, r#"reason="refused""#),
        10.0,
        "{text}"
    );
    assert!(
        metric_value(&text, closed, r#"reason="header_timeout""#) >= 200.0,
        "{text}"
    );

    // The scheduler's two listeners and the agent's have the limits too: a client
    // that never starts its handshake is dropped after 1.5 s.
    let ports = [c.api_port, c.bootstrap_port, c.agents[0].port];
    let since = Instant::now();
    let raw = join_all(ports.iter().map(|p| async move {
        let s = TcpStream::connect(("127.0.0.1", *p))
            .await
            .expect("connect");
        closed_after(s, since).await
    }))
    .await;
    for (port, waited) in ports.iter().zip(&raw) {
        assert!(
            *waited >= Duration::from_millis(1000) && *waited < Duration::from_secs(5),
            "port {port}: handshake timeout after {waited:?}"
        );
    }
}

fn random_method(rng: &mut impl Rng) -> reqwest::Method {
    let len = rng.gen_range(3..12);
    let name: String = (0..len)
        .map(|_| rng.gen_range(b'A'..=b'Z') as char)
        .collect();
    reqwest::Method::from_bytes(name.as_bytes()).expect("method")
}

fn random_path(rng: &mut impl Rng) -> String {
    format!("/{}", Alphanumeric.sample_string(rng, 60 * 1024))
}

/// Sends `n` requests with random methods and 60 KB random paths; how many got an answer.
async fn send_garbage(client: &reqwest::Client, base: &str, n: usize) -> usize {
    let mut answered = 0;
    for _ in 0..n {
        let (method, path) = {
            let mut rng = rand::thread_rng();
            (random_method(&mut rng), random_path(&mut rng))
        };
        if client
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .is_ok()
        {
            answered += 1;
        }
    }
    answered
}

/// Series of `metric` that garbage requests land in.
fn garbage_series(text: &str, metric: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(r#"route="unmatched""#))
        .count()
}

fn series(text: &str, metric: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .count()
}

#[tokio::test]
async fn random_methods_and_long_paths_leave_metric_series_bounded_and_log_lines_short() {
    let c = cluster_with_gateway(&["--auth-failure-limit", "0"]).await;
    let anon = client(&c, None, None);
    let admin = client(&c, Some("admin"), None);
    let scheduler = client(&c, Some("scheduler"), None);
    let gateway = gateway_base(&c);
    let api = format!("https://127.0.0.1:{}", c.api_port);
    let bootstrap = format!("https://127.0.0.1:{}", c.bootstrap_port);
    let agent = format!("https://127.0.0.1:{}", c.agents[0].port);
    // (who sends, where to, where the metrics are, the request metric)
    let targets = [
        (
            &anon,
            &gateway,
            &anon,
            format!("{gateway}/metrics"),
            "persys_gateway_requests_total",
        ),
        (
            &admin,
            &api,
            &anon,
            format!("{bootstrap}/metrics"),
            "persys_http_requests_total",
        ),
        (
            &anon,
            &bootstrap,
            &anon,
            format!("{bootstrap}/metrics"),
            "persys_http_requests_total",
        ),
        (
            &scheduler,
            &agent,
            &scheduler,
            format!("{agent}/metrics"),
            "persys_agent_http_requests_total",
        ),
    ];
    for (sender, base, reader, metrics_url, metric) in &targets {
        let read = || async {
            reader
                .get(metrics_url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text")
        };
        let answered = send_garbage(sender, base, 100).await;
        assert!(answered >= 90, "{base}: only {answered} of 100 answered");
        let first = read().await;
        let unmatched = metric_value(&first, metric, r#"route="unmatched""#);
        assert!(
            unmatched >= 90.0,
            "{base}: the requests are counted as unmatched: {first}"
        );
        assert!(
            metric_value(&first, metric, r#"method="OTHER""#) >= 90.0,
            "{first}"
        );
        let after_first = series(&first, metric);
        let garbage_first = garbage_series(&first, metric);
        let answered = send_garbage(sender, base, 100).await;
        assert!(answered >= 90, "{base}: only {answered} of 100 answered");
        let second = read().await;
        // The garbage's own series (route "unmatched": one per method label and status)
        // do not grow with more garbage. Other series may appear meanwhile from the
        // cluster's own traffic (status pushes, reconciles), so they are not compared.
        let garbage_second = garbage_series(&second, metric);
        assert!(
            garbage_second <= garbage_first && garbage_second <= 4,
            "{base}: unmatched series {garbage_first} -> {garbage_second}:\n{second}"
        );
        assert!(after_first < 30, "{base}: {after_first} series of {metric}");
        assert!(series(&second, metric) < 30, "{base}: bounded:\n{second}");
    }
    let logs = c.all_logs();
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 2048,
        "a log line of {longest} bytes: {}",
        logs.lines()
            .find(|l| l.len() == longest)
            .map_or("", |l| &l[..300.min(l.len())])
    );
    assert!(logs.contains("bytes)"), "cut paths note their length");
}

#[tokio::test]
async fn failed_authentication_from_one_address_turns_into_429_while_other_addresses_still_work() {
    let c = cluster_with_gateway(&[
        "--auth-failure-limit",
        "20",
        "--auth-failure-window-ms",
        "6000",
        "--rate-limit-per-second",
        "0",
    ])
    .await;
    let gateway = gateway_base(&c);
    let admin_token = c.gateway.as_ref().expect("gw").admin_token.clone();
    let local: IpAddr = "127.0.0.1".parse().expect("ip");
    let other: IpAddr = "127.0.0.2".parse().expect("ip");
    let attacker = client(&c, None, Some(local));
    let neighbour = client(&c, None, Some(other));
    let workloads = format!("{gateway}/workloads");

    for i in 0..20 {
        let r = attacker
            .get(&workloads)
            .bearer_auth(format!("persys_guess{i}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 401, "failure {i} is answered 401");
    }
    let started = Instant::now();
    // 20,000 would be the attack; 1,000 show that none of them reaches a token lookup.
    let mut limited = 0;
    for i in 0..1000 {
        let r = attacker
            .get(&workloads)
            .bearer_auth(format!("persys_more{i}"))
            .send()
            .await
            .expect("answer");
        if r.status() == 429 {
            limited += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the attempts fit the window"
    );
    assert_eq!(
        limited, 1000,
        "every further attempt from the address is 429"
    );
    let r = attacker
        .get(&workloads)
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("answer");
    assert_eq!(
        r.status(),
        429,
        "even a valid token: refused before any token lookup"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=6).contains(&retry), "retry-after {retry}");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["code"], "rate_limited");
    assert!(v["error"].is_string() && v["requestId"].is_string(), "{v}");

    // Another address is not affected: its valid token works, its bad one is 401.
    let ok = neighbour
        .get(&workloads)
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("answer");
    assert_eq!(ok.status(), 200);
    let bad = neighbour
        .get(&workloads)
        .bearer_auth("persys_wrong")
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 401);

    let text = gateway_metrics(&c).await;
    assert_eq!(
        metric_value(
            &text,
            "persys_gateway_auth_failures_total",
            r#"reason="invalid_token""#
        ),
        21.0,
        "20 + 1 failures were looked up, none of the 429s: {text}"
    );

    // When the window is over, the address may authenticate again.
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(started.elapsed()) + Duration::from_millis(500),
    )
    .await;
    let r = attacker
        .get(&workloads)
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200, "the window is over");
}

#[tokio::test]
async fn http2_clients_get_the_json_error_for_early_401_403_and_413() {
    // Neither limit may answer in their place: these are all failures from one address.
    let c =
        cluster_with_gateway(&["--rate-limit-per-second", "0", "--auth-failure-limit", "0"]).await;
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
    // curl (nghttp2) reports a stream reset during its upload as error 92 and drops
    // the answer, even a reset with NO_ERROR after a complete answer.
    let upload = c.dir.path().join("upload-10mb");
    std::fs::write(&upload, &big).expect("upload file");
    let ca = c.scheduler_dir().join("ca.crt");
    let mut retried = Vec::new();
    for i in 0..50 {
        for (what, token, want) in [
            ("curl 401 10 MB", None, 401),
            ("curl 403 10 MB", Some(viewer.as_str()), 403),
            ("curl 413 10 MB", Some(admin.as_str()), 413),
        ] {
            let mut cmd = std::process::Command::new("curl");
            cmd.args([
                "-sS",
                "--http2",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(&ca)
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", upload.display()));
            if let Some(t) = token {
                cmd.args(["-H", &format!("authorization: Bearer {t}")]);
            }
            cmd.arg(format!("{base}/workloads"));
            let mut out = cmd.output().expect("curl is installed");
            // A rare reset during the upload (curl error 92, PROTOCOL_ERROR; about one
            // in 150 on a loaded CI machine, under investigation): retried once and
            // counted; more than a few means the drain is broken, and the test fails.
            if out.status.code() == Some(92) {
                retried.push(format!("#{i} {what}"));
                out = cmd.output().expect("curl is installed");
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", ""));
            let json: Option<Value> = serde_json::from_str(body).ok();
            let is_error = json
                .as_ref()
                .is_some_and(|v| v["code"].is_string() && v["requestId"].is_string());
            if !out.status.success() || status != want.to_string() || !is_error {
                failures.push(format!(
                    "#{i} {what}: exit {:?}, status {status:?}, body {body:?}, stderr {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    assert!(
        retried.len() <= 3,
        "{} of 150 curl uploads were reset mid-upload (error 92): {retried:?}",
        retried.len()
    );
    assert!(
        failures.is_empty(),
        "{} of 450 HTTP/2 answers were not the JSON error:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
