//! The one placer: decisions are serialised under a single lock, so concurrent
//! submissions never double-book a node. New workloads are placed and stored in
//! batches (group commit, like Nomad's plan applier): whoever takes the lock places
//! every submission waiting at that moment against one allocation view and writes them
//! in one etcd transaction; each request is answered once its own record is durable.
//! Also re-places `Pending` workloads when capacity may have appeared, workloads of
//! lost nodes (per restart policy) and workloads of draining nodes, and redeploys.

use crate::context::Ctx;
use crate::moves::{self, RedeployError};
use crate::placement::{self, Allocation, Candidate, Strategy};
use crate::records::NewWorkload;
use crate::store::{StoreError, Updated, MAX_BATCH};
use chrono::Utc;
use persys_proto::{DesiredState, Node, NodeStatus, Workload, WorkloadStatus};
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex};
use tokio_util::task::TaskTracker;

pub use crate::cache::index::allocations;

/// What the placer remembers between passes, only so that it logs each fact once.
#[derive(Debug, Default)]
struct Memory {
    /// Workload id → why it cannot leave its draining node (last logged).
    stuck: HashMap<String, String>,
    /// Draining nodes already logged as drained.
    drained: HashSet<String>,
}

/// A new workload waiting to be placed and stored, and who waits for the answer.
struct Submission {
    workload: Workload,
    reply: oneshot::Sender<Result<Workload, StoreError>>,
}

/// Serialises placement decisions.
pub struct Placer {
    lock: Arc<Mutex<Memory>>,
    /// Submissions not yet taken into a batch, oldest first.
    queue: std::sync::Mutex<VecDeque<Submission>>,
    /// Batches being written. A batch runs on its own task so that a client that goes
    /// away mid-write cannot abandon the other members of its batch.
    batches: TaskTracker,
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

/// Decide where `w` goes given `nodes` and their `allocs`: on success the record is
/// placed (node, `Scheduled`, generation bumped) and the allocation counted; otherwise
/// it is `Pending` with the reason. Returns whether it was placed.
pub fn decide(
    w: &mut Workload,
    nodes: &[impl Borrow<Node>],
    allocs: &mut HashMap<String, Allocation>,
    strategy: Strategy,
) -> bool {
    let placed = Candidates::new(nodes, allocs).decide(w, strategy);
    if placed {
        if let Some(node) = &w.node_id {
            allocs
                .entry(node.clone())
                .or_default()
                .add(&w.spec.resources);
        }
    }
    placed
}

/// Every node of one allocation view as a placement candidate, kept current as
/// decisions add to it: a batch of decisions builds it once, instead of one hash
/// lookup per node per decision (at 1,000 nodes, a sixth of the scheduler's CPU under
/// load).
pub struct Candidates<'a> {
    list: Vec<Candidate<'a>>,
}

impl<'a> Candidates<'a> {
    /// `nodes` with the allocations `allocs` holds for them.
    pub fn new(nodes: &'a [impl Borrow<Node>], allocs: &HashMap<String, Allocation>) -> Self {
        let list = nodes
            .iter()
            .map(|node| {
                let node: &Node = node.borrow();
                Candidate {
                    node,
                    allocated: allocs.get(&node.node_id).copied().unwrap_or_default(),
                }
            })
            .collect();
        Self { list }
    }

    /// [`decide`] against these candidates, counting a placement on its node.
    pub fn decide(&mut self, w: &mut Workload, strategy: Strategy) -> bool {
        self.decide_spread(w, strategy, None)
    }

