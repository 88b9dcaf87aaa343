//! `persys-dns` on real parts: the records the scheduler writes for nodes and services
//! on real Docker, answered to the real `dig`, following the etcd watch as replicas
//! stop serving and services go; records written straight into etcd (SRV per entry,
//! AAAA), an etcd restart, SIGTERM. (`persys dev` starting it and printing where it
//! answers is tested with the rest of dev in `cli/tests/dev.rs`.)

use persys_tests::dns::{Dig, Responder};
use persys_tests::process::free_port;
use persys_tests::{AgentOptions, Api, Cluster, ClusterOptions, Etcd, TEST_IMAGE};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const DOMAIN: &str = "cluster.local.dev";

/// A service of busybox httpd on 8080 with an HTTP health check. A replica whose
/// container has `/sick` does not write its page again when it restarts, so once made
/// sick it stays unhealthy (out of DNS) instead of healing at the liveness restart.
fn service(name: &str, replicas: u32, ports: &[&str]) -> Value {
    json!({
        "kind": "Service",
        "name": name,
        "replicas": replicas,
        "template": {
            "image": TEST_IMAGE,
            "command": ["sh", "-c", "mkdir -p /www; [ -e /sick ] || echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"],
            "ports": ports,
            "healthCheck": {"http": {"path": "/", "port": 8080}, "intervalSeconds": 1, "retries": 2}
        }
    })
}

