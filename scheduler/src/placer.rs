//! The one placer: "snapshot → place → compare-and-swap put" under a single lock, so
//! concurrent submissions never double-book a node. Also re-places `Pending` workloads
//! when capacity may have appeared, workloads of lost nodes (per restart policy) and
//! workloads of draining nodes, and redeploys.

use crate::context::Ctx;
use crate::moves::{self, RedeployError};
use crate::placement::{self, Allocation, Candidate, Strategy};
use crate::store::{StoreError, StoreEvent, Updated};
use chrono::Utc;
use persys_proto::{keys, DesiredState, Node, NodeStatus, Workload, WorkloadStatus};
use std::collections::{HashMap, HashSet};
use tokio::sync::Mutex;

/// What the placer remembers between passes, only so that it logs each fact once.
#[derive(Debug, Default)]
struct Memory {
    /// Workload id → why it cannot leave its draining node (last logged).
    stuck: HashMap<String, String>,
    /// Draining nodes already logged as drained.
    drained: HashSet<String>,
}

/// Serialises placement decisions.
pub struct Placer {
    lock: Mutex<Memory>,
    strategy: Strategy,
}

/// Outcome of [`Placer::redeploy`].
#[derive(Debug)]
pub enum Redeployed {
    /// The record after the redeploy.
    Done(Box<Workload>),
    /// Refused; nothing changed.
    Refused(RedeployError),
    /// No such workload.
    Missing,
}

impl std::fmt::Debug for Placer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placer").finish_non_exhaustive()
    }
}

/// Resources reserved on each node: workloads that want to run there.
pub fn allocations(workloads: &[Workload]) -> HashMap<String, Allocation> {
    let mut out: HashMap<String, Allocation> = HashMap::new();
    for w in workloads {
        if w.desired_state != DesiredState::Running {
            continue;
        }
        if let Some(node) = &w.node_id {
            out.entry(node.clone()).or_default().add(&w.spec.resources);
        }
    }
    out
}

/// Decide where `w` goes given `nodes` and their `allocs`: on success the record is
/// placed (node, `Scheduled`, generation bumped) and the allocation counted; otherwise
/// it is `Pending` with the reason. Returns whether it was placed.
pub fn decide(
    w: &mut Workload,
    nodes: &[Node],
    allocs: &mut HashMap<String, Allocation>,
    strategy: Strategy,
) -> bool {
    let candidates: Vec<Candidate<'_>> = nodes
        .iter()
        .map(|node| Candidate {
            node,
            allocated: allocs.get(&node.node_id).copied().unwrap_or_default(),
        })
        .collect();
    match placement::place(&w.spec, &candidates, strategy) {
        Ok(p) => {
            allocs
                .entry(p.node_id.clone())
                .or_default()
                .add(&w.spec.resources);
            w.node_id = Some(p.node_id);
            w.status = WorkloadStatus::Scheduled;
            w.status_reason = None;
            w.exit_code = None;
            w.container_id = None;
            w.restart_count = 0;
            w.generation += 1;
            true
        }
        Err(e) => {
            w.node_id = None;
            w.status = WorkloadStatus::Pending;
            w.status_reason = Some(e.to_string());
            false
        }
    }
}

