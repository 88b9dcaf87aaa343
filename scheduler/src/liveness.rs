//! Node liveness from heartbeats, kept in memory. etcd is written only on a transition
//! (Active → Inactive after the timeout, Inactive → Active on the next heartbeat), never
//! per heartbeat.

use crate::context::Ctx;
use crate::control;
use crate::outage::OutageLog;
use crate::status;
use crate::store::Updated;
use chrono::{DateTime, Utc};
use persys_proto::{NodeHeartbeat, NodeStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often expiry is checked.
pub const TICK: Duration = Duration::from_millis(200);

/// The last heartbeat of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    /// When it arrived (monotonic, for expiry).
    pub at: Instant,
    /// When it arrived (wall clock, for the API); `None` for a start-up grace period.
    pub wall: Option<DateTime<Utc>>,
    /// Free CPU, cores.
    pub available_cpu: f64,
    /// Free memory, MB.
    pub available_memory: u64,
    /// Set when the node's heartbeat stream broke: it expires then unless a heartbeat
    /// arrives first.
    pub suspected_until: Option<Instant>,
    /// `at` is a grace period given (at a term's start, a registration), not a
    /// heartbeat.
    pub grace: bool,
}

/// Heartbeats by node id.
#[derive(Debug)]
pub struct Liveness {
    beats: Mutex<HashMap<String, Beat>>,
    timeout: Duration,
}

