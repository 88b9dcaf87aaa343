//! Usage sampling for the autoscaler: every `--usage-interval-ms`, read the engine's
//! stats of each running service replica on this node and send what each used over
//! the interval (`POST /nodes/usage`). CPU is the difference of the container's CPU
//! counter between two reads, so a container's first read sends nothing; memory is
//! what it holds now. Only replicas of services are read (one engine call each), and a
//! node without any sends nothing.

use crate::client::SchedulerClient;
use crate::runtime::{ContainerRuntime, ContainerStats, Listed};
use crate::supervisor::Supervisor;
use futures::StreamExt;
use persys_proto::autoscale::{UsageReport, UsageSample};
use persys_proto::labels;
use persys_proto::service::SERVICE_LABEL;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Engine stats reads in flight at once.
const READS_AT_ONCE: usize = 8;

/// One container's last read.
#[derive(Debug, Clone, Copy)]
struct Read {
    stats: ContainerStats,
    at: Instant,
}

/// Millicores used between two reads of a CPU counter.
pub fn millicores(
    before: ContainerStats,
    before_at: Instant,
    now: ContainerStats,
    at: Instant,
) -> Option<u64> {
    let elapsed = at.checked_duration_since(before_at)?.as_nanos();
    if elapsed == 0 {
        return None;
    }
    let used = u128::from(now.cpu_total_ns.checked_sub(before.cpu_total_ns)?);
    u64::try_from(used * 1000 / elapsed).ok()
}

/// The containers to read: running replicas of services.
fn measured(listed: Vec<Listed>) -> Vec<(String, String)> {
    listed
        .into_iter()
        .filter(|c| c.running && c.labels.contains_key(SERVICE_LABEL))
        .filter_map(|c| {
            let workload = c.labels.get(labels::WORKLOAD_ID)?.clone();
            Some((c.id, workload))
        })
        .collect()
}

/// The sampling loop; ends at `stop`.
pub async fn run_sampling<R: ContainerRuntime>(
    supervisor: Arc<Supervisor<R>>,
    client: Arc<SchedulerClient>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: HashMap<String, Read> = HashMap::new();
    let mut sent_any = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let listed = match supervisor.runtime().list(supervisor.node_id()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "listing containers for usage failed");
                continue;
            }
        };
        let targets = measured(listed);
        let runtime = supervisor.runtime();
        let reads: Vec<(String, String, Option<ContainerStats>, Instant)> =
            futures::stream::iter(targets)
                .map(|(id, workload)| async move {
                    let stats = runtime.stats(&id).await.ok();
                    (id, workload, stats, Instant::now())
                })
                .buffer_unordered(READS_AT_ONCE)
                .collect()
                .await;
        let mut samples = Vec::new();
        let mut next = HashMap::new();
        for (id, workload, stats, at) in reads {
            let Some(stats) = stats else { continue };
            if let Some(before) = last.get(&id) {
                if let Some(cpu) = millicores(before.stats, before.at, stats, at) {
                    samples.push(UsageSample {
                        workload_id: workload,
                        cpu_millicores: cpu,
                        memory_bytes: stats.memory_bytes,
                    });
                }
            }
            next.insert(id, Read { stats, at });
        }
        last = next;
        // An empty report after a non-empty one clears what the scheduler holds.
        if samples.is_empty() && !sent_any {
            continue;
        }
        sent_any = !samples.is_empty();
        if let Err(e) = client.push_usage(&UsageReport { samples }).await {
            tracing::debug!(error = %e, "usage report not delivered; the next one follows");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cpu_total_ns: u64) -> ContainerStats {
        ContainerStats {
            cpu_total_ns,
            memory_bytes: 0,
        }
    }

    #[test]
    fn cpu_is_the_counter_difference_over_the_interval() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        // One core busy for 2 s is 1000 millicores; a quarter core is 250.
        assert_eq!(millicores(at(0), t0, at(2_000_000_000), t1), Some(1000));
        assert_eq!(millicores(at(1_000), t0, at(500_001_000), t1), Some(250));
        assert_eq!(
            millicores(at(5), t0, at(1), t1),
            None,
            "a restarted counter"
        );
        assert_eq!(millicores(at(0), t0, at(1), t0), None, "no time passed");
    }

    #[test]
    fn only_running_service_replicas_are_read() {
        let c = |id: &str, running: bool, service: bool| Listed {
            id: id.into(),
            name: id.into(),
            labels: [(labels::WORKLOAD_ID.to_string(), format!("w-{id}"))]
                .into_iter()
                .chain(service.then(|| (SERVICE_LABEL.to_string(), "web".to_string())))
                .collect(),
            running,
        };
        let got = measured(vec![
            c("a", true, true),
            c("b", false, true),
            c("c", true, false),
        ]);
        assert_eq!(got, vec![("a".to_string(), "w-a".to_string())]);
    }
}