impl Placer {
    /// A placer using `strategy`.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            lock: Mutex::new(Memory::default()),
            strategy,
        }
    }

    /// Place a new workload and store it (etcd first: nothing is dispatched before this
    /// write succeeds). The stored record is `Scheduled` on a node, or `Pending`.
    pub async fn submit(&self, ctx: &Ctx, mut w: Workload) -> Result<Workload, StoreError> {
        let _guard = self.lock.lock().await;
        let timer = ctx.metrics.placement_seconds.start_timer();
        let (nodes, workloads) = ctx.cache.snapshot();
        let mut allocs = allocations(&workloads);
        let placed = decide(&mut w, &nodes, &mut allocs, self.strategy);
        let key = keys::workload(&w.id);
        let Some(rev) = ctx.store.put_if_absent(&key, &w).await? else {
            // Ids are per request: an earlier attempt of this request (on this replica
            // or a former leader) stored it. That record is the answer.
            return match ctx.store.get::<Workload>(&key).await? {
                Some(stored) => {
                    tracing::info!(workload = %w.id, "workload already stored by an earlier attempt of the request");
                    Ok(stored.value)
                }
                None => Err(StoreError::Conflict { key }),
            };
        };
        timer.observe_duration();
        ctx.cache
            .apply(StoreEvent::WorkloadPut(Box::new(w.clone()), rev));
        if placed {
            ctx.metrics.workloads_scheduled.inc();
        }
        tracing::info!(workload = %w.id, name = %w.spec.name, node = ?w.node_id, status = %w.status, "workload stored");
        Ok(w)
    }

    /// Redeploy workload `id` (see [`moves::redeploy`]): a new generation, on its node
    /// if it still fits there, else moved. Stored before anything is dispatched.
    pub async fn redeploy(&self, ctx: &Ctx, id: &str) -> Result<Redeployed, StoreError> {
        let _guard = self.lock.lock().await;
        let (nodes, workloads) = ctx.cache.snapshot();
        let allocs = allocations(&workloads);
        let mut refused = None;
        let out = crate::control::update_workload(ctx, id, |cur| {
            match moves::redeploy(cur, &nodes, &allocs, self.strategy, Utc::now()) {
                Ok(next) => {
                    refused = None;
                    Some(next)
                }
                Err(e) => {
                    refused = Some(e);
                    None
                }
            }
        })
        .await?;
        if let Some(e) = refused {
            return Ok(Redeployed::Refused(e));
        }
        Ok(match out {
            Updated::Written(v) => {
                let w = v.value;
                tracing::info!(workload = %w.id, node = ?w.node_id, generation = w.generation, status = %w.status, "workload redeployed");
                if w.node_id.is_some() {
                    ctx.metrics.workloads_scheduled.inc();
                }
                Redeployed::Done(Box::new(w))
            }
            Updated::Unchanged(v) => Redeployed::Done(Box::new(v.value)),
            Updated::Missing => Redeployed::Missing,
        })
    }

    /// Try to place every `Pending` workload (oldest first), move workloads of lost
    /// nodes whose restart policy asks for it, and move workloads off draining nodes
    /// (their old copies retired after the move, see `dispatch`). Writes only records
    /// that change. Returns how many were placed.
    pub async fn reconcile(&self, ctx: &Ctx) -> Result<usize, StoreError> {
        let mut memory = self.lock.lock().await;
        let (nodes, mut workloads) = ctx.cache.snapshot();
        workloads.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        let status_of: HashMap<&str, NodeStatus> = nodes
            .iter()
            .map(|n| (n.node_id.as_str(), n.status))
            .collect();
        let on = |w: &Workload, status: NodeStatus| {
            w.node_id
                .as_deref()
                .and_then(|n| status_of.get(n))
                .is_some_and(|s| *s == status)
        };
        let mut allocs = allocations(&workloads);
        let mut placed = 0;
        let mut stuck = HashMap::new();
        for w in &workloads {
            if w.desired_state != DesiredState::Running {
                continue;
            }
            let pending = w.status == WorkloadStatus::Pending && w.node_id.is_none();
            let stranded = w.status == WorkloadStatus::Unknown
                && w.spec.restart_policy.reschedules_on_node_loss()
                && on(w, NodeStatus::Inactive);
            let leaving = on(w, NodeStatus::Draining) && moves::must_leave(w);
            if !pending && !stranded && !leaving {
                continue;
            }
            let mut next = w.clone();
            let old = w.node_id.clone().unwrap_or_default();
            if decide(&mut next, &nodes, &mut allocs, self.strategy) {
                if stranded {
                    next.status_reason = Some(format!("moved from lost node {old}"));
                } else if leaving {
                    next.status_reason = Some(format!("moved off draining node {old}"));
                    moves::retire_previous(w, &mut next);
                }
            } else if leaving {
                // It keeps running where it is until another node fits.
                stuck.insert(w.id.clone(), next.status_reason.unwrap_or_default());
                continue;
            } else if stranded || next.status_reason == w.status_reason {
                continue; // nothing new to record
            }
            next.updated_at = Utc::now();
            let was_placed = next.node_id.is_some();
            let expected = w.clone();
            let written = crate::control::update_workload(ctx, &w.id, |cur| {
                // Only if nobody changed it since the snapshot.
                (cur == &expected).then(|| next.clone())
            })
            .await?;
            if was_placed && matches!(written, Updated::Written(_)) {
                placed += 1;
                ctx.metrics.workloads_scheduled.inc();
                tracing::info!(workload = %w.id, node = ?next.node_id, reason = ?next.status_reason, "workload placed");
            }
        }
        note_drain_progress(&mut memory, stuck, &nodes, &ctx.cache.workloads());
        Ok(placed)
    }
}

/// Log, once each, why a workload cannot leave its draining node and when a node is
/// drained.
fn note_drain_progress(
    memory: &mut Memory,
    stuck: HashMap<String, String>,
    nodes: &[Node],
    workloads: &[Workload],
) {
    for (id, reason) in &stuck {
        if memory.stuck.get(id) != Some(reason) {
            tracing::warn!(workload = %id, %reason, "cannot leave its draining node yet; it keeps running there");
        }
    }
    memory.stuck = stuck;
    let mut drained = HashSet::new();
    for node in nodes.iter().filter(|n| moves::is_drained(n, workloads)) {
        if !memory.drained.contains(&node.node_id) {
            tracing::info!(node = %node.node_id, "node drained");
        }
        drained.insert(node.node_id.clone());
    }
    memory.drained = drained;
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::WorkloadRequest;

    fn workload(cpu: u64, node: Option<&str>, desired: DesiredState) -> Workload {
        let mut spec = WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        spec.resources.cpu = cpu;
        spec.resources.memory = cpu / 10;
        let mut w = Workload::new(uuid::Uuid::new_v4().to_string(), spec, Utc::now());
        w.node_id = node.map(String::from);
        w.desired_state = desired;
        w
    }

    #[test]
    fn allocations_count_only_workloads_that_want_to_run() {
        let ws = [
            workload(100, Some("a"), DesiredState::Running),
            workload(200, Some("a"), DesiredState::Running),
            workload(400, Some("a"), DesiredState::Stopped),
            workload(800, None, DesiredState::Running),
        ];
        let a = allocations(&ws);
        assert_eq!(a.get("a").map(|x| (x.cpu, x.memory)), Some((300, 30)));
        assert_eq!(a.len(), 1);
    }
}
