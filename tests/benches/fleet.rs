//! A simulated fleet on real wires: the release scheduler, a real etcd, and
//! `persys-agent sim` (one process, `PERSYS_BENCH_NODES` nodes, default 1,000, each with
//! its own certificate, mTLS API, heartbeat stream and fake engine). Build first:
//! `cargo build --release --bins`, then `cargo bench -p persys-tests --bench fleet`.
//!
//! 1. time for every node to register and be Active;
//! 2. the scheduler's CPU and RSS with the fleet idle (heartbeats only);
//! 3. `PERSYS_BENCH_WORKLOADS` (default 50,000) workloads submitted by 64 clients →
//!    all `Running` on the fleet: total time, decisions/s, create p50/p99, and beside
//!    the load a user's create (one every 20 ms) and GET of one workload, p50/p99;
//! 4. afterwards: RSS; a user's create and GET on the loaded cluster (every node
//!    heartbeating, every workload Running), p50/p99; `GET /workloads?limit=500` p99.

use persys_tests::bench::{cpu_seconds, env_or, percentile, rss_mib};
use persys_tests::{Api, Cluster, ClusterOptions};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn running(c: &Cluster) -> anyhow::Result<u64> {
    let m = c.api()?.get_json("/cluster/metrics").await?;
    Ok(m["workloadsByStatus"]["Running"].as_u64().unwrap_or(0))
}

/// Create one workload named `name`; milliseconds until it was acknowledged.
async fn timed_create(api: &Api, name: String) -> anyhow::Result<f64> {
    let body = json!({
        "name": name,
        "image": "busybox:local",
        "command": ["sleep", "3600"],
        "resources": {"cpu": 10, "memory": 16}
    });
    let t = Instant::now();
    let (status, v) = api.post("/workloads", &body).await?;
    anyhow::ensure!(status == 201, "create answered {status}: {v}");
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// A user's API latency on the loaded cluster (every node heartbeating, every workload
/// stored and Running): one create and one GET of a workload every 20 ms, side by side,
/// for `PERSYS_BENCH_STEADY_SAMPLES` (default 500) of each.
async fn steady_api_latency(api: &Arc<Api>, nodes: usize, total: usize) -> anyhow::Result<()> {
    let samples = env_or("PERSYS_BENCH_STEADY_SAMPLES", 500);
    let (status, v) = api.get("/workloads?limit=1").await?;
    anyhow::ensure!(status == 200, "list answered {status}");
    let id = v["items"][0]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no workload listed"))?
        .to_string();
    let getter = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(samples);
            for _ in 0..samples {
                let t = Instant::now();
                let (status, _) = api.get(&format!("/workloads/{id}")).await?;
                anyhow::ensure!(status == 200, "GET answered {status}");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(lat)
        })
    };
    let mut creates = Vec::with_capacity(samples);
    for i in 0..samples {
        creates.push(timed_create(api, format!("steady-{i}")).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut gets = getter.await??;
    creates.sort_by(f64::total_cmp);
    gets.sort_by(f64::total_cmp);
    println!(
        "API with {nodes} nodes heartbeating and {total} workloads Running: create p50 {:.1} ms, p99 {:.1} ms; GET p50 {:.2} ms, p99 {:.2} ms ({samples} of each)",
        percentile(&creates, 0.5),
        percentile(&creates, 0.99),
        percentile(&gets, 0.5),
        percentile(&gets, 0.99),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = env_or("PERSYS_BENCH_NODES", 1000);
    let total = env_or("PERSYS_BENCH_WORKLOADS", 50_000);
    let clients = env_or("PERSYS_BENCH_CLIENTS", 64);
    let c = Cluster::start(ClusterOptions {
        scheduler_args: vec!["--max-connections".into(), (nodes * 3 + 1024).to_string()],
        scheduler_log: Some("info".into()),
        ..Default::default()
    })
    .await?;
    let pid = c
        .scheduler
        .as_ref()
        .and_then(|p| p.pid())
        .unwrap_or_default();

    let started = Instant::now();
    let fleet = c
        .start_sim("fleet", nodes as u32, &[], Duration::from_secs(300))
        .await?;
    println!(
        "{nodes} simulated nodes registered and Active in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = cpu_seconds(pid);
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let (cpu1, rss_idle) = (cpu_seconds(pid), rss_mib(pid));
    println!(
        "scheduler with {nodes} idle nodes heartbeating: {:.1} % of a core, RSS {rss_idle:.0} MiB",
        100.0 * (cpu1 - cpu0) / idle.as_secs_f64()
    );

    let api = Arc::new(c.api()?);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let submitted = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, next) = (api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                lat.push(timed_create(&api, format!("w{i}")).await?);
            }
        }));
    }
    // GETs of one workload while the load runs.
    let getter = {
        let (api, done) = (api.clone(), done.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut id = None;
            while !done.load(Ordering::Relaxed) {
                if id.is_none() {
                    if let Ok((200, v)) = api.get("/workloads?limit=1").await {
                        id = v["items"][0]["id"].as_str().map(String::from);
                    }
                }
                if let Some(id) = &id {
                    let t = Instant::now();
                    if let Ok((200, _)) = api.get(&format!("/workloads/{id}")).await {
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lat
        })
    };
    // A user's create while the load runs: one every 20 ms, beside the 64 clients (whose
    // own latency is bound by Little's law: clients / throughput).
    let prober = {
        let (api, next) = (api.clone(), next.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.load(Ordering::Relaxed) < total {
                lat.push(timed_create(&api, format!("probe-{}", lat.len())).await?);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, anyhow::Error>(lat)
        })
    };
    let mut lat = Vec::with_capacity(total);
    for t in tasks {
        lat.extend(t.await??);
    }
    let submit_secs = submitted.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    println!(
        "{total} workloads submitted in {submit_secs:.1} s: {:.0} decisions/s, create p50 {:.1} ms, p99 {:.1} ms",
        total as f64 / submit_secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let mut probes = prober.await??;
    probes.sort_by(f64::total_cmp);
    println!(
        "a user's create during it (one every 20 ms): p50 {:.1} ms, p99 {:.1} ms ({} samples)",
        percentile(&probes, 0.5),
        percentile(&probes, 0.99),
        probes.len()
    );
    let expected = total + probes.len();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = 0;
    loop {
        let n = running(&c).await?;
        if n as usize >= expected {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {n} of {expected} Running after 600 s");
        }
        if n / 10_000 != last / 10_000 {
            println!(
                "  {n} Running after {:.1} s",
                submitted.elapsed().as_secs_f64()
            );
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_secs = submitted.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut gets = getter.await?;
    gets.sort_by(f64::total_cmp);
    println!(
        "all {expected} Running on {nodes} nodes {all_secs:.1} s after the first submission ({:.0}/s end to end)",
        expected as f64 / all_secs
    );
    println!(
        "GET one workload under that load: p50 {:.2} ms, p99 {:.2} ms ({} samples)",
        percentile(&gets, 0.5),
        percentile(&gets, 0.99),
        gets.len()
    );
    let rss = rss_mib(pid);
    println!("scheduler RSS with {nodes} nodes and {total} workloads: {rss:.0} MiB");
    steady_api_latency(&api, nodes, total).await?;
    let mut pages = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (status, _) = api.get("/workloads?limit=500").await?;
        anyhow::ensure!(status == 200);
        pages.push(t.elapsed().as_secs_f64() * 1e3);
    }
    pages.sort_by(f64::total_cmp);
    println!(
        "GET /workloads?limit=500: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&pages, 0.5),
        percentile(&pages, 0.99)
    );
    drop(fleet);
    Ok(())
}
