use super::*;
use persys_proto::{Command, RunRequest};

fn spec(node: &str, workload: &str, image: &str) -> ContainerSpec {
    let req = RunRequest {
        workload_id: workload.into(),
        image: image.into(),
        name: workload.into(),
        display_name: workload.into(),
        command: Some(Command::Exec(vec!["sleep".into(), "3600".into()])),
        generation: 1,
        ..Default::default()
    };
    ContainerSpec::from_request(&req, node).expect("valid spec")
}

fn with_restart(mut s: ContainerSpec, policy: RestartPolicy) -> ContainerSpec {
    s.restart_policy = policy;
    s
}

async fn read_all(stream: LogStream) -> String {
    let chunks: Vec<Bytes> = stream
        .map(|c| c.expect("log chunk"))
        .collect::<Vec<_>>()
        .await;
    chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[tokio::test]
async fn a_started_container_logs_its_name_image_and_command() {
    let rt = FakeRuntime::with_options(FakeOptions::default());
    let id = rt
        .run(&spec("n1", "w1", "busybox:local"))
        .await
        .expect("runs");
    let text = read_all(rt.logs(&id, LogOptions::default())).await;
    assert!(text.contains("command: sleep 3600"), "{text}");
    assert!(
        text.contains("fake container w1-g1 started (image busybox:local)"),
        "{text}"
    );
    let stamped = read_all(rt.logs(
        &id,
        LogOptions {
            tail: Some(1),
            timestamps: true,
            ..Default::default()
        },
    ))
    .await;
    assert_eq!(stamped.lines().count(), 1, "{stamped}");
    assert!(
        stamped.contains("Z fake container w1-g1 started"),
        "{stamped}"
    );
}

#[tokio::test(start_paused = true)]
async fn start_latency_keeps_the_container_created_until_it_has_passed() {
    let rt = Arc::new(FakeRuntime::with_options(FakeOptions {
        start_latency: Duration::from_millis(500),
        ..FakeOptions::default()
    }));
    let started = Instant::now();
    let run = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run(&spec("n1", "w1", "busybox:local")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let starting = rt.inspect("w1-g1").await.expect("created at once");
    assert_eq!(starting.status, EngineStatus::Created);
    let id = run.await.expect("joins").expect("runs");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        rt.inspect(&id).await.expect("exists").status,
        EngineStatus::Running
    );
}

#[tokio::test(start_paused = true)]
async fn thousands_of_slow_starts_overlap_instead_of_queueing() {
    let rt = Arc::new(FakeRuntime::with_options(FakeOptions {
        start_latency: Duration::from_secs(1),
        ..FakeOptions::default()
    }));
    let started = Instant::now();
    let runs = (0..5000).map(|i| {
        let rt = rt.clone();
        async move { rt.run(&spec("n1", &format!("w{i}"), "busybox:local")).await }
    });
    let ids = futures::future::join_all(runs).await;
    assert!(ids.iter().all(Result::is_ok));
    // One latency for all of them, not 5000.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rt.list("n1").await.expect("lists").len(), 5000);
    let one = rt.list_workload("n1", "w4999").await.expect("lists");
    assert_eq!(one.len(), 1);
    assert!(one[0].running);
}

#[tokio::test(start_paused = true)]
async fn with_crash_rate_one_every_container_exits_non_zero_soon_after_starting() {
    let rt = FakeRuntime::with_options(FakeOptions {
        crash_rate: 1.0,
        crash_after: (Duration::from_millis(100), Duration::from_millis(300)),
        ..FakeOptions::default()
    });
    let mut events = rt.events("n1");
    let id = rt
        .run(&spec("n1", "w1", "busybox:local"))
        .await
        .expect("runs");
    let start = events.next().await.expect("event").expect("ok");
    assert_eq!(start.action, EventAction::Start);
    let die = tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .expect("crashes within crash_after")
        .expect("event")
        .expect("ok");
    assert_eq!(die.action, EventAction::Die);
    assert_eq!(die.exit_code, Some(CRASH_EXIT_CODE));
    let o = rt.inspect(&id).await.expect("still there");
    assert_eq!(o.status, EngineStatus::Exited);
    assert!(o
        .last_run
        .is_some_and(|d| d >= Duration::from_millis(100) && d <= Duration::from_millis(300)));
    let text = read_all(rt.logs(&id, LogOptions::default())).await;
    assert!(text.contains("crashed with exit code 1"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_crashing_container_with_a_restart_policy_is_restarted_by_the_engine() {
    let rt = FakeRuntime::with_options(FakeOptions {
        crash_rate: 1.0,
        crash_after: (Duration::from_millis(50), Duration::from_millis(50)),
        ..FakeOptions::default()
    });
    let mut events = rt.events("n1");
    let id = rt
        .run(&with_restart(
            spec("n1", "w1", "busybox:local"),
            RestartPolicy::Always,
        ))
        .await
        .expect("runs");
    let mut actions = Vec::new();
    while actions.len() < 5 {
        let ev = events.next().await.expect("event").expect("ok");
        actions.push(ev.action);
    }
    use EventAction::{Die, Start};
    assert_eq!(actions, [Start, Die, Start, Die, Start]);
    let o = rt.inspect(&id).await.expect("exists");
    assert_eq!(o.restart_count, 2);
    // A stop ends the loop: no more restarts.
    rt.stop(&id, Duration::from_secs(1)).await.expect("stops");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let o = rt.inspect(&id).await.expect("exists");
    assert_eq!(
        (o.status, o.exit_code),
        (EngineStatus::Exited, Some(STOP_EXIT_CODE))
    );
    assert_eq!(o.restart_count, 2);
}

#[tokio::test]
async fn crash_rate_zero_never_crashes() {
    let rt = FakeRuntime::with_options(FakeOptions {
        crash_after: (Duration::ZERO, Duration::ZERO),
        ..FakeOptions::default()
    });
    for i in 0..100 {
        rt.run(&spec("n1", &format!("w{i}"), "busybox:local"))
            .await
            .expect("runs");
    }
    tokio::task::yield_now().await;
    let listed = rt.list("n1").await.expect("lists");
    assert!(listed.iter().all(|c| c.running));
}

#[tokio::test]
async fn the_simulator_pulls_any_image_except_the_unpullable_ones() {
    let rt = FakeRuntime::with_options(FakeOptions::default());
    let s = spec("n1", "w1", "nginx:1.27");
    assert_eq!(
        rt.run(&s).await,
        Err(RuntimeError::ImageNotFound("nginx:1.27".into()))
    );
    rt.pull("nginx:1.27").await.expect("pulls");
    rt.run(&s).await.expect("runs once pulled");
    for image in ["persys-test/does-not-exist:never", "acme/missing:1"] {
        let e = rt.pull(image).await.expect_err("never pulls");
        assert!(matches!(e, RuntimeError::Pull { .. }), "{e}");
    }
}

#[tokio::test]
async fn the_unit_test_engine_pulls_only_allowed_images() {
    let rt = FakeRuntime::new();
    assert!(rt.pull("nginx:1.27").await.is_err());
    rt.allow_pull("nginx:1.27");
    rt.pull("nginx:1.27").await.expect("allowed");
}

#[tokio::test]
async fn pull_failure_rate_fails_that_share_of_pulls() {
    let always = FakeRuntime::with_options(FakeOptions {
        pull_failure_rate: 1.0,
        ..FakeOptions::default()
    });
    assert!(always.pull("nginx:1.27").await.is_err());
    let half = FakeRuntime::with_options(FakeOptions {
        pull_failure_rate: 0.5,
        seed: 7,
        ..FakeOptions::default()
    });
    let mut failed = 0;
    for i in 0..1000 {
        if half.pull(&format!("img{i}:1")).await.is_err() {
            failed += 1;
        }
    }
    assert!((400..600).contains(&failed), "{failed} of 1000 failed");
}

#[tokio::test]
async fn lists_follow_the_node_and_workload_labels_and_removal_frees_the_name() {
    let rt = FakeRuntime::with_options(FakeOptions::default());
    let a = rt
        .run(&spec("n1", "w1", "busybox:local"))
        .await
        .expect("runs");
    rt.run(&spec("n1", "w2", "busybox:local"))
        .await
        .expect("runs");
    rt.run(&spec("n2", "w3", "busybox:local"))
        .await
        .expect("runs");
    assert_eq!(rt.list("n1").await.expect("lists").len(), 2);
    assert_eq!(rt.list("n2").await.expect("lists").len(), 1);
    assert!(rt
        .list_workload("n2", "w1")
        .await
        .expect("lists")
        .is_empty());
    assert_eq!(
        rt.run(&spec("n1", "w1", "busybox:local")).await,
        Err(RuntimeError::NameConflict("w1-g1".into()))
    );
    rt.remove("w1-g1").await.expect("removes by name");
    assert_eq!(rt.inspect(&a).await, Err(RuntimeError::NotFound(a.clone())));
    assert!(rt
        .list_workload("n1", "w1")
        .await
        .expect("lists")
        .is_empty());
    let again = rt
        .run(&spec("n1", "w1", "busybox:local"))
        .await
        .expect("the name is free again");
    assert_ne!(again, a, "ids are never reused");
}

#[tokio::test]
async fn following_logs_streams_new_lines_until_the_container_stops() {
    let rt = FakeRuntime::with_options(FakeOptions::default());
    let id = rt
        .run(&spec("n1", "w1", "busybox:local"))
        .await
        .expect("runs");
    let follow = rt.logs(
        &id,
        LogOptions {
            follow: true,
            ..Default::default()
        },
    );
    rt.write_log(&id, "later line");
    rt.stop(&id, Duration::from_secs(1)).await.expect("stops");
    let text = tokio::time::timeout(Duration::from_secs(2), read_all(follow))
        .await
        .expect("the stream ends with the container");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"later line"), "{text}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("stopped on request")),
        "{text}"
    );
}

#[tokio::test]
async fn the_log_keeps_only_the_newest_lines() {
    let rt = FakeRuntime::with_options(FakeOptions {
        log_lines: 3,
        ..FakeOptions::default()
    });
    let id = rt
        .run(&spec("n1", "w1", "busybox:local"))
        .await
        .expect("runs");
    for i in 0..10 {
        rt.write_log(&id, &format!("line {i}"));
    }
    let text = read_all(rt.logs(&id, LogOptions::default())).await;
    assert_eq!(text, "line 7\nline 8\nline 9\n");
}
