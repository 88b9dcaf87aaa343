//! etcd down for 10 s: containers untouched, writes refused with 503, reads answered,
//! and everything converges once it is back.

use crate::common::{ms, sleeper, submit, workload};
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn etcd_outage_leaves_containers_refuses_writes_and_converges() {
    let _serial = crate::common::serial().await;
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let api = c.api().expect("api");
    let node = c.node_ids()[0].clone();
    let steady = submit(&c, sleeper("always")).await;
    // Exits (code 3) during the outage; nothing restarts it.
    let exits = submit(
        &c,
        json!({"image": TEST_IMAGE, "command": "sleep 6; exit 3", "restartPolicy": "no"}),
    )
    .await;
    let steady_w = c
        .wait_status(&steady, "Running", Duration::from_secs(30))
        .await
        .expect("Running");
    c.wait_status(&exits, "Running", Duration::from_secs(30))
        .await
        .expect("Running");
    let steady_cid = steady_w["containerId"].as_str().expect("cid").to_string();

    c.etcd.stop();
    let down = Instant::now();
    let mut writes = Vec::new();
    let mut reads = 0;
    while down.elapsed() < OUTAGE {
        let t = Instant::now();
        let (s, v) = api
            .post("/workloads", &sleeper("always"))
            .await
            .expect("a write gets an answer during the outage");
        assert_eq!(s, 503, "write during the outage: {v}");
        assert_eq!(v["code"], "unavailable", "{v}");
        writes.push(ms(t.elapsed()));
        let (s, list) = api.get("/workloads").await.expect("list");
        assert_eq!(s, 200, "reads answer from the cache: {list}");
        assert!(
            list.as_array()
                .is_some_and(|l| l.iter().any(|w| w["id"] == steady.as_str())),
            "{list}"
        );
        let (s, _) = api.get(&format!("/workloads/{steady}")).await.expect("get");
        assert_eq!(s, 200);
        let (s, _) = api.get("/nodes").await.expect("nodes");
        assert_eq!(s, 200);
        reads += 1;
        let info = docker::inspect(&steady_cid).expect("the container still exists");
        assert_eq!(info["State"]["Running"], true, "still running");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "outage: {} writes refused (ms each: {writes:?}), {reads} read rounds answered",
        writes.len()
    );
    let info = docker::inspect(&steady_cid).expect("container");
    assert_eq!(info["State"]["Running"], true);
    assert!(
        docker::inspect(
            docker::workload_containers(&exits)
                .first()
                .map(String::as_str)
                .unwrap_or("none")
        )
        .is_some_and(|i| i["State"]["Running"] == false),
        "the short workload exited during the outage"
    );

    c.etcd.restart().await.expect("etcd restarts");
    let up = Instant::now();
    // Writes work again (after at most a re-election of the scheduler's lease).
    let fresh = loop {
        let (s, v) = api
            .post("/workloads", &sleeper("always"))
            .await
            .expect("post");
        if s == 201 {
            break v["id"].as_str().expect("id").to_string();
        }
        assert!(
            up.elapsed() < Duration::from_secs(15),
            "writes still refused 15 s after etcd is back: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("etcd back -> write accepted: {} ms", ms(up.elapsed()));
    c.wait_status(&fresh, "Running", Duration::from_secs(30))
        .await
        .expect("a workload submitted after recovery runs");
    let w = c
        .wait_workload(&exits, Duration::from_secs(40), "Failed", |w| {
            w["status"] == "Failed" || w["status"] == "Exited"
        })
        .await
        .expect("the exit during the outage is reflected");
    assert_eq!(w["exitCode"], 3, "{w}");
    println!("etcd back -> exit reflected: {} ms", ms(up.elapsed()));
    let w = workload(&api, &steady).await;
    assert_eq!(w["status"], "Running");
    assert_eq!(w["containerId"], steady_cid.as_str(), "same container");
    let running = docker::running_workload_containers(&steady);
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].starts_with(&steady_cid) || steady_cid.starts_with(&running[0]));
    let n = api.get_json(&format!("/nodes/{node}")).await.expect("node");
    assert_eq!(n["status"], "Active", "{n}");
    // Nothing refused was half-written.
    let mut etcd = c.etcd.client().await.expect("etcd");
    let all = etcd
        .get(
            "/workloads/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("list");
    assert_eq!(
        all.kvs().len(),
        3,
        "only the three accepted workloads are stored"
    );
}
