//! Observability (docs/metrics.md): what every component exports passes `promtool check
//! metrics`; the alert rules pass `promtool check rules` and their unit tests; a real
//! Prometheus (Debian's `prometheus`, from scripts/install-deps.sh) scrapes a running
//! cluster over TLS and answers PromQL with the cluster's real workload and node
//! counts; every query of the Grafana dashboard names metrics that scrape exposes and
//! answers.

use anyhow::{bail, ensure, Context, Result};
use persys_tests::process::{free_port, Process};
use persys_tests::{AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Workloads every test cluster runs.
const WORKLOADS: usize = 3;
/// Agents of every test cluster.
const AGENTS: usize = 2;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

/// A tool of Debian's `prometheus` package, failing clearly when it is missing.
fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} not found: install Debian's prometheus (scripts/install-deps.sh)",
        path.display()
    );
    path
}

/// A cluster of two agents and a gateway running three workloads, with requests
/// through the gateway (one of them refused for a bad token), so that every series
/// the dashboard shows exists.
async fn busy_cluster() -> Result<Cluster> {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(); AGENTS],
        ..Default::default()
    })
    .await?;
    c.start_gateway(&[], &[]).await?;
    let gw = c.gateway_admin()?;
    let mut ids = Vec::new();
    for i in 0..WORKLOADS {
        let body =
            json!({"name": format!("obs-{i}"), "image": TEST_IMAGE, "command": ["sleep", "3600"]});
        let (status, w) = gw.post("/workloads", &body).await?;
        ensure!(status == 201, "POST /workloads answered {status}: {w}");
        ids.push(w["id"].as_str().context("id")?.to_string());
    }
    for id in &ids {
        c.wait_status(id, "Running", Duration::from_secs(30))
            .await?;
    }
    gw.get_json("/workloads").await?;
    let port = c.gateway.as_ref().context("gateway")?.port;
    let stranger = Api::with_token(
        &format!("https://127.0.0.1:{port}"),
        &c.scheduler_dir().join("ca.crt"),
        "not-a-token",
    )?;
    let (status, _) = stranger.get("/workloads").await?;
    ensure!(status == 401, "a bad token answered {status}");
    Ok(c)
}

/// One scrape target: its job, its address, whether it needs the scheduler's client
/// certificate.
struct Target {
    job: &'static str,
    address: String,
    client_cert: bool,
}

fn targets(c: &Cluster) -> Result<Vec<Target>> {
    let mut out = vec![
        Target {
            job: "persys-scheduler",
            address: format!("127.0.0.1:{}", c.bootstrap_port),
            client_cert: false,
        },
        Target {
            job: "persys-gateway",
            address: format!("127.0.0.1:{}", c.gateway.as_ref().context("gateway")?.port),
            client_cert: false,
        },
    ];
    for a in &c.agents {
        out.push(Target {
            job: "persys-agent",
            address: format!("127.0.0.1:{}", a.port),
            client_cert: true,
        });
    }
    Ok(out)
}

/// `GET https://<target>/metrics` as Prometheus would.
async fn scrape(c: &Cluster, t: &Target) -> Result<String> {
    let d = c.scheduler_dir();
    let cert = (d.join("scheduler.crt"), d.join("scheduler.key"));
    let identity = t
        .client_cert
        .then_some((cert.0.as_path(), cert.1.as_path()));
    let api = Api::new(
        &format!("https://{}", t.address),
        &d.join("ca.crt"),
        identity,
    )?;
    let resp = api.client().get(api.url("/metrics")).send().await?;
    ensure!(
        resp.status() == 200,
        "{} /metrics answered {}",
        t.job,
        resp.status()
    );
    Ok(resp.text().await?)
}

