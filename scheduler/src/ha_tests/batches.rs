//! Batched creates across a leader change: no acknowledged workload is lost and none
//! is stored twice, although whole batches are cut off mid-flight.

use super::{admin, one_leader, replica};
use crate::testutil::{wait_until, Etcd};
use persys_proto::{keys, Workload};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn a_leader_change_in_the_middle_of_batches_loses_no_acknowledged_workload_and_duplicates_none(
) {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), None).await;
    let b = replica(&etcd, dir.path(), None).await;
    assert_eq!(one_leader(&[&a, &b], 3.0).await, 0);
    let http = admin(dir.path());
    // 48 clients, 8 creates each, all through the follower: it forwards each with one
    // write id and rides through the leader change, so a request is one record at most.
    let follower = b.url();
    let mut clients = Vec::new();
    for c in 0..48 {
        let (http, url) = (http.clone(), follower.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..8 {
                let name = format!("c{c}-{i}");
                let resp = http
                    .post(format!("{url}/workloads"))
                    .json(&serde_json::json!({"name": name, "image": "busybox:local"}))
                    .send()
                    .await;
                if let Ok(r) = resp {
                    if r.status() == 201 {
                        let w: Workload = r.json().await.expect("record");
                        acked.push((name, w.id));
                    }
                }
            }
            acked
        }));
    }
    // Cut the term while batches are in flight (as if the lease expired).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let observer = etcd.store().await;
    let before = observer.leader_term().await.expect("read");
    observer.delete(keys::LEADER).await.expect("delete");
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.expect("client"));
    }
    assert!(
        wait_until(5.0, || a.is_leader() || b.is_leader()).await,
        "a new term began"
    );
    assert_ne!(observer.leader_term().await.expect("read"), before);
    let (stored, _) = observer
        .list::<Workload>(keys::WORKLOADS)
        .await
        .expect("list");
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    for (_, w) in &stored {
        by_name
            .entry(w.value.spec.name.clone())
            .or_default()
            .push(w.value.id.clone());
    }
    for (name, ids) in &by_name {
        assert_eq!(ids.len(), 1, "{name} stored {} times", ids.len());
    }
    for (name, id) in &acked {
        assert_eq!(
            by_name.get(name).map(|ids| ids[0].as_str()),
            Some(id.as_str()),
            "acknowledged {name} ({id}) is not stored"
        );
    }
    assert!(
        acked.len() > 48,
        "most requests were answered: {}",
        acked.len()
    );
    let batched = a
        .running
        .ctx
        .metrics()
        .placement_batch_size
        .get_sample_sum()
        + b.running
            .ctx
            .metrics()
            .placement_batch_size
            .get_sample_sum();
    let batches = a
        .running
        .ctx
        .metrics()
        .placement_batch_size
        .get_sample_count()
        + b.running
            .ctx
            .metrics()
            .placement_batch_size
            .get_sample_count();
    assert!(
        batches > 0 && batched / batches as f64 > 1.0,
        "creates were batched: {batched} in {batches}"
    );
    b.stop().await;
    a.stop().await;
}
