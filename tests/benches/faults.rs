//! Fault benchmarks on real parts (root, built binaries: `cargo build --release --bins`,
//! then `cargo bench -p persys-tests --bench faults`).
//!
//! 1. node death → replacement Running: a host (network namespace) is killed (agent
//!    kill -9, containers removed) under one `always` workload; time until the workload
//!    is Running on another node. `PERSYS_BENCH_DEATH_RUNS` (default 20) trials, node
//!    timeout `PERSYS_BENCH_NODE_TIMEOUT_MS` (default 2500) with heartbeats every
//!    `PERSYS_BENCH_HEARTBEAT_MS` (default 500).
//! 2. leader failover: three scheduler replicas; the leader is killed with kill -9; time
//!    until another replica leads and a submission is acknowledged (201).
//!    `PERSYS_BENCH_FAILOVER_RUNS` (default 20) trials.

use persys_tests::bench::{env_or, percentile};
use persys_tests::{AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: n={} p50={:.0} ms p99={:.0} ms min={:.0} ms max={:.0} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.first().copied().unwrap_or(f64::NAN),
        ms.last().copied().unwrap_or(f64::NAN),
    );
}

async fn post_node(api: &Api, node: &str, action: &str) -> anyhow::Result<()> {
    let (s, v) = api
        .post(&format!("/nodes/{node}/{action}"), &json!({}))
        .await?;
    anyhow::ensure!(s == 200, "{action} {node}: {s} {v}");
    Ok(())
}

/// One trial: a workload on host `victim`, the host dies; ms until Running elsewhere.
async fn node_death_trial(c: &mut Cluster, victim: usize) -> anyhow::Result<f64> {
    let api = c.api()?;
    let nodes = c.node_ids();
    for (i, n) in nodes.iter().enumerate() {
        if i != victim {
            post_node(&api, n, "cordon").await?;
        }
    }
    let w = c
        .submit(
            json!({"image": TEST_IMAGE, "command": ["sleep", "3600"], "restartPolicy": "always"}),
        )
        .await?;
    let id = w["id"].as_str().unwrap_or_default().to_string();
    let on_victim = nodes[victim].clone();
    c.wait_workload(&id, Duration::from_secs(30), "Running", |w| {
        w["status"] == "Running" && w["nodeId"] == on_victim.as_str()
    })
    .await?;
    for (i, n) in nodes.iter().enumerate() {
        if i != victim {
            post_node(&api, n, "uncordon").await?;
        }
    }
    c.kill_host(victim);
    let killed = Instant::now();
    c.wait_workload(&id, Duration::from_secs(30), "Running elsewhere", |w| {
        w["status"] == "Running" && w["nodeId"].as_str().is_some_and(|n| n != on_victim)
    })
    .await?;
    let ms = killed.elapsed().as_secs_f64() * 1e3;
    api.delete(&format!("/workloads/{id}")).await?;
    // The host comes back for the next trials.
    c.start_agent(victim).await?;
    Ok(ms)
}

async fn node_death(runs: u64) -> anyhow::Result<Vec<f64>> {
    let timeout = env_or("PERSYS_BENCH_NODE_TIMEOUT_MS", 2500);
    let heartbeat = env_or("PERSYS_BENCH_HEARTBEAT_MS", 500);
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default(); 3],
        node_timeout_ms: Some(timeout),
        scheduler_args: vec!["--heartbeat-interval-ms".into(), heartbeat.to_string()],
        netns: true,
        ..Default::default()
    })
    .await?;
    println!("node death: node timeout {timeout} ms, heartbeats every {heartbeat} ms");
    let mut out = Vec::new();
    for trial in 0..runs {
        let victim = (trial % 3) as usize;
        let ms = node_death_trial(&mut c, victim).await?;
        println!("  trial {trial}: {ms:.0} ms");
        out.push(ms);
    }
    Ok(out)
}

/// One trial: kill -9 the leader; ms until another replica leads and acknowledges.
async fn failover_trial(c: &mut Cluster) -> anyhow::Result<f64> {
    let leader = c.wait_leader(Duration::from_secs(10)).await?;
    let others: Vec<Api> = (0..c.replica_count())
        .filter(|i| *i != leader)
        .map(|i| c.replica_api(i))
        .collect::<anyhow::Result<_>>()?;
    let body = json!({"image": TEST_IMAGE, "command": ["sleep", "3600"]});
    c.kill_replica(leader);
    let killed = Instant::now();
    let mut r = 0;
    let ms = loop {
        if let Ok((201, _)) = others[r % others.len()].post("/workloads", &body).await {
            break killed.elapsed().as_secs_f64() * 1e3;
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(30),
            "no replica acknowledged within 30 s of the leader's death"
        );
        r += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    c.start_replica(leader).await?;
    Ok(ms)
}

async fn failover(runs: u64) -> anyhow::Result<Vec<f64>> {
    // No agents: an acknowledged submission is stored (Pending) whether or not it runs.
    let mut c = Cluster::start(ClusterOptions {
        schedulers: 3,
        ..Default::default()
    })
    .await?;
    let mut out = Vec::new();
    for trial in 0..runs {
        let ms = failover_trial(&mut c).await?;
        println!("  trial {trial}: {ms:.0} ms");
        out.push(ms);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let death = node_death(env_or("PERSYS_BENCH_DEATH_RUNS", 20)).await?;
    report("node death -> replacement Running", death);
    let fo = failover(env_or("PERSYS_BENCH_FAILOVER_RUNS", 20)).await?;
    report("leader failover -> submission acknowledged", fo);
    Ok(())
}
