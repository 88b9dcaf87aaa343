//! End-to-end benchmarks on real parts (build first: `cargo build --release --bins`,
//! then `cargo bench -p persys-tests --bench e2e`).
//!
//! 1. submit → Running latency minus a bare Docker create+start of the same image,
//!    p50/p99 over `PERSYS_BENCH_RUNS` (default 40) runs;
//! 2. etcd revisions written by an idle 2-node cluster in `PERSYS_BENCH_IDLE_SECS`
//!    (default 60) seconds.

use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions};
use etcd_client::{EventType, WatchOptions};
use persys_tests::{AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bare_docker_ms(docker: &bollard::Docker) -> anyhow::Result<f64> {
    let name = format!("persys-bench-bare-{}", uuid::Uuid::new_v4().simple());
    let start = Instant::now();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.clone(),
                platform: None,
            }),
            Config {
                image: Some(TEST_IMAGE.to_string()),
                cmd: Some(vec!["sleep".to_string(), "3600".to_string()]),
                ..Default::default()
            },
        )
        .await?;
    docker.start_container::<String>(&name, None).await?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await?;
    Ok(ms)
}

async fn submit_to_running_ms(c: &Cluster) -> anyhow::Result<(f64, String)> {
    let mut etcd = c.etcd.client().await?;
    let (_w, mut stream) = etcd
        .watch("/workloads/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let start = Instant::now();
    let w = c
        .submit(json!({"image": TEST_IMAGE, "command": ["sleep", "3600"]}))
        .await?;
    let id = w["id"].as_str().unwrap_or_default().to_string();
    let key = format!("/workloads/{id}");
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await??
            .ok_or_else(|| anyhow::anyhow!("watch closed"))?;
        for ev in resp.events() {
            if ev.event_type() != EventType::Put {
                continue;
            }
            let Some(kv) = ev.kv() else { continue };
            if kv.key() != key.as_bytes() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(kv.value())?;
            if v["status"] == "Running" {
                return Ok((start.elapsed().as_secs_f64() * 1e3, id));
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = env_or("PERSYS_BENCH_RUNS", 40) as usize;
    let idle_secs = env_or("PERSYS_BENCH_IDLE_SECS", 60);
    let docker = bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;

    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(), AgentOptions::default()],
        ..Default::default()
    })
    .await?;

    // Warm both paths once.
    bare_docker_ms(&docker).await?;
    let (_, warm) = submit_to_running_ms(&c).await?;
    c.api()?.delete(&format!("/workloads/{warm}")).await?;

    let mut persys = Vec::with_capacity(runs);
    let mut bare = Vec::with_capacity(runs);
    let mut overhead = Vec::with_capacity(runs);
    for _ in 0..runs {
        let b = bare_docker_ms(&docker).await?;
        let (p, id) = submit_to_running_ms(&c).await?;
        persys.push(p);
        bare.push(b);
        overhead.push(p - b);
        c.api()?.delete(&format!("/workloads/{id}")).await?;
    }
    for v in [&mut persys, &mut bare, &mut overhead] {
        v.sort_by(f64::total_cmp);
    }
    println!("submit→Running over {runs} runs (ms):");
    println!(
        "  persys   p50 {:7.1}  p99 {:7.1}",
        percentile(&persys, 0.5),
        percentile(&persys, 0.99)
    );
    println!(
        "  bare     p50 {:7.1}  p99 {:7.1}  (bollard create+start)",
        percentile(&bare, 0.5),
        percentile(&bare, 0.99)
    );
    println!(
        "  overhead p50 {:7.1}  p99 {:7.1}  (target p50 ≤ 50, p99 ≤ 150)",
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99)
    );

    // Let deletes settle, then count revisions of an idle cluster.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = c.etcd.revision().await?;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let after = c.etcd.revision().await?;
    println!(
        "idle 2-node cluster: {} etcd revisions in {idle_secs} s (target 0)",
        after - before
    );
    Ok(())
}
