//! Heartbeats: every interval, tell the scheduler this node lives and how much CPU and
//! memory its running containers leave free. Errors are logged and the loop goes on;
//! when the scheduler no longer knows the node, it registers again.

use crate::client::ClientError;
use crate::client::SchedulerClient;
use crate::join::Joiner;
use crate::runtime::ContainerRuntime;
use crate::supervisor::{Supervisor, Usage};
use futures::StreamExt;
use persys_proto::{HeartbeatResponse, NodeHeartbeat};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// What the node advertises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// CPU cores.
    pub cpu_cores: f64,
    /// Memory, MB.
    pub memory_mb: u64,
}

/// The heartbeat for a capacity minus what running containers' limits hold.
pub fn heartbeat_for(capacity: Capacity, usage: Usage) -> NodeHeartbeat {
    let used_cores = usage.nano_cpus.max(0) as f64 / 1e9;
    let used_mb = u64::try_from(usage.memory_bytes.max(0)).unwrap_or(u64::MAX) / (1024 * 1024);
    NodeHeartbeat {
        available_cpu: ((capacity.cpu_cores - used_cores).max(0.0) * 1000.0).round() / 1000.0,
        available_memory: capacity.memory_mb.saturating_sub(used_mb),
        running_containers: usage.running,
    }
}

/// Heartbeats that may be on the wire at once. On a slow, lossy link one heartbeat can
/// sit in TCP retransmission for seconds; the next ones go out on their own connections
/// meanwhile, so a single stuck request never silences the node for the node timeout.
const MAX_IN_FLIGHT: usize = 4;

/// While the heartbeat stream is up, a separate `POST /nodes/heartbeat` goes out only
/// every this many intervals: a backup path on other connections, so that one stalled
/// connection (retransmissions on a slow or lossy link) never silences the node.
const POST_EVERY_WHILE_STREAMING: u32 = 4;

/// The backup's spacing, in intervals, while the link is fast (the last backup came
/// back within [`FAST_LINK_FRACTION`] of an interval): a stall is then unlikely, and
/// each backup is a whole request for the scheduler (at 1,000 nodes, most of its idle
/// CPU). A slow answer puts the spacing back to [`POST_EVERY_WHILE_STREAMING`].
const POST_EVERY_ON_A_FAST_LINK: u32 = 8;

/// A backup answered within this fraction of an interval says the link is fast.
const FAST_LINK_FRACTION: u32 = 4;

/// How many intervals apart the backup heartbeats go while streaming, given the last
/// backup's round trip.
fn backup_spacing(last_round_trip: Option<Duration>, interval: Duration) -> u32 {
    match last_round_trip {
        Some(rtt) if rtt <= interval / FAST_LINK_FRACTION => POST_EVERY_ON_A_FAST_LINK,
        _ => POST_EVERY_WHILE_STREAMING,
    }
}

/// How long one heartbeat stream lasts before the agent ends it (cleanly, which the
/// scheduler does not take for a death) and opens the next: streams move to a new
/// leader and never outlive what proxies and servers allow.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);

/// Heartbeats waiting for the stream; a full queue drops a beat (the next one follows).
const STREAM_QUEUE: usize = 4;

/// The long-lived heartbeat stream of this agent: while it is up, each heartbeat is one
/// line on it, and a broken stream tells the scheduler at once that the agent died.
/// Reopened with backoff (with jitter) when it ends.
async fn keep_stream(
    client: Arc<SchedulerClient>,
    slot: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Sender<bytes::Bytes>>>>,
    shutdown: CancellationToken,
) {
    use backon::BackoffBuilder;
    let build = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut pauses = build();
    loop {
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(STREAM_QUEUE);
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
        let opened = tokio::time::Instant::now();
        let stream = client.heartbeat_stream(lines);
        tokio::pin!(stream);
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = &mut stream => r,
            _ = tokio::time::sleep(STREAM_LIFETIME) => {
                // End the body cleanly (its only sender is in the slot), which the
                // scheduler does not take for a death, and wait for the answer.
                slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = &mut stream => r,
                }
            }
        };
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match ended {
            Ok(()) if opened.elapsed() >= STREAM_LIFETIME => {
                tracing::debug!("heartbeat stream recycled");
                pauses = build();
                continue;
            }
            Ok(()) => tracing::debug!("heartbeat stream ended"),
            Err(e) => tracing::debug!(error = %e, "heartbeat stream ended"),
        }
        if opened.elapsed() > Duration::from_secs(30) {
            pauses = build(); // it was up for a while: start the backoff over
        }
        let pause = pauses.next().unwrap_or(Duration::from_secs(10));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Heartbeat until `shutdown`.
