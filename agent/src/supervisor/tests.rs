use super::*;
use crate::report::ReportInbox;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{EngineStatus, EventAction};
use persys_proto::Resources;

fn supervisor(node: &str, rt: Arc<FakeRuntime>) -> (Supervisor<FakeRuntime>, ReportInbox) {
    let (handle, inbox) = ReportHandle::channel();
    (
        Supervisor::new(rt, node.into(), Ledger::open(None), handle),
        inbox,
    )
}

fn request(workload: &str, generation: u64) -> RunRequest {
    RunRequest {
        workload_id: workload.into(),
        image: "busybox:local".into(),
        name: workload.into(),
        display_name: "web".into(),
        command: None,
        env: Default::default(),
        ports: vec![],
        volumes: vec![],
        network: None,
        restart_policy: Default::default(),
        generation,
        resources: Resources {
            cpu: 500,
            memory: 128,
        },
        labels: Default::default(),
        ..Default::default()
    }
}

#[tokio::test]
async fn run_creates_a_running_container_labelled_for_this_node() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let state = sup.run(&request("w1", 1)).await.expect("runs");
    assert_eq!(state.status, WorkloadStatus::Running);
    assert_eq!((state.workload_id.as_str(), state.generation), ("w1", 1));
    let c = rt
        .inspect("w1-g1")
        .await
        .expect("named after workload and generation");
    assert_eq!(state.container_id.as_deref(), Some(c.id.as_str()));
    assert_eq!(c.labels[labels::NODE_ID], "n1");
    assert_eq!(c.labels[labels::GENERATION], "1");
}

#[tokio::test]
async fn running_the_same_generation_twice_creates_one_container() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let first = sup.run(&request("w1", 1)).await.expect("runs");
    let second = sup.run(&request("w1", 1)).await.expect("runs again");
    assert_eq!(rt.runs(), 1);
    assert_eq!(first.container_id, second.container_id);
    assert_eq!(second.status, WorkloadStatus::Running);
}

#[tokio::test]
async fn concurrent_runs_of_one_workload_create_one_container() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let sup = Arc::new(sup);
    let runs = (0..8).map(|_| {
        let sup = sup.clone();
        tokio::spawn(async move { sup.run(&request("w1", 1)).await })
    });
    for r in futures::future::join_all(runs).await {
        assert_eq!(
            r.expect("joins").expect("runs").status,
            WorkloadStatus::Running
        );
    }
    assert_eq!(rt.runs(), 1);
}

#[tokio::test]
async fn a_stopped_container_of_the_same_generation_is_started_again() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let first = sup.run(&request("w1", 1)).await.expect("runs");
    sup.stop("w1", Duration::from_secs(1)).await.expect("stops");
    let again = sup.run(&request("w1", 1)).await.expect("runs again");
    assert_eq!(again.status, WorkloadStatus::Running);
    assert_eq!(again.container_id, first.container_id);
    assert_eq!(
        rt.inspect("w1-g1").await.expect("exists").status,
        EngineStatus::Running
    );
}

#[tokio::test]
async fn a_newer_generation_removes_the_stale_container_and_creates_anew() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let old = sup.run(&request("w1", 1)).await.expect("runs");
    let new = sup.run(&request("w1", 2)).await.expect("runs newer");
    assert_ne!(old.container_id, new.container_id);
    assert_eq!(rt.containers().len(), 1);
    assert_eq!(
        rt.inspect("w1-g2").await.expect("exists").labels[labels::GENERATION],
        "2"
    );
}

#[tokio::test]
async fn an_older_generation_request_is_refused_when_a_newer_one_runs() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    sup.run(&request("w1", 3)).await.expect("runs");
    let err = sup
        .run(&request("w1", 2))
        .await
        .expect_err("stale request refused");
    assert!(matches!(err, SupervisorError::Conflict(_)), "{err}");
    assert_eq!(
        rt.inspect("w1-g3").await.expect("kept").labels[labels::GENERATION],
        "3"
    );
}