    /// [`Candidates::decide`], and when `peers` (node id → replicas of the workload's
    /// service already there) is given, spread: the nodes with the fewest replicas are
    /// tried first, so that no two replicas share a node while another node fits.
    pub fn decide_spread(
        &mut self,
        w: &mut Workload,
        strategy: Strategy,
        peers: Option<&HashMap<String, u32>>,
    ) -> bool {
        let result = match peers {
            Some(peers) if !peers.is_empty() => self.place_spread(&w.spec, strategy, peers),
            _ => placement::place(&w.spec, &self.list, strategy),
        };
        match result {
            Ok(p) => {
                if let Some(c) = self.list.get_mut(p.index) {
                    c.allocated.add(&w.spec.resources);
                }
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

    /// Place among the nodes with the fewest `peers` that fit, tier by tier; the error
    /// of the whole list when none fits.
    fn place_spread(
        &self,
        spec: &persys_proto::WorkloadSpec,
        strategy: Strategy,
        peers: &HashMap<String, u32>,
    ) -> Result<placement::Placement, placement::PlacementError> {
        let count = |c: &Candidate<'_>| peers.get(&c.node.node_id).copied().unwrap_or(0);
        let mut tiers: Vec<u32> = self.list.iter().map(count).collect();
        tiers.sort_unstable();
        tiers.dedup();
        for tier in tiers {
            let (indexes, subset): (Vec<usize>, Vec<Candidate<'_>>) = self
                .list
                .iter()
                .enumerate()
                .filter(|(_, c)| count(c) == tier)
                .map(|(i, c)| (i, *c))
                .unzip();
            if let Ok(mut p) = placement::place(spec, &subset, strategy) {
                p.index = indexes[p.index];
                return Ok(p);
            }
        }
        placement::place(spec, &self.list, strategy)
    }
}

/// Node id → replicas of `service` placed there (live ones).
fn replicas_per_node(ctx: &Ctx, service: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for w in crate::services::replicas_of(ctx, service) {
        if let Some(node) = &w.node_id {
            *out.entry(node.clone()).or_default() += 1;
        }
    }
    out
}

/// Replicas of each service per node, counted from the cache once per service and
/// placement pass, and on as the pass places them.
#[derive(Default)]
struct Peers(HashMap<String, HashMap<String, u32>>);

impl Peers {
    /// Place `w` among `candidates`; a replica of a service spreads (the nodes with
    /// the fewest of its peers first).
    fn place(
        &mut self,
        ctx: &Ctx,
        candidates: &mut Candidates<'_>,
        w: &mut Workload,
        strategy: Strategy,
    ) -> bool {
        let Some(service) = w.service_id.clone() else {
            return candidates.decide(w, strategy);
        };
        let peers = self
            .0
            .entry(service)
            .or_insert_with_key(|service| replicas_per_node(ctx, service));
        // A moving replica still counts on the node it leaves; that node (lost or
        // draining) is no candidate, so the count does not matter there.
        let ok = candidates.decide_spread(w, strategy, Some(peers));
        if let (true, Some(node)) = (ok, &w.node_id) {
            *peers.entry(node.clone()).or_default() += 1;
        }
        ok
    }
}

/// Place `batch` against one allocation view, store it in one transaction, answer
/// each member. Runs holding the placer's lock.
async fn place_and_store(ctx: &Ctx, strategy: Strategy, batch: Vec<Submission>) {
    let timer = std::time::Instant::now();
    let view = ctx.cache().placement_view();
    let mut candidates = Candidates::new(&view.nodes, &view.allocs);
    let mut placed = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut records = Vec::with_capacity(batch.len());
    let mut peers = Peers::default();
    for s in batch {
        let mut w = s.workload;
        let was_placed = peers.place(ctx, &mut candidates, &mut w, strategy);
        placed.push(was_placed);
        records.push(w);
        replies.push(s.reply);
    }
    match ctx.records().create_workloads(&records).await {
        Ok(results) => {
            let took = timer.elapsed().as_secs_f64();
            ctx.metrics()
                .placement_batch_size
                .observe(records.len() as f64);
            for ((result, reply), placed) in results.into_iter().zip(replies).zip(placed) {
                let answer = match result {
                    NewWorkload::Stored(stored) => {
                        ctx.restore_guard().clear("a new workload was stored");
                        ctx.metrics().placement_seconds.observe(took);
                        let w = stored.value;
                        if placed {
                            ctx.metrics().workloads_scheduled.inc();
                            observe_schedule_latency(ctx, &w);
                        }
                        tracing::debug!(workload = %w.id, name = %w.spec.name, node = ?w.node_id, status = %w.status, "workload stored");
                        w
                    }
                    // Ids are per request: an earlier attempt of this request (on this
                    // replica or a former leader) stored it. That record is the answer.
                    NewWorkload::Existing(existing) => {
                        tracing::info!(workload = %existing.value.id, "workload already stored by an earlier attempt of the request");
                        existing.value
                    }
                };
                let _ = reply.send(Ok(answer));
            }
        }
        Err(e) => {
            tracing::debug!(records = records.len(), error = %e, "a batch of new workloads was not stored");
            for reply in replies {
                let _ = reply.send(Err(e.replicate()));
            }
        }
    }
}

impl Placer {
    /// A placer using `strategy`.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            lock: Arc::new(Mutex::new(Memory::default())),
            queue: std::sync::Mutex::new(VecDeque::new()),
            batches: TaskTracker::new(),
            strategy,
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Submission>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Place a new workload and store it (etcd first: nothing is dispatched before this
    /// write succeeds). The stored record is `Scheduled` on a node, or `Pending`.
    /// Submissions arriving together share one decision pass and one transaction.
    pub async fn submit(&self, ctx: &Arc<Ctx>, w: Workload) -> Result<Workload, StoreError> {
        let (reply, mut answer) = oneshot::channel();
        self.queue().push_back(Submission { workload: w, reply });
        let strategy = self.strategy;
        crate::group_commit::wait_turn(
            &self.lock,
            &self.batches,
            &mut answer,
            || {
                let mut queue = self.queue();
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect::<Vec<Submission>>()
            },
            |batch| {
                let ctx = ctx.clone();
                async move { place_and_store(&ctx, strategy, batch).await }
            },
            batch_lost,
        )
        .await
    }

    /// Redeploy workload `id` (see [`moves::redeploy`]): a new generation, on its node
    /// if it still fits there, else moved. Stored before anything is dispatched.
    pub async fn redeploy(&self, ctx: &Ctx, id: &str) -> Result<Redeployed, StoreError> {
        let _guard = self.lock.lock().await;
        let view = ctx.cache().placement_view();
        let (nodes, allocs) = (view.nodes, view.allocs);
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
                    ctx.metrics().workloads_scheduled.inc();
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
        let view = ctx.cache().placement_view();
        let nodes = view.nodes;
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
        // Only what may need placing: the Pending queue and the workloads of lost and
        // draining nodes, from the indexes (never a scan of every workload).
        let mut workloads = ctx.cache().pending();
        for node in nodes
            .iter()
            .filter(|n| matches!(n.status, NodeStatus::Inactive | NodeStatus::Draining))
        {
            workloads.extend(
                ctx.cache()
                    .workloads_on(&node.node_id)
                    .into_iter()
                    .filter(|w| w.node_id.as_deref() == Some(node.node_id.as_str())),
            );
        }
        workloads.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        workloads.dedup_by(|a, b| a.id == b.id);
        let mut candidates = Candidates::new(&nodes, &view.allocs);
        let mut peers = Peers::default();
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
            let mut next = (**w).clone();
            let old = w.node_id.clone().unwrap_or_default();
            if peers.place(ctx, &mut candidates, &mut next, self.strategy) {
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
            let expected = Arc::clone(w);
            let written = crate::control::update_workload(ctx, &w.id, |cur| {
                // Only if nobody changed it since the snapshot.
                (cur == &*expected).then(|| next.clone())
            })
            .await?;
            if was_placed && matches!(written, Updated::Written(_)) {
                placed += 1;
                ctx.metrics().workloads_scheduled.inc();
                if pending {
                    observe_schedule_latency(ctx, &next);
                }
                tracing::info!(workload = %w.id, node = ?next.node_id, reason = ?next.status_reason, "workload placed");
            }
        }
        note_drain_progress(ctx, &mut memory, stuck, &nodes);
        Ok(placed)
    }
}

/// A workload's first placement: how long since it was created.
fn observe_schedule_latency(ctx: &Ctx, w: &Workload) {
    let waited = (Utc::now() - w.created_at).num_microseconds().unwrap_or(0);
    ctx.metrics()
        .schedule_latency
        .observe(waited.max(0) as f64 / 1e6);
}

/// Log, once each, why a workload cannot leave its draining node and when a node is
/// drained.
fn note_drain_progress(
    ctx: &Ctx,
    memory: &mut Memory,
    stuck: HashMap<String, String>,
    nodes: &[Arc<Node>],
) {
    for (id, reason) in &stuck {
        if memory.stuck.get(id) != Some(reason) {
            tracing::warn!(workload = %id, %reason, "cannot leave its draining node yet; it keeps running there");
        }
    }
    memory.stuck = stuck;
    let mut drained = HashSet::new();
    for node in nodes.iter().filter(|n| {
        n.status == NodeStatus::Draining
            && moves::is_drained(n, ctx.cache().workloads_on(&n.node_id).iter().map(|w| &**w))
    }) {
        if !memory.drained.contains(&node.node_id) {
            tracing::info!(node = %node.node_id, "node drained");
        }
        drained.insert(node.node_id.clone());
    }
    memory.drained = drained;
}

fn batch_lost() -> StoreError {
    StoreError::Unavailable("the placement batch stopped before it was stored".into())
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

    #[test]
    fn replicas_spread_over_nodes_before_any_node_gets_a_second() {
        use crate::placement::testing::node;
        // Node a has by far the most room, and holds one replica already.
        let nodes = [
            node("a", 16.0, 16384, &[]),
            node("b", 2.0, 2048, &[]),
            node("c", 2.0, 2048, &[]),
        ];
        let mut candidates = Candidates::new(&nodes, &HashMap::new());
        let mut peers = HashMap::from([("a".to_string(), 1)]);
        let mut chosen = Vec::new();
        for _ in 0..2 {
            let mut w = workload(100, None, DesiredState::Running);
            assert!(candidates.decide_spread(&mut w, Strategy::Spread, Some(&peers)));
            let n = w.node_id.clone().expect("placed");
            *peers.entry(n.clone()).or_default() += 1;
            chosen.push(n);
        }
        chosen.sort();
        assert_eq!(chosen, ["b", "c"]);
        // Every node has one: the roomiest takes the next.
        let mut w = workload(100, None, DesiredState::Running);
        assert!(candidates.decide_spread(&mut w, Strategy::Spread, Some(&peers)));
        assert_eq!(w.node_id.as_deref(), Some("a"));
        // A node that does not fit is skipped even with the fewest replicas.
        peers.insert("b".into(), 0);
        let mut big = workload(4000, None, DesiredState::Running);
        assert!(candidates.decide_spread(&mut big, Strategy::Spread, Some(&peers)));
        assert_eq!(big.node_id.as_deref(), Some("a"));
    }
}
