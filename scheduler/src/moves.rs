//! Pure decisions about moving workloads between nodes: what a drain moves off a node,
//! when a draining node is drained, where a redeploy goes, and which old copies must be
//! removed after a move. No I/O; the placer writes the results.

use crate::placement::{self, Allocation, Candidate, Strategy};
use crate::placer::decide;
use chrono::{DateTime, Utc};
use persys_proto::{
    DesiredState, Node, NodeStatus, RestartPolicy, RetiringCopy, Workload, WorkloadStatus,
};
use std::borrow::Borrow;
use std::collections::HashMap;

/// Whether `w`, placed on a draining node, must move off it: it wants to run, and it is
/// not the finished run of a workload that is never restarted (a job that ended stays
/// where it ended; moving it would run it again).
pub fn must_leave(w: &Workload) -> bool {
    let finished = matches!(
        w.status,
        WorkloadStatus::Exited | WorkloadStatus::Failed | WorkloadStatus::Stopped
    );
    w.desired_state == DesiredState::Running
        && w.node_id.is_some()
        && w.status != WorkloadStatus::Pending
        && !(w.spec.restart_policy == RestartPolicy::No && finished)
}

/// What a drain of a node still has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainProgress {
    /// Workloads that must still leave the node.
    pub to_move: usize,
    /// Old copies of moved workloads still on the node.
    pub to_remove: usize,
}

impl DrainProgress {
    /// What is left on `node_id`, from all `workloads`.
    pub fn of<'a>(node_id: &str, workloads: impl IntoIterator<Item = &'a Workload>) -> Self {
        let mut p = Self::default();
        for w in workloads {
            if w.node_id.as_deref() == Some(node_id) && must_leave(w) {
                p.to_move += 1;
            }
            p.to_remove += w.retiring.iter().filter(|c| c.node_id == node_id).count();
        }
        p
    }

    /// Nothing left.
    pub fn is_done(self) -> bool {
        self.to_move == 0 && self.to_remove == 0
    }

    /// `drained`, or what is left, e.g. `draining: 2 workloads to move, 1 old copy to
    /// remove`.
    pub fn describe(self) -> String {
        if self.is_done() {
            return "drained".into();
        }
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if self.to_move > 0 {
            parts.push(plural(
                self.to_move,
                "workload to move",
                "workloads to move",
            ));
        }
        if self.to_remove > 0 {
            parts.push(plural(
                self.to_remove,
                "old copy to remove",
                "old copies to remove",
            ));
        }
        format!("draining: {}", parts.join(", "))
    }
}

/// Whether draining `node` is complete: no workload must still leave it and no old copy
/// there waits to be removed. Only a `Draining` node can be drained.
pub fn is_drained<'a>(node: &Node, workloads: impl IntoIterator<Item = &'a Workload>) -> bool {
    node.status == NodeStatus::Draining && DrainProgress::of(&node.node_id, workloads).is_done()
}

/// Remember `prev`'s copy for removal when `next` (its new placement) is on another
/// node. On the same node nothing is recorded: the agent removes an older generation
/// itself when it runs the new one.
pub fn retire_previous(prev: &Workload, next: &mut Workload) {
    let Some(old) = prev.node_id.as_deref() else {
        return;
    };
    if next.node_id.as_deref() == Some(old) || prev.status == WorkloadStatus::Pending {
        return;
    }
    let copy = RetiringCopy {
        node_id: old.to_string(),
        generation: prev.generation,
    };
    if !next.retiring.contains(&copy) {
        next.retiring.push(copy);
    }
}

/// A fresh generation of `w` on `node_id`, to be run there (`Scheduled`).
fn next_generation(w: &Workload, node_id: &str, reason: String, now: DateTime<Utc>) -> Workload {
    let mut next = w.clone();
    next.node_id = Some(node_id.to_string());
    next.generation += 1;
    next.status = WorkloadStatus::Scheduled;
    next.status_reason = Some(reason);
    next.exit_code = None;
    next.container_id = None;
    next.restart_count = 0;
    next.updated_at = now;
    next
}

