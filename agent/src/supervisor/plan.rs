//! Pure decisions: what to do with an existing container when asked to run a workload
//! (idempotence and generation fencing), and which of our containers to keep at startup.

use crate::runtime::{EngineStatus, Listed, Observed};
use crate::state::{generation_of, workload_of};
use persys_proto::labels;
use std::collections::HashMap;

/// What `run` does with an existing container of the workload (or one holding its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPlan {
    /// Same generation and alive: answer its state, create nothing.
    Keep,
    /// Same generation, not running: start it again.
    Start,
    /// An older generation of ours: remove it (fencing) and create anew.
    Replace {
        /// Generation of the stale container.
        stale: u64,
    },
    /// A newer generation runs already: the request is stale.
    RefuseNewer {
        /// Generation of the running container.
        existing: u64,
    },
    /// The name belongs to a container of another node (or not made by persys).
    RefuseForeign {
        /// Its owner, as labelled.
        owner: Option<String>,
    },
}

/// Decide for `existing` (a container of the workload, or the holder of its name) on node `node_id`.
pub fn plan_run(existing: &Observed, node_id: &str, generation: u64) -> RunPlan {
    let owner = existing.labels.get(labels::NODE_ID);
    if owner.map(String::as_str) != Some(node_id) {
        return RunPlan::RefuseForeign {
            owner: owner.cloned(),
        };
    }
    let have = generation_of(&existing.labels);
    if have > generation {
        return RunPlan::RefuseNewer { existing: have };
    }
    if have < generation {
        return RunPlan::Replace { stale: have };
    }
    match existing.status {
        EngineStatus::Running | EngineStatus::Restarting | EngineStatus::Paused => RunPlan::Keep,
        EngineStatus::Created | EngineStatus::Exited => RunPlan::Start,
        // Half-removed containers cannot be started; make a fresh one.
        EngineStatus::Dead | EngineStatus::Removing => RunPlan::Replace { stale: have },
    }
}

/// Of our containers, the ids to remove at startup: for each workload only the highest
/// generation is kept (duplicates can only come from a crash half-way through a fence).
pub fn stale_duplicates(own: &[Listed]) -> Vec<String> {
    let mut best: HashMap<String, (u64, &Listed)> = HashMap::new();
    let mut stale = Vec::new();
    for c in own {
        let (workload, generation) = workload_of(&c.labels, &c.name);
        match best.get(&workload) {
            Some((g, kept)) if *g > generation || (*g == generation && kept.running) => {
                stale.push(c.id.clone());
            }
            Some((_, kept)) => {
                stale.push(kept.id.clone());
                best.insert(workload, (generation, c));
            }
            None => {
                best.insert(workload, (generation, c));
            }
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(generation: u64, status: EngineStatus) -> Observed {
        Observed {
            id: "c".into(),
            name: "w".into(),
            image: "busybox:local".into(),
            labels: HashMap::from([
                (labels::NODE_ID.to_string(), "n1".to_string()),
                (labels::WORKLOAD_ID.to_string(), "w".to_string()),
                (labels::GENERATION.to_string(), generation.to_string()),
            ]),
            status,
            exit_code: None,
            oom_killed: false,
            error: None,
            restart_count: 0,
            last_run: None,
            nano_cpus: 0,
            memory_bytes: 0,
        }
    }

    #[test]
    fn same_generation_running_is_kept_so_run_is_idempotent() {
        assert_eq!(
            plan_run(&ours(2, EngineStatus::Running), "n1", 2),
            RunPlan::Keep
        );
        assert_eq!(
            plan_run(&ours(2, EngineStatus::Restarting), "n1", 2),
            RunPlan::Keep
        );
    }

    #[test]
    fn same_generation_stopped_is_started_again() {
        assert_eq!(
            plan_run(&ours(2, EngineStatus::Exited), "n1", 2),
            RunPlan::Start
        );
        assert_eq!(
            plan_run(&ours(2, EngineStatus::Created), "n1", 2),
            RunPlan::Start
        );
    }

    #[test]
    fn older_generation_is_fenced_and_replaced() {
        assert_eq!(
            plan_run(&ours(1, EngineStatus::Running), "n1", 2),
            RunPlan::Replace { stale: 1 }
        );
    }

    #[test]
    fn newer_generation_refuses_a_stale_request() {
        assert_eq!(
            plan_run(&ours(3, EngineStatus::Running), "n1", 2),
            RunPlan::RefuseNewer { existing: 3 }
        );
    }

    #[test]
    fn a_container_of_another_node_is_never_touched() {
        assert_eq!(
            plan_run(&ours(1, EngineStatus::Running), "n2", 2),
            RunPlan::RefuseForeign {
                owner: Some("n1".into())
            }
        );
        let mut unmanaged = ours(1, EngineStatus::Running);
        unmanaged.labels.clear();
        assert_eq!(
            plan_run(&unmanaged, "n1", 1),
            RunPlan::RefuseForeign { owner: None }
        );
    }

    fn listed(id: &str, workload: &str, generation: u64, running: bool) -> Listed {
        Listed {
            id: id.into(),
            name: format!("{workload}-{id}"),
            labels: HashMap::from([
                (labels::WORKLOAD_ID.to_string(), workload.to_string()),
                (labels::GENERATION.to_string(), generation.to_string()),
            ]),
            running,
        }
    }

    #[test]
    fn startup_keeps_the_highest_generation_of_each_workload() {
        let own = vec![
            listed("a", "w1", 1, true),
            listed("b", "w1", 3, false),
            listed("c", "w1", 2, true),
            listed("d", "w2", 1, true),
        ];
        let mut stale = stale_duplicates(&own);
        stale.sort();
        assert_eq!(stale, vec!["a".to_string(), "c".to_string()]);
    }

    #[test]
    fn startup_keeps_a_single_container_per_workload_untouched() {
        let own = vec![listed("a", "w1", 1, true), listed("b", "w2", 5, false)];
        assert!(stale_duplicates(&own).is_empty());
    }
}