#[tokio::test]
async fn another_nodes_container_is_never_touched_and_gives_a_clear_error() {
    let rt = Arc::new(FakeRuntime::new());
    let (other, _i1) = supervisor("n2", rt.clone());
    let (sup, _i2) = supervisor("n1", rt.clone());
    other
        .run(&request("w1", 1))
        .await
        .expect("other node runs it");
    // The same generation's name is held by n2's container on the shared engine.
    let err = sup.run(&request("w1", 1)).await.expect_err("refused");
    assert!(err.to_string().contains("n2"), "{err}");
    assert_eq!(
        sup.remove("w1").await.expect("answers").status,
        WorkloadStatus::Missing
    );
    assert_eq!(
        sup.stop("w1", Duration::from_secs(1))
            .await
            .expect("answers")
            .status,
        WorkloadStatus::Missing
    );
    assert_eq!(
        sup.remove("w1-g1").await.expect("answers").status,
        WorkloadStatus::Missing,
        "a container name of another node is not ours either"
    );
    assert!(sup.list().await.expect("lists").is_empty());
    assert_eq!(
        rt.inspect("w1-g1").await.expect("still there").status,
        EngineStatus::Running
    );
}

#[tokio::test]
async fn a_moved_workload_runs_beside_its_old_copy_which_is_removed_by_name() {
    let rt = Arc::new(FakeRuntime::new());
    let (old_node, _i1) = supervisor("n1", rt.clone());
    let (new_node, _i2) = supervisor("n2", rt.clone());
    old_node
        .run(&request("w1", 1))
        .await
        .expect("old copy runs");
    // Make before break on one engine: the new generation starts while the old runs.
    let new = new_node
        .run(&request("w1", 2))
        .await
        .expect("new copy runs");
    assert_eq!(new.status, WorkloadStatus::Running);
    assert_eq!(rt.containers().len(), 2);
    assert_eq!(
        old_node.remove("w1-g1").await.expect("removes").status,
        WorkloadStatus::Stopped
    );
    let left = rt.containers();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].name, "w1-g2");
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_image_pull_back_off_with_the_engine_reason() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, mut inbox) = supervisor("n1", rt.clone());
    let mut req = request("w1", 1);
    req.image = "nope:missing".into();
    let state = sup.run(&req).await.expect("answers with a state");
    assert_eq!(state.status, WorkloadStatus::ImagePullBackOff);
    assert!(state
        .reason
        .clone()
        .unwrap_or_default()
        .contains("pull access denied"));
    assert_eq!(
        inbox.next_state().await.map(|s| s.status),
        Some(WorkloadStatus::Pulling)
    );
    assert_eq!(inbox.next_state().await, Some(state));
    assert!(rt.containers().is_empty());
}

#[tokio::test]
async fn an_absent_image_that_can_be_pulled_is_pulled_and_run() {
    let rt = Arc::new(FakeRuntime::new());
    rt.allow_pull("alpine:3");
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let mut req = request("w1", 1);
    req.image = "alpine:3".into();
    assert_eq!(
        sup.run(&req).await.expect("runs").status,
        WorkloadStatus::Running
    );
}

#[tokio::test]
async fn stop_answers_stopped_and_unknown_containers_are_missing() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    sup.run(&request("w1", 1)).await.expect("runs");
    let stopped = sup.stop("w1", Duration::from_secs(1)).await.expect("stops");
    assert_eq!(stopped.status, WorkloadStatus::Stopped);
    let missing = sup
        .stop("nope", Duration::from_secs(1))
        .await
        .expect("answers");
    assert_eq!(missing.status, WorkloadStatus::Missing);
}

#[tokio::test]
async fn remove_answers_stopped_without_container_and_is_idempotent() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    sup.run(&request("w1", 1)).await.expect("runs");
    let removed = sup.remove("w1").await.expect("removes");
    assert_eq!(
        (removed.status, removed.container_id),
        (WorkloadStatus::Stopped, None)
    );
    assert!(rt.containers().is_empty());
    assert_eq!(
        sup.remove("w1").await.expect("again").status,
        WorkloadStatus::Missing
    );
}

