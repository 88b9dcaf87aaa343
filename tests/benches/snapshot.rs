//! Backup and restore at scale, on real parts: the release scheduler and `persys`
//! binaries, a real etcd (TLS, client-certificate auth). Build first: `cargo build
//! --release --bins`, then `cargo bench -p persys-tests --bench snapshot`.
//!
//! `PERSYS_BENCH_STORED` workloads (default 10,000; they stay `Pending`: no nodes) are
//! stored; then `persys snapshot save` (time, size), etcd is wiped and replaced, the
//! scheduler restarts on it, `persys snapshot restore` (time), and the time until the
//! scheduler lists every workload again.

use persys_tests::bench::env_or;
use persys_tests::{Cluster, ClusterOptions};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn fill(c: &Cluster, total: usize, clients: usize) -> anyhow::Result<()> {
    let api = Arc::new(c.api()?);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, next) = (api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = json!({
                    "name": format!("w-{i}"), "image": "busybox:local",
                    "command": ["sleep", "3600"], "labels": {"team": format!("t{}", i % 10)},
                    "resources": {"cpu": 100, "memory": 64},
                    "secretEnv": {"TOKEN": "s3cret"}
                });
                let (status, v) = api.post("/workloads", &body).await?;
                anyhow::ensure!(status == 201, "create answered {status}: {v}");
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn count(c: &Cluster) -> anyhow::Result<u64> {
    let (_, m) = c.api()?.get("/cluster/metrics").await?;
    Ok(m["totalWorkloads"].as_u64().unwrap_or(0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stored: usize = env_or("PERSYS_BENCH_STORED", 10_000);
    let mut c = Cluster::start(ClusterOptions::default()).await?;
    let started = Instant::now();
    fill(&c, stored, 64).await?;
    println!(
        "stored {stored} workloads in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let file = c.dir.path().join("bench.snap");
    let f = file.display().to_string();
    let t = Instant::now();
    let out = c.cli(&["snapshot", "save", &f])?;
    anyhow::ensure!(out.status.success(), "save: {out:?}");
    let save_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&file)?.len();
    println!(
        "snapshot save: {save_s:.2} s, {:.1} MiB ({:.0} records/s)",
        bytes as f64 / 1048576.0,
        stored as f64 / save_s
    );

    c.kill_scheduler();
    c.etcd.wipe().await?;
    c.start_scheduler().await?;
    anyhow::ensure!(count(&c).await? == 0, "the new etcd is empty");
    let t = Instant::now();
    let out = c.cli(&["snapshot", "restore", &f])?;
    anyhow::ensure!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restore_s = t.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while count(&c).await? < stored as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the restore did not converge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "snapshot restore into an empty etcd: {restore_s:.2} s ({:.0} records/s); all {stored} listed {:.2} s after it began",
        stored as f64 / restore_s,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