pub async fn run_heartbeats<R: ContainerRuntime>(
    supervisor: Arc<Supervisor<R>>,
    client: Arc<SchedulerClient>,
    joiner: Arc<Joiner>,
    capacity: Capacity,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut usage = Usage::default();
    let mut failing = false;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Owned here: dropping the set on shutdown aborts heartbeats still on the wire.
    let mut beats: JoinSet<(Result<HeartbeatResponse, ClientError>, Duration)> = JoinSet::new();
    let mut last_round_trip: Option<Duration> = None;
    let stream = Arc::new(std::sync::Mutex::new(None));
    let mut streamer = JoinSet::new();
    streamer.spawn(keep_stream(
        client.clone(),
        stream.clone(),
        shutdown.clone(),
    ));
    let mut tick_no: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(done) = beats.join_next() => {
                let Ok((answer, took)) = done else { continue };
                // A failed backup says nothing good about the link.
                last_round_trip = answer.is_ok().then_some(took);
                handle_answer(answer, &supervisor, &client, &joiner, &mut failing).await;
            }
            _ = ticker.tick() => {
                match supervisor.usage().await {
                    Ok(u) => usage = u,
                    // Keep the last known usage: the node is alive even if Docker hiccups.
                    Err(e) => tracing::debug!(error = %e, "cannot list containers for the heartbeat"),
                }
                let beat = heartbeat_for(capacity, usage);
                tick_no = tick_no.wrapping_add(1);
                let sender = stream.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let streamed = match (sender, serde_json::to_vec(&beat)) {
                    (Some(tx), Ok(mut line)) => {
                        line.push(b'\n');
                        tx.try_send(bytes::Bytes::from(line)).is_ok()
                    }
                    _ => false,
                };
                if streamed && !tick_no.is_multiple_of(backup_spacing(last_round_trip, interval)) {
                    continue;
                }
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    tracing::debug!("{MAX_IN_FLIGHT} heartbeats still in flight; skipping one");
                    continue;
                };
                let client = client.clone();
                beats.spawn(async move {
                    let sent = tokio::time::Instant::now();
                    let answer = client.heartbeat(&beat).await;
                    drop(permit);
                    (answer, sent.elapsed())
                });
            }
        }
    }
}

async fn handle_answer<R: ContainerRuntime>(
    answer: Result<HeartbeatResponse, ClientError>,
    supervisor: &Supervisor<R>,
    client: &SchedulerClient,
    joiner: &Joiner,
    failing: &mut bool,
) {
    match answer {
        Ok(answer) => {
            tracing::trace!(reregister = answer.reregister, "heartbeat");
            if *failing {
                tracing::info!("heartbeats reach the scheduler again");
                *failing = false;
                supervisor.reports().request_full();
            }
            if answer.reregister {
                reregister(supervisor, client, joiner).await;
            }
        }
        Err(e) if !*failing => {
            tracing::warn!(error = %e, "heartbeat failed; retrying every interval");
            *failing = true;
        }
        Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
    }
}

async fn reregister<R: ContainerRuntime>(
    supervisor: &Supervisor<R>,
    client: &SchedulerClient,
    joiner: &Joiner,
) {
    if joiner.token.is_none() {
        tracing::error!("the scheduler does not know this node and asks it to re-register, but no join token is configured");
        return;
    }
    tracing::info!("the scheduler asks this node to re-register");
    match joiner.register_once().await {
        Ok(identity) => {
            if let Err(e) = client.rotate(&identity) {
                tracing::error!(error = %e, "cannot use the new certificate");
            }
            supervisor.reports().request_full();
        }
        Err(e) => {
            tracing::warn!(error = %e, "re-registration failed; will try at the next request")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_are_spaced_out_only_while_the_link_answers_fast() {
        let interval = Duration::from_millis(500);
        let fast = Some(Duration::from_millis(20));
        assert_eq!(backup_spacing(fast, interval), POST_EVERY_ON_A_FAST_LINK);
        // 300 ms each way (the netem fault test), a failure, or no answer yet.
        let slow = Some(Duration::from_millis(600));
        assert_eq!(backup_spacing(slow, interval), POST_EVERY_WHILE_STREAMING);
        assert_eq!(backup_spacing(None, interval), POST_EVERY_WHILE_STREAMING);
    }

    #[test]
    fn free_resources_are_capacity_minus_running_limits() {
        let cap = Capacity {
            cpu_cores: 2.0,
            memory_mb: 1024,
        };
        let usage = Usage {
            nano_cpus: 750_000_000,
            memory_bytes: 256 << 20,
            running: 3,
        };
        let beat = heartbeat_for(cap, usage);
        assert_eq!(beat.available_cpu, 1.25);
        assert_eq!(beat.available_memory, 768);
        assert_eq!(beat.running_containers, 3);
    }

    #[test]
    fn overcommitted_nodes_report_zero_free_not_negative() {
        let cap = Capacity {
            cpu_cores: 1.0,
            memory_mb: 100,
        };
        let usage = Usage {
            nano_cpus: 3_000_000_000,
            memory_bytes: 1 << 30,
            running: 1,
        };
        let beat = heartbeat_for(cap, usage);
        assert_eq!((beat.available_cpu, beat.available_memory), (0.0, 0));
    }
}
