//! The backstop: every `--monitor-interval-ms`, list each reachable node's containers
//! and correct drift the pushes missed (a container gone → `Missing`, unexpected
//! exits), and remove containers no record wants on that node any more (deleted while
//! the node was away, or moved elsewhere after the node was lost).

use crate::context::Ctx;
use crate::control;
use persys_proto::{Node, NodeStatus, StatusReport};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Requests to reconcile one node now (e.g. it came back after being Inactive).
#[derive(Debug)]
pub struct NodeQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Nodes to reconcile at their next heartbeat (they registered again).
    at_next_beat: Mutex<std::collections::HashSet<String>>,
    /// Whether `at_next_beat` may hold any (a heartbeat skips the lock otherwise).
    any_at_next_beat: std::sync::atomic::AtomicBool,
}

impl Default for NodeQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            at_next_beat: Mutex::default(),
            any_at_next_beat: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl NodeQueue {
    /// Reconcile `node_id` soon.
    pub fn request(&self, node_id: &str) {
        let _ = self.tx.send(node_id.to_string());
    }

    /// Reconcile `node_id` once it next heartbeats: it registered again (a restart), and
    /// may still run copies of workloads that moved while it was away; its API answers
    /// by the time it beats.
    pub fn request_at_next_beat(&self, node_id: &str) {
        self.at_next_beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_id.to_string());
        self.any_at_next_beat
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// `node_id` heartbeat: the reconcile asked for its next beat is due.
    pub fn beat(&self, node_id: &str) {
        if !self
            .any_at_next_beat
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let mut waiting = self.at_next_beat.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.remove(node_id) {
            self.request(node_id);
        }
        if waiting.is_empty() {
            self.any_at_next_beat
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(mut requests) = ctx
        .node_queue()
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        tracing::error!("backstop reconcile started twice");
        return;
    };
    run_with(&ctx, &mut requests, &shutdown).await;
    // The next leadership term's loop takes the queue again.
    *ctx.node_queue()
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(requests);
}

async fn run_with(
    ctx: &Arc<Ctx>,
    requests: &mut mpsc::UnboundedReceiver<String>,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(ctx.config().monitor_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the start-up state is fresh, so skip it.
    tick.tick().await;
    loop {
        let only = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => None,
            Some(id) = requests.recv() => Some(id),
        };
        for node in ctx.cache().nodes() {
            if only.as_ref().is_some_and(|id| *id != node.node_id) {
                continue;
            }
            if node.status == NodeStatus::Inactive {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = reconcile_node(ctx, &node) => if let Err(e) = r {
                    // Next interval tries again; liveness handles nodes that are gone.
                    tracing::warn!(node = %node.node_id, error = %e, "backstop reconcile failed");
                }
            }
        }
    }
}

/// Errors of one node's reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] crate::agent_client::AgentError),
    /// etcd failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Compare one node's containers with the records and correct the difference.
pub async fn reconcile_node(ctx: &Ctx, node: &Node) -> Result<(), ReconcileError> {
    let containers = ctx.agents().list(node).await?;
    for c in &containers {
        let owner = ctx.cache().workload(&c.workload_id).map(|v| v.value);
        let unwanted = match &owner {
            None => true,
            // An old copy of a move is removed by dispatch once its replacement allows.
            Some(w) => {
                w.node_id.as_deref() != Some(node.node_id.as_str())
                    && !w
                        .retiring
                        .iter()
                        .any(|r| r.node_id == node.node_id && r.generation == c.generation)
            }
        };
        if unwanted && ctx.restore_guard().keeps_orphans() {
            tracing::info!(node = %node.node_id, workload = %c.workload_id, "keeping a container without a record: etcd was emptied and awaits a restore");
            continue;
        }
        if unwanted {
            tracing::info!(node = %node.node_id, workload = %c.workload_id, generation = c.generation, "removing container no record wants here");
            // This container only (by id, else its generation's name), never a newer one.
            let target = c
                .container_id
                .clone()
                .unwrap_or_else(|| persys_proto::container_name(&c.workload_id, c.generation));
            ctx.agents().remove(node, &target).await?;
        }
    }
    let report = StatusReport {
        containers,
        full: true,
    };
    control::apply_report(ctx, &node.node_id, &report).await?;
    Ok(())
}