/// Why a redeploy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeployError {
    /// The workload is being deleted.
    #[error("workload {0} is being deleted")]
    Deleted(String),
    /// A stop is still in flight.
    #[error("workload {0} is stopping; redeploy it once it is stopped")]
    Stopping(String),
    /// Its node is lost and no other node fits.
    #[error("workload {id}: its node {node} is lost and no other node fits ({reason}); it moves when one does")]
    Lost {
        /// Workload id.
        id: String,
        /// The lost node.
        node: String,
        /// Why nothing else fits.
        reason: String,
    },
}

/// The record after a redeploy of `w`: a new generation, replacing the container.
/// It stays on its node if that node still accepts it (Active, selector and resources
/// against `allocs`, the allocations of every workload, `w` included); otherwise it is placed elsewhere (the old copy
/// retired after the move), or kept on its node if it is alive and nothing else fits.
/// A stopped workload gets its new generation at the next start; an unplaced one is
/// placed if something fits now.
pub fn redeploy(
    w: &Workload,
    nodes: &[impl Borrow<Node>],
    allocs: &HashMap<String, Allocation>,
    strategy: Strategy,
    now: DateTime<Utc>,
) -> Result<Workload, RedeployError> {
    match (w.desired_state, w.status) {
        (DesiredState::Deleted, _) => return Err(RedeployError::Deleted(w.id.clone())),
        (DesiredState::Stopped, WorkloadStatus::Stopping) => {
            return Err(RedeployError::Stopping(w.id.clone()))
        }
        (DesiredState::Stopped, _) => {
            let mut next = w.clone();
            next.generation += 1;
            next.status_reason =
                Some("redeployed: the new generation runs at the next start".into());
            next.updated_at = now;
            return Ok(next);
        }
        (DesiredState::Running, _) => {}
    }
    let mut allocs = allocs.clone();
    // Its own request is counted on its node; a redeploy competes only with the others.
    if let Some(a) = w.node_id.as_ref().and_then(|n| allocs.get_mut(n)) {
        a.remove(&w.spec.resources);
    }
    let Some(current) = w.node_id.as_deref() else {
        let mut next = w.clone();
        decide(&mut next, nodes, &mut allocs, strategy);
        next.updated_at = now;
        return Ok(next);
    };
    let here = nodes
        .iter()
        .map(Borrow::borrow)
        .find(|n: &&Node| n.node_id == current);
    let fits_here = here.is_some_and(|node| {
        let only = [Candidate {
            node,
            allocated: allocs.get(current).copied().unwrap_or_default(),
        }];
        placement::place(&w.spec, &only, strategy).is_ok()
    });
    if fits_here {
        return Ok(next_generation(w, current, "redeployed".into(), now));
    }
    let candidates: Vec<Candidate<'_>> = nodes
        .iter()
        .map(Borrow::borrow)
        .filter(|n: &&Node| n.node_id != current)
        .map(|node| Candidate {
            node,
            allocated: allocs.get(&node.node_id).copied().unwrap_or_default(),
        })
        .collect();
    match placement::place(&w.spec, &candidates, strategy) {
        Ok(p) => {
            let reason = format!("redeployed; moved from node {current}, which no longer fits");
            let mut next = next_generation(w, &p.node_id, reason, now);
            retire_previous(w, &mut next);
            Ok(next)
        }
        Err(e) if here.is_some_and(|n| n.status != NodeStatus::Inactive) => {
            let reason = format!("redeployed on its node; nothing else fits: {e}");
            Ok(next_generation(w, current, reason, now))
        }
        Err(e) => Err(RedeployError::Lost {
            id: w.id.clone(),
            node: current.to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
#[path = "moves_tests.rs"]
mod tests;
