//! End-to-end benchmarks on real parts (build first: `cargo build --release --bins`,
//! then `cargo bench -p persys-tests --bench e2e`).
//!
//! 1. submit → running latency minus a bare Docker create+start of the same image,
//!    p50/p99 over `PERSYS_BENCH_RUNS` (default 40) runs. Both timers stop at the same
//!    event, the engine's own `start` event of the container (its `timeNano`, read from
//!    Docker's event stream), so "persys minus bare" is the cost persys adds before
//!    Docker starts the container, not that plus the status report back to etcd;
//! 2. etcd revisions written by an idle 2-node cluster in `PERSYS_BENCH_IDLE_SECS`
//!    (default 60) seconds.

use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions};
use bollard::system::EventsOptions;
use futures::StreamExt;
use persys_tests::bench::{env_or, percentile};
use persys_tests::{AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Label that marks the bare containers of this bench (its value: the run's name).
const BARE_LABEL: &str = "persys-bench-bare";
/// How long a container may take to start before the run counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Now, in nanoseconds since the Unix epoch: the clock Docker stamps its events with
/// (the engine runs on this host, so both sides read the same realtime clock).
fn now_nanos() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos(),
    )?)
}

/// Milliseconds from `since_nanos` until the engine's `start` event of the container
/// whose label `label` has the value `value`. The event stream is asked for events
/// `since` the timer started, so an event that came before the stream's request was
/// sent (bollard sends it lazily) is replayed rather than missed.
async fn started_after_ms(
    docker: &bollard::Docker,
    since_nanos: i64,
    label: &str,
    value: &str,
) -> anyhow::Result<f64> {
    let since = format!(
        "{}.{:09}",
        since_nanos.div_euclid(1_000_000_000),
        since_nanos.rem_euclid(1_000_000_000)
    );
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string()]),
        ("label".to_string(), vec![format!("{label}={value}")]),
    ]);
    let mut events = docker.events(Some(EventsOptions::<String> {
        since: Some(since),
        until: None,
        filters,
    }));
    let wait = async {
        while let Some(ev) = events.next().await {
            let ev = ev?;
            let attributes = ev.actor.and_then(|a| a.attributes).unwrap_or_default();
            // The engine filters already; this guards against a filter it ignored.
            if ev.action.as_deref() != Some("start")
                || attributes.get(label).map(String::as_str) != Some(value)
            {
                continue;
            }
            let at = ev
                .time_nano
                .ok_or_else(|| anyhow::anyhow!("start event without timeNano"))?;
            return Ok((at - since_nanos) as f64 / 1e6);
        }
        anyhow::bail!("docker event stream ended before the container started")
    };
    tokio::time::timeout(START_TIMEOUT, wait)
        .await
        .map_err(|_| anyhow::anyhow!("no start event for {label}={value} in {START_TIMEOUT:?}"))?
}

async fn bare_docker_ms(docker: &bollard::Docker) -> anyhow::Result<f64> {
    let name = format!("persys-bench-bare-{}", uuid::Uuid::new_v4().simple());
    let start = now_nanos()?;
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.clone(),
                platform: None,
            }),
            Config {
                image: Some(TEST_IMAGE.to_string()),
                cmd: Some(vec!["sleep".to_string(), "3600".to_string()]),
                labels: Some(HashMap::from([(BARE_LABEL.to_string(), name.clone())])),
                ..Default::default()
            },
        )
        .await?;
    docker.start_container::<String>(&name, None).await?;
    let ms = started_after_ms(docker, start, BARE_LABEL, &name).await;
    docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await?;
    ms
}

async fn submit_to_running_ms(
    c: &Cluster,
    docker: &bollard::Docker,
) -> anyhow::Result<(f64, String)> {
    let start = now_nanos()?;
    let w = c
        .submit(json!({"image": TEST_IMAGE, "command": ["sleep", "3600"]}))
        .await?;
    let id = w["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the answer has no id: {w}"))?
        .to_string();
    let ms = started_after_ms(docker, start, persys_proto::labels::WORKLOAD_ID, &id).await?;
    Ok((ms, id))
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
        scheduler_log: Some("info".into()),
        ..Default::default()
    })
    .await?;

    // Warm both paths once.
    bare_docker_ms(&docker).await?;
    let (_, warm) = submit_to_running_ms(&c, &docker).await?;
    c.api()?.delete(&format!("/workloads/{warm}")).await?;

    let mut persys = Vec::with_capacity(runs);
    let mut bare = Vec::with_capacity(runs);
    let mut overhead = Vec::with_capacity(runs);
    for _ in 0..runs {
        let b = bare_docker_ms(&docker).await?;
        let (p, id) = submit_to_running_ms(&c, &docker).await?;
        persys.push(p);
        bare.push(b);
        overhead.push(p - b);
        c.api()?.delete(&format!("/workloads/{id}")).await?;
    }
    for v in [&mut persys, &mut bare, &mut overhead] {
        v.sort_by(f64::total_cmp);
    }
    println!("submit → container started (Docker's start event) over {runs} runs (ms):");
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