#[tokio::test]
async fn an_exit_with_code_three_is_reported_failed_with_exit_code_three() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let mut events = rt.events("n1");
    sup.run(&request("w1", 1)).await.expect("runs");
    rt.exit("w1-g1", 3).expect("exits");
    use futures::StreamExt;
    let start = events.next().await.expect("start event").expect("ok");
    assert_eq!(start.action, EventAction::Start);
    let die = events.next().await.expect("die event").expect("ok");
    let state = sup.state_for_event(&die).await.expect("a state");
    assert_eq!(
        (state.status, state.exit_code),
        (WorkloadStatus::Failed, Some(3))
    );
}

#[tokio::test]
async fn events_of_a_fenced_container_are_not_reported() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let mut events = rt.events("n1");
    sup.run(&request("w1", 1)).await.expect("runs");
    sup.run(&request("w1", 2)).await.expect("runs newer");
    use futures::StreamExt;
    let _start = events.next().await;
    let destroy = events.next().await.expect("destroy").expect("ok");
    assert_eq!(destroy.action, EventAction::Destroy);
    assert_eq!(sup.state_for_event(&destroy).await, None);
}

#[tokio::test]
async fn a_removal_nobody_asked_for_is_reported_missing() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let mut events = rt.events("n1");
    sup.run(&request("w1", 1)).await.expect("runs");
    rt.remove("w1-g1")
        .await
        .expect("removed behind the agent's back");
    use futures::StreamExt;
    let _start = events.next().await;
    let destroy = events.next().await.expect("destroy").expect("ok");
    let state = sup.state_for_event(&destroy).await.expect("a state");
    assert_eq!(state.status, WorkloadStatus::Missing);
}

#[tokio::test]
async fn usage_sums_the_limits_of_running_containers_only() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    sup.run(&request("w1", 1)).await.expect("runs");
    sup.run(&request("w2", 1)).await.expect("runs");
    sup.run(&request("w3", 1)).await.expect("runs");
    rt.exit("w3-g1", 0).expect("exits");
    let usage = sup.usage().await.expect("usage");
    assert_eq!(usage.running, 2);
    assert_eq!(usage.nano_cpus, 1_000_000_000);
    assert_eq!(usage.memory_bytes, 256 << 20);
}

#[tokio::test]
async fn invalid_requests_are_refused_before_touching_the_engine() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let mut req = request("../etc", 1);
    assert!(matches!(
        sup.run(&req).await,
        Err(SupervisorError::Invalid(_))
    ));
    req = request("w1", 1);
    req.ports = vec!["bad".into()];
    assert!(matches!(
        sup.run(&req).await,
        Err(SupervisorError::Invalid(_))
    ));
    assert_eq!(rt.runs(), 0);
}

#[tokio::test]
async fn an_engine_restart_is_reported_restarting_then_running_with_the_last_exit_code() {
    let rt = Arc::new(FakeRuntime::new());
    let (sup, _inbox) = supervisor("n1", rt.clone());
    let mut events = rt.events("n1");
    let mut req = request("w1", 1);
    req.restart_policy = persys_proto::RestartPolicy::OnFailure;
    sup.run(&req).await.expect("runs");
    use futures::StreamExt;
    let _start = events.next().await;
    for _ in 0..3 {
        rt.crash("w1-g1", 1).expect("crashes");
        let die = events.next().await.expect("die").expect("ok");
        let state = sup.state_for_event(&die).await.expect("a state");
        assert_eq!(
            (state.status, state.exit_code),
            (WorkloadStatus::Restarting, Some(1))
        );
        rt.start("w1-g1").await.expect("engine restarts it");
        let _ = events.next().await;
    }
    let crashed = {
        rt.crash("w1-g1", 1).expect("crashes");
        let die = events.next().await.expect("die").expect("ok");
        sup.state_for_event(&die).await.expect("a state")
    };
    assert_eq!(crashed.restart_count, 4);
    assert!(
        crashed
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("crash loop: restarted 4 times, last exit code 1")),
        "{crashed:?}"
    );
    rt.start("w1-g1").await.expect("engine restarts it");
    let start = events.next().await.expect("start").expect("ok");
    let running = sup.state_for_event(&start).await.expect("a state");
    assert_eq!(
        (running.status, running.exit_code, running.restart_count),
        (WorkloadStatus::Running, Some(1), 4)
    );
}
