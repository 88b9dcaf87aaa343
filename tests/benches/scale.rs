//! Scale benchmarks on real parts: the release scheduler binary, a real etcd (TLS,
//! client-certificate auth), mTLS HTTP. Build first: `cargo build --release --bins`,
//! then `cargo bench -p persys-tests --bench scale`.
//!
//! 1. etcd's own sequential put rate (the ceiling without batching);
//! 2. persisted creates/s with `PERSYS_BENCH_CLIENTS` (default 64) concurrent clients,
//!    from an empty store and again once `PERSYS_BENCH_STORED` (default 50,000)
//!    workloads are stored (they stay `Pending`: no nodes), with p50/p99 latency;
//! 3. at that size: GET one workload and `GET /workloads?limit=500` p99, and the
//!    scheduler's RSS.

use persys_tests::bench::{env_or, percentile, rss_mib};
use persys_tests::{Cluster, ClusterOptions};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `total` creates from `clients` concurrent clients: (creates/s, p50 ms, p99 ms).
async fn creates(
    c: &Cluster,
    clients: usize,
    total: usize,
    tag: &str,
) -> anyhow::Result<(f64, f64, f64)> {
    let api = Arc::new(c.api()?);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, next, tag) = (api.clone(), next.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let body = json!({
                    "name": format!("{tag}-{i}"),
                    "image": "busybox:local",
                    "command": ["sleep", "3600"],
                    "labels": {"bench": tag, "team": format!("t{}", i % 10)},
                    "resources": {"cpu": 100, "memory": 64}
                });
                let t = Instant::now();
                let (status, v) = api.post("/workloads", &body).await?;
                anyhow::ensure!(status == 201, "create answered {status}: {v}");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok((
        total as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    ))
}

async fn etcd_sequential_puts(c: &Cluster, n: usize) -> anyhow::Result<f64> {
    let mut etcd = c.etcd.client().await?;
    let value = vec![b'x'; 900];
    let start = Instant::now();
    for i in 0..n {
        etcd.put(format!("/bench/put/{i}"), value.clone(), None)
            .await?;
    }
    let secs = start.elapsed().as_secs_f64();
    etcd.delete(
        "/bench/put/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    Ok(n as f64 / secs)
}

async fn get_p99(c: &Cluster, path: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let api = c.api()?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, _) = api.get(path).await?;
        anyhow::ensure!(status == 200, "GET {path} answered {status}");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = env_or("PERSYS_BENCH_CLIENTS", 64);
    let stored: usize = env_or("PERSYS_BENCH_STORED", 50_000);
    let sample = env_or("PERSYS_BENCH_SAMPLE", 10_000);
    let c = Cluster::start(ClusterOptions::default()).await?;
    let pid = c
        .scheduler
        .as_ref()
        .and_then(|p| p.pid())
        .unwrap_or_default();

    let puts = etcd_sequential_puts(&c, 2000).await?;
    println!("etcd sequential puts (one client, 900 B): {puts:.0}/s");

    let (rate, p50, p99) = creates(&c, clients, sample, "empty").await?;
    println!("creates from an empty store: {rate:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms ({clients} clients, {sample} creates)");

    let fill = stored.saturating_sub(sample);
    let started = Instant::now();
    let (fill_rate, _, _) = creates(&c, clients, fill, "fill").await?;
    println!(
        "filled to {stored} stored workloads in {:.1} s ({fill_rate:.0}/s)",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (rate_full, p50f, p99f) = creates(&c, clients, sample, "full").await?;
    println!(
        "creates at {stored} stored: {rate_full:.0}/s, p50 {p50f:.1} ms, p99 {p99f:.1} ms ({:.0} % of the empty-store rate)",
        100.0 * rate_full / rate
    );

    let (_, first) = c.api()?.get("/workloads?limit=1").await?;
    let id = first["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (g50, g99) = get_p99(&c, &format!("/workloads/{id}"), 2000).await?;
    println!(
        "GET one workload at {}: p50 {g50:.2} ms, p99 {g99:.2} ms",
        stored + sample
    );
    let (l50, l99) = get_p99(&c, "/workloads?limit=500", 200).await?;
    println!("GET /workloads?limit=500: p50 {l50:.1} ms, p99 {l99:.1} ms");
    let (f50, f99) = get_p99(&c, "/workloads?limit=500&label=team=t3", 200).await?;
    println!("GET /workloads?limit=500&label=team=t3: p50 {f50:.1} ms, p99 {f99:.1} ms");
    println!(
        "scheduler RSS with {} workloads: {:.0} MiB",
        stored + sample,
        rss_mib(pid)
    );
    Ok(())
}
