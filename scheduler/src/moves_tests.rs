//! Pure tests of drain and redeploy decisions.

use super::*;
use crate::placer::allocations;
use persys_proto::WorkloadRequest;

fn node(id: &str, status: NodeStatus, cores: f64) -> Node {
    let mut n = crate::placement::testing::node(id, cores, 4096, &[]);
    n.status = status;
    n
}

fn workload(
    id: &str,
    node: Option<&str>,
    status: WorkloadStatus,
    policy: RestartPolicy,
) -> Workload {
    let mut spec = WorkloadRequest {
        image: "busybox:local".into(),
        ..Default::default()
    }
    .validate()
    .expect("valid");
    spec.restart_policy = policy;
    spec.resources.cpu = 500;
    let mut w = Workload::new(id.into(), spec, Utc::now());
    w.node_id = node.map(String::from);
    w.status = status;
    w.generation = u64::from(node.is_some());
    w
}

#[test]
fn a_drain_moves_what_wants_to_run_but_not_finished_jobs() {
    let running = workload("a", Some("n1"), WorkloadStatus::Running, RestartPolicy::No);
    assert!(must_leave(&running));
    let finished = workload("b", Some("n1"), WorkloadStatus::Exited, RestartPolicy::No);
    assert!(!must_leave(&finished), "a finished job is not run again");
    let crashed = workload(
        "c",
        Some("n1"),
        WorkloadStatus::Failed,
        RestartPolicy::Always,
    );
    assert!(must_leave(&crashed), "a service the engine restarts moves");
    let mut stopped = workload(
        "d",
        Some("n1"),
        WorkloadStatus::Stopped,
        RestartPolicy::Always,
    );
    stopped.desired_state = DesiredState::Stopped;
    assert!(!must_leave(&stopped));
}

#[test]
fn a_draining_node_is_drained_when_nothing_is_left_to_move_or_remove() {
    let n1 = node("n1", NodeStatus::Draining, 2.0);
    let mut w = workload(
        "a",
        Some("n1"),
        WorkloadStatus::Running,
        RestartPolicy::Always,
    );
    assert!(!is_drained(&n1, std::slice::from_ref(&w)));
    assert_eq!(
        DrainProgress::of("n1", std::slice::from_ref(&w)).describe(),
        "draining: 1 workload to move"
    );
    let prev = w.clone();
    w.node_id = Some("n2".into());
    w.generation = 2;
    retire_previous(&prev, &mut w);
    assert_eq!(
        w.retiring,
        vec![RetiringCopy {
            node_id: "n1".into(),
            generation: 1
        }]
    );
    assert_eq!(
        DrainProgress::of("n1", std::slice::from_ref(&w)).describe(),
        "draining: 1 old copy to remove"
    );
    w.retiring.clear();
    assert!(is_drained(&n1, std::slice::from_ref(&w)));
    assert!(
        !is_drained(&node("n1", NodeStatus::Cordoned, 2.0), &[]),
        "only a draining node"
    );
}

#[test]
fn a_redeploy_keeps_a_node_that_still_fits_with_a_new_generation() {
    let nodes = [
        node("n1", NodeStatus::Active, 1.0),
        node("n2", NodeStatus::Active, 4.0),
    ];
    let mut w = workload(
        "a",
        Some("n1"),
        WorkloadStatus::Running,
        RestartPolicy::Always,
    );
    w.restart_count = 3;
    w.container_id = Some("c1".into());
    // Its own 500m on the 1-core node must not count against it.
    let allocs = allocations(std::slice::from_ref(&w));
    let next = redeploy(&w, &nodes, &allocs, Strategy::Spread, Utc::now()).expect("redeployed");
    assert_eq!(
        (next.node_id.as_deref(), next.generation, next.status),
        (Some("n1"), 2, WorkloadStatus::Scheduled)
    );
    assert_eq!((next.restart_count, next.container_id), (0, None));
    assert!(
        next.retiring.is_empty(),
        "the agent fences the old generation itself"
    );
}

#[test]
fn a_redeploy_moves_off_a_node_that_no_longer_fits_and_retires_the_old_copy() {
    let nodes = [
        node("n1", NodeStatus::Cordoned, 2.0),
        node("n2", NodeStatus::Active, 2.0),
    ];
    let w = workload(
        "a",
        Some("n1"),
        WorkloadStatus::Running,
        RestartPolicy::Always,
    );
    let allocs = allocations(std::slice::from_ref(&w));
    let next = redeploy(&w, &nodes, &allocs, Strategy::Spread, Utc::now()).expect("redeployed");
    assert_eq!((next.node_id.as_deref(), next.generation), (Some("n2"), 2));
    assert_eq!(next.retiring.len(), 1);
    // Nothing else fits: it stays on its (alive) node.
    let alone = [node("n1", NodeStatus::Cordoned, 2.0)];
    let next = redeploy(&w, &alone, &allocs, Strategy::Spread, Utc::now()).expect("redeployed");
    assert_eq!((next.node_id.as_deref(), next.generation), (Some("n1"), 2));
    // Its node is lost and nothing else fits: refused.
    let lost = [node("n1", NodeStatus::Inactive, 2.0)];
    assert!(matches!(
        redeploy(&w, &lost, &allocs, Strategy::Spread, Utc::now()),
        Err(RedeployError::Lost { .. })
    ));
}

#[test]
fn a_redeploy_of_a_stopped_workload_waits_for_its_start_and_a_deleted_one_is_refused() {
    let nodes = [node("n1", NodeStatus::Active, 2.0)];
    let mut w = workload(
        "a",
        Some("n1"),
        WorkloadStatus::Stopped,
        RestartPolicy::Always,
    );
    w.desired_state = DesiredState::Stopped;
    let next = redeploy(&w, &nodes, &HashMap::new(), Strategy::Spread, Utc::now()).expect("ok");
    assert_eq!((next.status, next.generation), (WorkloadStatus::Stopped, 2));
    w.status = WorkloadStatus::Stopping;
    assert!(matches!(
        redeploy(&w, &nodes, &HashMap::new(), Strategy::Spread, Utc::now()),
        Err(RedeployError::Stopping(_))
    ));
    w.desired_state = DesiredState::Deleted;
    assert!(matches!(
        redeploy(&w, &nodes, &HashMap::new(), Strategy::Spread, Utc::now()),
        Err(RedeployError::Deleted(_))
    ));
}

#[test]
fn a_redeploy_of_a_pending_workload_places_it_when_something_fits() {
    let w = workload("a", None, WorkloadStatus::Pending, RestartPolicy::Always);
    let nodes = [node("n1", NodeStatus::Active, 2.0)];
    let next = redeploy(&w, &nodes, &HashMap::new(), Strategy::Spread, Utc::now()).expect("ok");
    assert_eq!(
        (next.node_id.as_deref(), next.status),
        (Some("n1"), WorkloadStatus::Scheduled)
    );
}