/// A Prometheus server of its own (temp config and storage, a free loopback port),
/// scraping the cluster every second with the repository's alert rules loaded. Killed
/// on drop.
struct Prometheus {
    _process: Process,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(c: &Cluster) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("persys-prom").tempdir()?;
        let d = c.scheduler_dir();
        let ca = d.join("ca.crt");
        let mut jobs: Vec<(&str, Vec<String>, bool)> = Vec::new();
        for t in targets(c)? {
            match jobs.iter_mut().find(|(job, _, _)| *job == t.job) {
                Some((_, addresses, _)) => addresses.push(t.address),
                None => jobs.push((t.job, vec![t.address], t.client_cert)),
            }
        }
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\nscrape_configs:\n",
            deploy("prometheus/alerts.yml").display()
        );
        for (job, addresses, client_cert) in &jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    scheme: https\n    tls_config:\n      ca_file: {}\n",
                ca.display()
            ));
            if *client_cert {
                config.push_str(&format!(
                    "      cert_file: {}\n      key_file: {}\n",
                    d.join("scheduler.crt").display(),
                    d.join("scheduler.key").display()
                ));
            }
            let list: Vec<String> = addresses.iter().map(|a| format!("'{a}'")).collect();
            config.push_str(&format!(
                "    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, &config)?;
        let port = free_port();
        let mut cmd = Command::new(tool("prometheus"));
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let mut process = Process::spawn("prometheus", cmd, &dir.path().join("prometheus.log"))?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/-/ready")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if process.has_exited() {
                bail!("prometheus exited:\n{}\nconfig:\n{config}", process.log());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready in 30 s:\n{}", process.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            _process: process,
            base,
            client,
            _dir: dir,
        })
    }

    /// `GET /api/v1/<path>` with query parameters; the `data` of a successful answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let resp: Value = self
            .client
            .get(format!("{}/api/v1/{path}", self.base))
            .query(params)
            .send()
            .await?
            .json()
            .await?;
        ensure!(resp["status"] == "success", "{path} {params:?}: {resp}");
        Ok(resp["data"].clone())
    }

    /// The instant vector of `promql`.
    async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let data = self.api("query", &[("query", promql)]).await?;
        ensure!(data["resultType"] == "vector", "{promql}: {data}");
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The single value of `promql`, if it has one.
    async fn value(&self, promql: &str) -> Result<Option<f64>> {
        let result = self.query(promql).await?;
        Ok(match result.as_slice() {
            [one] => one["value"][1].as_str().and_then(|v| v.parse().ok()),
            _ => None,
        })
    }

    /// Every metric name Prometheus has stored.
    async fn names(&self) -> Result<BTreeSet<String>> {
        let data = self.api("label/__name__/values", &[]).await?;
        Ok(data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Wait until every target answers its scrapes.
    async fn wait_targets_up(&self, expected: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = self.value(r#"count(up{job=~"persys-.*"} == 1)"#).await?;
            if up == Some(expected as f64) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let targets = self.api("targets", &[]).await?;
                bail!("{up:?} of {expected} targets up in 60 s: {targets}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test]
async fn every_component_exports_metrics_that_promtool_finds_nothing_wrong_with() {
    let promtool = tool("promtool");
    let c = busy_cluster().await.expect("cluster runs its workloads");
    let mut seen = BTreeSet::new();
    for t in targets(&c).expect("targets") {
        let text = scrape(&c, &t).await.expect("scrape");
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("metrics written to promtool");
        let out = child.wait_with_output().expect("promtool finishes");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool check metrics on {} ({}): {said}",
            t.job,
            t.address
        );
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            if let Some(name) = line.split_whitespace().nth(2) {
                seen.insert(format!("{}:{name}", t.job));
            }
        }
    }
    // What the issue asks of each component is there.
    for want in [
        "persys-scheduler:persys_workloads",
        "persys-scheduler:persys_nodes",
        "persys-scheduler:persys_placement_seconds",
        "persys-scheduler:persys_schedule_latency_seconds",
        "persys-scheduler:persys_dispatch_results_total",
        "persys-scheduler:persys_etcd_request_duration_seconds",
        "persys-scheduler:persys_etcd_request_errors_total",
        "persys-scheduler:persys_scheduler_leader_changes_total",
        "persys-scheduler:persys_node_heartbeat_age_max_seconds",
        "persys-scheduler:persys_node_heartbeat_interval_seconds",
        "persys-scheduler:persys_http_requests_total",
        "persys-scheduler:persys_certificate_expiry_timestamp_seconds",
        "persys-gateway:persys_gateway_requests_total",
        "persys-gateway:persys_gateway_auth_failures_total",
        "persys-gateway:persys_certificate_expiry_timestamp_seconds",
        "persys-agent:persys_agent_http_requests_total",
        "persys-agent:persys_agent_container_operations_total",
        "persys-agent:persys_agent_docker_event_lag_seconds",
        "persys-agent:persys_certificate_expiry_timestamp_seconds",
    ] {
        assert!(seen.contains(want), "{want} not exported: {seen:?}");
    }
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = tool("promtool");
    let dir = deploy("prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
        vec!["check", "config", "--syntax-only", "prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert of alerts.yml is tested by name.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).expect("alerts_test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "{a} has no unit test"
        );
    }
}

#[tokio::test]
async fn a_real_prometheus_counts_the_clusters_running_workloads_and_active_nodes() {
    let c = busy_cluster().await.expect("cluster runs its workloads");
    let prom = Prometheus::start(&c).await.expect("prometheus starts");
    prom.wait_targets_up(2 + AGENTS)
        .await
        .expect("every target scraped");
    let api = c.api().expect("api");
    let workloads = api.get_json("/workloads").await.expect("workloads");
    let running = workloads
        .as_array()
        .expect("a list")
        .iter()
        .filter(|w| w["status"] == "Running")
        .count();
    let nodes = api.get_json("/nodes").await.expect("nodes");
    let active = nodes["nodes"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|n| n["status"] == "Active")
        .count();
    assert_eq!((running, active), (WORKLOADS, AGENTS), "the API's view");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = (
            prom.value(r#"sum(persys_workloads{status="Running"})"#)
                .await
                .expect("query"),
            prom.value(r#"sum(persys_nodes{status="Active"})"#)
                .await
                .expect("query"),
        );
        if got == (Some(running as f64), Some(active as f64)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus says {got:?}, the API {running} Running and {active} Active"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        prom.value(r#"sum(persys_workloads{status="Pending"})"#)
            .await
            .expect("query"),
        Some(0.0)
    );
    assert_eq!(
        prom.value("max(persys_scheduler_is_leader)")
            .await
            .expect("query"),
        Some(1.0)
    );
    // What happened to get there is counted where it happened.
    for (promql, at_least) in [
        (
            "sum(persys_schedule_latency_seconds_count)",
            WORKLOADS as f64,
        ),
        (
            r#"sum(persys_dispatch_results_total{action="run",result="ok"})"#,
            WORKLOADS as f64,
        ),
        (
            r#"sum(persys_agent_container_operations_total{operation="run",result="ok"})"#,
            WORKLOADS as f64,
        ),
        ("sum(persys_agent_docker_event_lag_seconds_count)", 1.0),
        (
            r#"sum(persys_etcd_request_duration_seconds_count{operation="txn"})"#,
            WORKLOADS as f64,
        ),
        (
            r#"sum(persys_etcd_request_duration_seconds_count{operation="lease_keepalive"})"#,
            1.0,
        ),
        (
            r#"sum(persys_gateway_auth_failures_total{reason="invalid_token"})"#,
            1.0,
        ),
        ("sum(persys_scheduler_leader_changes_total)", 1.0),
        ("sum(persys_node_heartbeat_interval_seconds_count)", 1.0),
    ] {
        let got = prom.value(promql).await.expect("query");
        assert!(
            got.is_some_and(|v| v >= at_least),
            "{promql} is {got:?}, expected at least {at_least}"
        );
    }
    let age = prom
        .value("max(persys_node_heartbeat_age_max_seconds)")
        .await
        .expect("query")
        .expect("heartbeat age");
    assert!(age < 5.0, "the oldest heartbeat is {age} s old");
    // The agents' certificates are valid now, for as long as they were issued.
    let left = prom
        .value(r#"min(persys_certificate_expiry_timestamp_seconds{component="agent",cert="serving"}) - time()"#)
        .await
        .expect("query")
        .expect("agents export their certificate's expiry");
    assert!((3600.0..=366.0 * 86400.0).contains(&left), "{left}");
    let lived = prom
        .value(r#"max(time() - persys_certificate_not_before_timestamp_seconds{component="agent",cert="serving"})"#)
        .await
        .expect("query")
        .expect("agents export their certificate's start");
    // Issued just now (backdated a little for clock skew).
    assert!((0.0..86400.0).contains(&lived), "{lived}");
    // The repository's alert rules load and evaluate cleanly in a real Prometheus,
    // and the healthy cluster raises no alert that matters here.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let groups = prom.api("rules", &[]).await.expect("rules");
        let rules: Vec<Value> = groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert!(rules.len() >= 9, "rules loaded: {groups}");
        let bad: Vec<&Value> = rules.iter().filter(|r| r["health"] == "err").collect();
        assert!(bad.is_empty(), "rules that fail to evaluate: {bad:?}");
        // Evaluated with the scraped data (the first evaluations may precede it).
        let active: Vec<&str> = rules
            .iter()
            .filter(|r| r["state"] != "inactive")
            .filter_map(|r| r["name"].as_str())
            .filter(|name| {
                [
                    "PersysNoLeader",
                    "PersysNodeDown",
                    "PersysWorkloadsPendingTooLong",
                    "PersysCertificateExpiringSoon",
                    "PersysCertificateExpiryCritical",
                    "PersysTargetDown",
                ]
                .contains(name)
            })
            .collect();
        if rules.iter().all(|r| r["health"] == "ok") && active.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not evaluated, or active in a healthy cluster ({active:?}): {groups}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every `expr` of a Grafana dashboard (panels, rows' panels, targets).
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dashboard_exprs(i, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression selects: identifiers outside label matchers,
/// ranges and strings that are neither functions (followed by `(`), keywords and
/// aggregation operators, nor the label lists of `by`, `without`, `on`, `ignoring` and
/// `group_*`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregation operators may be followed by `by (...)` rather than `(`.
    const KEYWORDS: [&str; 19] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let s: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let (mut i, mut braces, mut brackets) = (0, 0i32, 0i32);
    let mut skip_list = false;
    while i < s.len() {
        let c = s[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < s.len() && s[i] != c {
                    i += if s[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' => {
                braces += 1;
                i += 1;
            }
            '}' => {
                braces -= 1;
                i += 1;
            }
            '[' => {
                brackets += 1;
                i += 1;
            }
            ']' => {
                brackets -= 1;
                i += 1;
            }
            '(' if skip_list => {
                while i < s.len() && s[i] != ')' {
                    i += 1;
                }
                skip_list = false;
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers, and durations such as 5m after `offset`.
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                    i += 1;
                }
                let word: String = s[start..i].iter().collect();
                if braces > 0 || brackets > 0 {
                    continue;
                }
                let lower = word.to_ascii_lowercase();
                if LISTS.contains(&lower.as_str()) {
                    skip_list = true;
                    continue;
                }
                if KEYWORDS.contains(&lower.as_str()) {
                    continue;
                }
                let next = s[i..].iter().find(|c| !c.is_whitespace());
                if next != Some(&'(') {
                    out.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[test]
fn metric_names_are_found_outside_matchers_functions_and_label_lists() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, operation) (rate(a_seconds_bucket{operation!="watch", x=~"y|z"}[5m]))) > 0.25 and on() max(b{s="Restarting"}) or vector(0) - time() + c offset 5m + min without (job) (d)"#,
    );
    assert_eq!(
        names,
        ["a_seconds_bucket", "b", "c", "d"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert!(metric_names("sum(up{job=~\"persys-.*\"})").contains("up"));
}

#[tokio::test]
async fn every_dashboard_query_names_scraped_metrics_and_answers() {
    let file = deploy("grafana/dashboards/persys.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("dashboard")).expect("JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    // The provisioning files point Grafana at the dashboard and a Prometheus.
    for p in [
        "grafana/provisioning/dashboards/persys.yml",
        "grafana/provisioning/datasources/persys.yml",
    ] {
        let text = std::fs::read_to_string(deploy(p)).expect("provisioning file");
        assert!(text.contains("apiVersion: 1"), "{p}");
    }
    let c = busy_cluster().await.expect("cluster runs its workloads");
    let prom = Prometheus::start(&c).await.expect("prometheus starts");
    prom.wait_targets_up(2 + AGENTS)
        .await
        .expect("every target scraped");
    let exprs: Vec<String> = exprs
        .iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$__interval", "5s")
        })
        .collect();
    let wanted: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(wanted.len() >= 20, "{wanted:?}");
    // Every name is in what the scrape stored; every query answers with data.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let names = prom.names().await.expect("names");
        let missing: Vec<&String> = wanted.difference(&names).collect();
        let mut empty = Vec::new();
        for e in &exprs {
            match prom.query(e).await {
                Ok(v) if v.is_empty() => empty.push(e.clone()),
                Ok(_) => {}
                Err(err) => panic!("dashboard query {e:?} fails: {err:#}"),
            }
        }
        if missing.is_empty() && empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard metrics no scrape exposes: {missing:?}; queries without data: {empty:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