impl Liveness {
    /// Nodes silent for `timeout` expire.
    pub fn new(timeout: Duration) -> Self {
        Self {
            beats: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Beat>> {
        self.beats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a heartbeat; the time since the node's previous heartbeat (`None` for
    /// its first, or the first after a grace period).
    pub fn beat(&self, node_id: &str, hb: &NodeHeartbeat, now: Instant) -> Option<Duration> {
        let prev = self.lock().insert(
            node_id.to_string(),
            Beat {
                at: now,
                wall: Some(Utc::now()),
                available_cpu: hb.available_cpu,
                available_memory: hb.available_memory,
                suspected_until: None,
                grace: false,
            },
        );
        // A grace period is no heartbeat: its `at` is when it was given.
        prev.filter(|p| !p.grace)
            .map(|p| now.saturating_duration_since(p.at))
    }

    /// The longest time since the last heartbeat (or grace period) among the nodes
    /// `counted` admits; zero when there are none.
    pub fn max_age(&self, now: Instant, counted: impl Fn(&str) -> bool) -> Duration {
        self.lock()
            .iter()
            .filter(|(id, _)| counted(id))
            .map(|(_, b)| now.saturating_duration_since(b.at))
            .max()
            .unwrap_or_default()
    }

    /// The node's heartbeat stream broke (its agent may be dead): it expires `confirm`
    /// from `now` unless a heartbeat arrives meanwhile.
    pub fn suspect(&self, node_id: &str, now: Instant, confirm: Duration) {
        if let Some(b) = self.lock().get_mut(node_id) {
            let until = now + confirm;
            b.suspected_until = Some(b.suspected_until.map_or(until, |s| s.min(until)));
        }
    }

    /// Give `node_id` a fresh grace period (at start, or when it registers) without
    /// pretending a heartbeat arrived.
    pub fn grace(&self, node_id: &str, now: Instant) {
        let mut beats = self.lock();
        let prev = beats.get(node_id).copied();
        beats.insert(
            node_id.to_string(),
            Beat {
                at: now,
                wall: prev.and_then(|b| b.wall),
                available_cpu: prev.map(|b| b.available_cpu).unwrap_or_default(),
                available_memory: prev.map(|b| b.available_memory).unwrap_or_default(),
                suspected_until: None,
                grace: true,
            },
        );
    }

    /// The last heartbeat of a node.
    pub fn get(&self, node_id: &str) -> Option<Beat> {
        self.lock().get(node_id).copied()
    }

    /// Whether `node_id` has been silent for longer than the timeout at `now`. A node
    /// never seen is expired.
    pub fn is_expired(&self, node_id: &str, now: Instant) -> bool {
        match self.lock().get(node_id) {
            Some(b) => {
                now.saturating_duration_since(b.at) >= self.timeout
                    || b.suspected_until.is_some_and(|s| now >= s)
            }
            None => true,
        }
    }

    /// Forget a node.
    pub fn forget(&self, node_id: &str) {
        self.lock().remove(node_id);
    }
}

/// Mark silent Active nodes Inactive (one write each) and their workloads `Unknown`,
/// every [`TICK`], until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let now = Instant::now();
    for node in ctx.cache().nodes() {
        ctx.liveness().grace(&node.node_id, now);
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While etcd is down the write fails every tick: say so once per outage.
    let mut outage = OutageLog::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let mut failed = None;
        let mut attempted = false;
        for node in ctx.cache().nodes() {
            if node.status != NodeStatus::Active || !ctx.liveness().is_expired(&node.node_id, now) {
                continue;
            }
            attempted = true;
            if let Err(e) = expire(&ctx, &node.node_id).await {
                // Retried on the next tick: the node is still Active in the cache.
                tracing::debug!(node = %node.node_id, error = %e, "marking node inactive failed");
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => {
                outage.failed("marking silent nodes inactive", &e);
            }
            None if attempted => {
                outage.succeeded("marking silent nodes inactive");
            }
            None => {}
        }
    }
}

async fn expire(ctx: &Ctx, node_id: &str) -> Result<(), crate::store::StoreError> {
    let out =
        control::set_node_status(ctx, node_id, NodeStatus::Inactive, Some(NodeStatus::Active))
            .await?;
    if let Updated::Written(_) = out {
        tracing::warn!(node = %node_id, "node stopped heartbeating; marked Inactive");
    }
    for w in ctx.cache().workloads_on(node_id) {
        if w.node_id.as_deref() != Some(node_id) {
            continue;
        }
        control::update_workload(ctx, &w.id, |cur| {
            status::mark_unknown(cur, node_id, Utc::now())
        })
        .await?;
    }
    // Workloads of the lost node may move elsewhere.
    ctx.kick_pending();
    Ok(())
}

/// A heartbeat from a registered node: recorded in memory; an Inactive node becomes
/// Active again (one write). Returns `false` when the node is unknown.
pub async fn heartbeat(
    ctx: &Ctx,
    node_id: &str,
    hb: &NodeHeartbeat,
) -> Result<bool, crate::store::StoreError> {
    // The status only: a heartbeat copies no record (thousands arrive each second).
    let Some(status) = ctx.cache().node_status(node_id) else {
        return Ok(false);
    };
    ctx.node_queue().beat(node_id);
    if let Some(gap) = ctx.liveness().beat(node_id, hb, Instant::now()) {
        ctx.metrics().heartbeat_interval.observe(gap.as_secs_f64());
    }
    if status == NodeStatus::Inactive {
        let out =
            control::set_node_status(ctx, node_id, NodeStatus::Active, Some(NodeStatus::Inactive))
                .await?;
        if let Updated::Written(_) = out {
            tracing::info!(node = %node_id, "node heartbeating again; marked Active");
            ctx.kick_pending();
            // Its workloads are Unknown: learn their real states now.
            ctx.node_queue().request(node_id);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb() -> NodeHeartbeat {
        NodeHeartbeat {
            available_cpu: 1.5,
            available_memory: 512,
            running_containers: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn node_expires_after_timeout_without_heartbeat() {
        let l = Liveness::new(Duration::from_secs(5));
        l.beat("n1", &hb(), Instant::now());
        tokio::time::advance(Duration::from_millis(4900)).await;
        assert!(!l.is_expired("n1", Instant::now()));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(l.is_expired("n1", Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_stream_expires_the_node_after_the_confirmation_unless_it_beats() {
        let l = Liveness::new(Duration::from_secs(5));
        l.beat("n1", &hb(), Instant::now());
        l.beat("n2", &hb(), Instant::now());
        l.suspect("n1", Instant::now(), Duration::from_millis(800));
        l.suspect("n2", Instant::now(), Duration::from_millis(800));
        tokio::time::advance(Duration::from_millis(500)).await;
        // n2 is alive after all: its next heartbeat clears the suspicion.
        l.beat("n2", &hb(), Instant::now());
        assert!(!l.is_expired("n1", Instant::now()));
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(
            l.is_expired("n1", Instant::now()),
            "confirmed by the missed beats"
        );
        assert!(!l.is_expired("n2", Instant::now()));
        // Suspecting an unknown node does not invent it.
        l.suspect("ghost", Instant::now(), Duration::from_millis(1));
        assert!(l.get("ghost").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_renews_the_deadline() {
        let l = Liveness::new(Duration::from_secs(5));
        l.beat("n1", &hb(), Instant::now());
        tokio::time::advance(Duration::from_secs(4)).await;
        l.beat("n1", &hb(), Instant::now());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!l.is_expired("n1", Instant::now()));
        assert_eq!(l.get("n1").map(|b| b.available_memory), Some(512));
    }

    #[tokio::test(start_paused = true)]
    async fn grace_period_keeps_free_resources_and_unseen_node_is_expired() {
        let l = Liveness::new(Duration::from_secs(5));
        assert!(l.is_expired("ghost", Instant::now()));
        l.beat("n1", &hb(), Instant::now());
        tokio::time::advance(Duration::from_secs(10)).await;
        l.grace("n1", Instant::now());
        assert!(!l.is_expired("n1", Instant::now()));
        assert_eq!(l.get("n1").map(|b| b.available_cpu), Some(1.5));
    }

    #[test]
    fn a_beat_tells_the_gap_since_the_last_beat_and_the_oldest_is_found() {
        let l = Liveness::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(l.beat("n1", &hb(), t0), None, "a first beat");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.beat("n1", &hb(), t1), Some(Duration::from_millis(500)));
        // A grace period is no beat: the next beat tells no gap.
        l.grace("n1", t1 + Duration::from_secs(1));
        assert_eq!(l.beat("n1", &hb(), t1 + Duration::from_secs(2)), None);
        l.beat("n2", &hb(), t0);
        let now = t1 + Duration::from_secs(3);
        assert_eq!(l.max_age(now, |_| true), now - t0);
        assert_eq!(l.max_age(now, |id| id == "n1"), Duration::from_secs(1));
        assert_eq!(l.max_age(now, |_| false), Duration::ZERO);
    }
}