/// The service's replicas that run and are healthy.
async fn serving(api: &Api, name: &str) -> Vec<Value> {
    let s = api
        .get_json(&format!("/services/{name}"))
        .await
        .unwrap_or(Value::Null);
    s["replicaWorkloads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w["status"] == "Running" && w["health"] == "healthy")
        .collect()
}

async fn wait_serving(api: &Api, name: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = serving(api, name).await;
        if s.len() == n {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {} serving replicas, not {n}",
            s.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The address of the node a workload runs on.
async fn node_ip(api: &Api, w: &Value) -> String {
    let node = w["nodeId"].as_str().expect("nodeId");
    let n = api.get_json(&format!("/nodes/{node}")).await.expect("node");
    n["ipAddress"].as_str().expect("ipAddress").to_string()
}

fn set(v: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

/// Ask until `pred` holds for the answer (the responder follows etcd's watch), up to
/// `timeout`; the last answer.
async fn dig_until(
    dns: &Responder,
    args: &[&str],
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Dig) -> bool,
) -> Dig {
    let deadline = Instant::now() + timeout;
    loop {
        let d = dns.dig(args).expect("dig");
        if pred(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "dig {args:?}: not {what} within {timeout:?}:\n{}",
            d.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cluster_of_three() -> ClusterOptions {
    ClusterOptions {
        // Three nodes with addresses of their own, so that each replica's node
        // answers with a different A record.
        agents: (2..=4)
            .map(|i| AgentOptions {
                address: Some(format!("127.0.0.{i}")),
                ..Default::default()
            })
            .collect(),
        node_timeout_ms: Some(2000),
        ..Default::default()
    }
}

#[tokio::test]
async fn dig_answers_the_serving_replicas_of_a_service_and_follows_them_until_it_goes() {
    let c = Cluster::start(cluster_of_three())
        .await
        .expect("cluster starts");
    let api = c.api().expect("api");
    let dns = Responder::start(&c.etcd, c.dir.path(), DOMAIN, &[])
        .await
        .expect("persys-dns starts");
    let t = Duration::from_secs(30);

    // Nodes are names of their own.
    let node = format!("{}.{DOMAIN}", c.agents[0].node_id);
    let d = dig_until(&dns, &[&node], t, "the node's address", |d| {
        d.data() == ["127.0.0.2"]
    })
    .await;
    assert!(d.aa(), "authoritative: {}", d.text);
    assert_eq!(d.answers[0].ttl, 30);

    let (status, body) = api
        .put("/services/web", &service("web", 3, &[]))
        .await
        .expect("apply web");
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .put("/services/api", &service("api", 1, &["18282:8080"]))
        .await
        .expect("apply api");
    assert_eq!(status, 200, "{body}");
    let replicas = wait_serving(&api, "web", 3).await;
    let mut addrs = BTreeSet::new();
    for w in &replicas {
        addrs.insert(node_ip(&api, w).await);
    }
    assert_eq!(addrs.len(), 3, "one replica per node: {replicas:?}");

    // A: one record per serving replica's node, over UDP and TCP.
    let web = format!("web.{DOMAIN}");
    let d = dig_until(&dns, &[&web, "A"], t, "the 3 replicas", |d| {
        set(d.data()) == addrs
    })
    .await;
    assert_eq!(d.status, "NOERROR");
    assert!(d.aa(), "{}", d.text);
    let tcp = dns.dig(&["+tcp", &web, "A"]).expect("dig +tcp");
    assert_eq!(set(tcp.data()), addrs, "{}", tcp.text);
    // web publishes no host port: no SRV record, the name exists (NODATA, SOA).
    let d = dns.dig(&[&web, "SRV"]).expect("dig");
    assert_eq!(
        (d.status.as_str(), d.answers.len()),
        ("NOERROR", 0),
        "{}",
        d.text
    );
    assert_eq!(d.authority[0].rtype, "SOA", "{}", d.text);

    // SRV: the published host port, the target resolvable, its address additional.
    let api_replica = wait_serving(&api, "api", 1).await.remove(0);
    let api_ip = node_ip(&api, &api_replica).await;
    let id = api_replica["id"].as_str().expect("id");
    let target = format!("{id}-18282.api.{DOMAIN}.");
    let srv_name = format!("api.{DOMAIN}");
    let d = dig_until(&dns, &[&srv_name, "SRV"], t, "api's SRV", |d| {
        d.answers.len() == 1
    })
    .await;
    assert_eq!(d.data(), [format!("10 100 18282 {target}")], "{}", d.text);
    assert_eq!(d.additional.len(), 1, "{}", d.text);
    assert_eq!(
        (d.additional[0].name.as_str(), d.additional[0].data.as_str()),
        (target.as_str(), api_ip.as_str())
    );
    let d = dns.dig(&[&target, "A"]).expect("dig target");
    assert_eq!(d.data(), [api_ip.as_str()], "{}", d.text);
    let d = dns
        .dig(&[&format!("_http._tcp.api.{DOMAIN}"), "SRV"])
        .expect("dig");
    assert_eq!(d.answers.len(), 1, "the RFC 2782 form: {}", d.text);

    // One replica stops serving: its node's address goes from the answer.
    let sick = &replicas[0];
    let sick_ip = node_ip(&api, sick).await;
    let container = sick["containerId"].as_str().expect("container");
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            container,
            "sh",
            "-c",
            "touch /sick && rm /www/index.html",
        ])
        .output()
        .expect("docker exec");
    assert!(out.status.success(), "{out:?}");
    let rest: BTreeSet<String> = addrs.iter().filter(|a| **a != sick_ip).cloned().collect();
    dig_until(&dns, &[&web, "A"], t, "without the sick replica", |d| {
        set(d.data()) == rest
    })
    .await;

    // Unknown names are NXDOMAIN with the zone's SOA; other zones are refused.
    let d = dns.dig(&[&format!("nope.{DOMAIN}"), "A"]).expect("dig");
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert!(d.aa());
    assert_eq!(d.authority[0].rtype, "SOA", "{}", d.text);
    let d = dns.dig(&["example.org", "A"]).expect("dig");
    assert_eq!(d.status, "REFUSED", "{}", d.text);
    assert!(!d.aa());

    // The services go: their names go.
    api.delete("/services/web").await.expect("delete web");
    api.delete("/services/api").await.expect("delete api");
    dig_until(&dns, &[&web, "A"], t, "NXDOMAIN once web is gone", |d| {
        d.status == "NXDOMAIN"
    })
    .await;
    dig_until(
        &dns,
        &[&srv_name, "SRV"],
        t,
        "NXDOMAIN once api is gone",
        |d| d.status == "NXDOMAIN",
    )
    .await;
}

/// Write one skydns record.
async fn put(etcd: &Etcd, name: &str, host: &str, port: Option<u16>) {
    let mut key = String::from("/skydns/dev/local/cluster");
    for label in name.rsplit('.') {
        key.push('/');
        key.push_str(label);
    }
    let mut value = json!({"host": host, "ttl": 7});
    if let Some(p) = port {
        value["port"] = json!(p);
    }
    let mut c = etcd.client().await.expect("etcd");
    c.put(key, value.to_string(), None).await.expect("put");
}

async fn del(etcd: &Etcd, key: &str) {
    let mut c = etcd.client().await.expect("etcd");
    c.delete(key, None).await.expect("delete");
}

#[tokio::test]
async fn records_in_etcd_are_answered_as_they_change_through_an_etcd_restart_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut etcd = Etcd::start(dir.path()).await.expect("etcd");
    // Written before the responder starts: found by its first list.
    put(&etcd, "a.multi", "127.0.0.11", Some(7001)).await;
    let metrics_port = free_port();
    let mut dns = Responder::start(
        &etcd,
        dir.path(),
        DOMAIN,
        &[
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
        ],
    )
    .await
    .expect("persys-dns starts");
    let t = Duration::from_secs(20);
    let multi = format!("multi.{DOMAIN}");

    // Written after: found through the watch. One SRV per entry with a port.
    put(&etcd, "b.multi", "127.0.0.12", Some(7002)).await;
    put(&etcd, "c.multi", "fd00::13", Some(7003)).await;
    put(&etcd, "d.multi", "127.0.0.12", None).await;
    let d = dig_until(&dns, &[&multi, "SRV"], t, "3 SRV records", |d| {
        d.answers.len() == 3
    })
    .await;
    assert_eq!(
        d.data(),
        [
            format!("10 33 7001 a.multi.{DOMAIN}."),
            format!("10 33 7002 b.multi.{DOMAIN}."),
            format!("10 33 7003 c.multi.{DOMAIN}."),
        ],
        "{}",
        d.text
    );
    assert_eq!(d.answers[0].ttl, 7, "the record's TTL");
    let extra: BTreeSet<String> = d.additional.iter().map(|r| r.data.clone()).collect();
    assert_eq!(
        extra,
        set(["127.0.0.11".into(), "127.0.0.12".into(), "fd00::13".into()])
    );
    // A: each IPv4 address once; AAAA: the IPv6 one.
    let d = dns.dig(&[&multi, "A"]).expect("dig");
    assert_eq!(d.data(), ["127.0.0.11", "127.0.0.12"], "{}", d.text);
    let d = dns.dig(&[&multi, "AAAA"]).expect("dig");
    assert_eq!(d.data(), ["fd00::13"], "{}", d.text);

    del(&etcd, "/skydns/dev/local/cluster/multi/a").await;
    dig_until(&dns, &[&multi, "SRV"], t, "2 SRV records", |d| {
        d.answers.len() == 2
    })
    .await;

    // etcd goes away: the last zone keeps answering.
    etcd.stop();
    let d = dns.dig(&[&multi, "SRV"]).expect("dig while etcd is down");
    assert_eq!(d.answers.len(), 2, "{}", d.text);
    // etcd comes back: the responder lists and watches again.
    etcd.restart().await.expect("etcd restarts");
    put(&etcd, "e.multi", "127.0.0.15", Some(7005)).await;
    del(&etcd, "/skydns/dev/local/cluster/multi/b").await;
    let d = dig_until(
        &dns,
        &[&multi, "SRV"],
        t,
        "the changes after the restart",
        |d| {
            d.data()
                == [
                    format!("10 50 7003 c.multi.{DOMAIN}."),
                    format!("10 50 7005 e.multi.{DOMAIN}."),
                ]
        },
    )
    .await;
    assert_eq!(d.status, "NOERROR");

    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(r#"persys_dns_queries_total{rcode="NOERROR",type="SRV"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("persys_dns_resyncs_total"), "{metrics}");

    let status = dns
        .process
        .terminate(Duration::from_secs(10))
        .expect("stops on SIGTERM");
    assert!(status.success(), "{status}");
}
