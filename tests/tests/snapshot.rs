//! Backups on real etcd, Docker and TLS: `persys snapshot save`, etcd lost and replaced
//! by an empty one, the scheduler restarted on it (keeping the nodes' containers while
//! it awaits the restore), `persys snapshot restore`: the same workloads and services
//! converge on the same containers, none runs twice.

use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn cluster() -> ClusterOptions {
    ClusterOptions {
        agents: vec![AgentOptions::default(); 2],
        node_timeout_ms: Some(3000),
        // The backstop runs every second: it would remove containers without a record
        // at once if the restore guard did not keep them.
        scheduler_args: vec!["--monitor-interval-ms".into(), "1000".into()],
        ..Default::default()
    }
}

/// Workload id → its running container ids, as the engine says.
fn containers_of(ids: &[String]) -> BTreeMap<String, Vec<String>> {
    ids.iter()
        .map(|id| (id.clone(), docker::running_workload_containers(id)))
        .collect()
}

fn ids_of(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["id"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_snapshot_restored_into_an_emptied_etcd_adopts_every_container_and_runs_none_twice() {
    let mut c = Cluster::start(cluster()).await.expect("cluster starts");
    let api = c.api().expect("api");
    let secret = format!("hunter2-{}", uuid::Uuid::new_v4().simple());
    for i in 0..3 {
        let w = c
            .submit(json!({
                "name": format!("app-{i}"), "image": TEST_IMAGE, "command": "sleep 3600",
                "secretEnv": {"TOKEN": secret}
            }))
            .await
            .expect("submit");
        c.wait_status(
            w["id"].as_str().expect("id"),
            "Running",
            Duration::from_secs(30),
        )
        .await
        .expect("running");
    }
    let (status, body) = api
        .put(
            "/services/web",
            &json!({"name": "web", "replicas": 2,
                    "template": {"image": TEST_IMAGE, "command": "sleep 3600"}}),
        )
        .await
        .expect("apply");
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(40);
    let before = loop {
        let list = api.get_json("/workloads").await.expect("list");
        let running = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["status"] == "Running")
            .count();
        if running == 5 {
            break list;
        }
        assert!(Instant::now() < deadline, "not all running: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids = ids_of(&before);
    let containers = containers_of(&ids);
    assert!(containers.values().all(|c| c.len() == 1), "{containers:?}");

    let file = c.dir.path().join("cluster.snap");
    let file_s = file.display().to_string();
    let out = c.cli(&["snapshot", "save", &file_s]).expect("cli");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).expect("snapshot file");
    assert!(
        !text.contains(&secret),
        "a secret value in clear in the snapshot"
    );
    assert!(!text.contains("app-0"), "records are sealed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "only its owner reads it: {mode:o}");
    }

    // etcd is lost; an empty one takes its place; the scheduler starts on it.
    c.kill_scheduler();
    c.etcd.wipe().await.expect("etcd wiped");
    c.start_scheduler().await.expect("scheduler restarts");
    let api = c.api().expect("api");
    let (_, list) = api.get("/workloads").await.expect("list");
    assert_eq!(list, json!([]), "the store is empty");
    // The agents register again and the backstop runs (every second): their
    // containers stay, as the restore guard asks.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, nodes) = api.get("/nodes").await.expect("nodes");
        if nodes["nodes"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents did not come back: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(containers_of(&ids), containers, "containers were kept");

    let restored_at = Instant::now();
    let out = c.cli(&["snapshot", "restore", &file_s]).expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Converged: the same records, all Running on the same containers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let converged = loop {
        let list = api.get_json("/workloads").await.expect("list");
        let all_running = list
            .as_array()
            .is_some_and(|a| a.len() == 5 && a.iter().all(|w| w["status"] == "Running"));
        if all_running && ids_of(&list) == ids {
            break restored_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "did not converge: {:?} vs {ids:?}: {list}",
            ids_of(&list)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "restore converged in {:.2} s (5 workloads, 2 nodes)",
        converged.as_secs_f64()
    );
    let service = api.get_json("/services/web").await.expect("service");
    assert_eq!(service["replicas"], 2, "{service}");
    // Some time for a wrong controller or backstop to act: nothing runs twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        containers_of(&ids),
        containers,
        "the same containers, adopted"
    );
    let all = docker::containers_with_label("persys.io/service", "web");
    assert_eq!(all.len(), 2, "no replica started twice: {all:?}");

    // A second restore into the now populated cluster is refused.
    let out = c.cli(&["snapshot", "restore", &file_s]).expect("cli");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty cluster"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[tokio::test]
async fn a_changed_or_cut_off_snapshot_is_refused_before_anything_is_restored() {
    let c = Cluster::start(ClusterOptions::default())
        .await
        .expect("cluster starts");
    let file = c.dir.path().join("s.snap");
    let file_s = file.display().to_string();
    let out = c.cli(&["snapshot", "save", &file_s]).expect("cli");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).expect("file");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "header, entries (the token), end: {text}");
    // Cut off: the last entry is missing.
    let mut cut: Vec<&str> = lines.clone();
    cut.remove(lines.len() - 2);
    let cut_file = c.dir.path().join("cut.snap");
    std::fs::write(&cut_file, cut.join("\n") + "\n").expect("write");
    let out = c
        .cli(&["snapshot", "restore", &cut_file.display().to_string()])
        .expect("cli");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut off"), "{err}");
    // Changed: one byte of a sealed line.
    let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let last = changed.len() - 1;
    let flipped: String = changed[last]
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i == 20 {
                if ch == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                ch
            }
        })
        .collect();
    changed[last] = flipped;
    let changed_file = c.dir.path().join("changed.snap");
    std::fs::write(&changed_file, changed.join("\n") + "\n").expect("write");
    let out = c
        .cli(&["snapshot", "restore", &changed_file.display().to_string()])
        .expect("cli");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not open"), "{err}");
}

#[tokio::test]
async fn the_leader_writes_periodic_snapshots_and_keeps_only_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snaps = dir.path().join("snapshots");
    let c = Cluster::start(ClusterOptions {
        scheduler_args: vec![
            "--snapshot-dir".into(),
            snaps.display().to_string(),
            "--snapshot-interval".into(),
            "1s".into(),
            "--snapshot-retain".into(),
            "2".into(),
        ],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&snaps)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".snap"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // Written one per second; after four, only the newest two remain.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 {
        seen.extend(names());
        assert!(
            names().len() <= 2,
            "more than --snapshot-retain kept: {:?}",
            names()
        );
        assert!(Instant::now() < deadline, "snapshots not written: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let newest = snaps.join(names().last().expect("a snapshot"));
    let text = std::fs::read_to_string(&newest).expect("read");
    let header: Value = serde_json::from_str(text.lines().next().expect("header")).expect("json");
    assert_eq!(header["persysSnapshot"], 1, "{header}");
    // A periodic snapshot restores like a saved one (this cluster holds no workload,
    // so the restore is allowed; its keys exist already and are left as they are).
    let out = c
        .cli(&["snapshot", "restore", &newest.display().to_string()])
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored")
            || String::from_utf8_lossy(&out.stderr).contains("restored"),
        "{out:?}"
    );
}
