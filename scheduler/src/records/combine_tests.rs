//! Group commit of workload updates on a real etcd: a write that loses its compare
//! fails only itself, and a batch is written whole or not at all.

use super::cache::Cache;
use super::Records;
use crate::store::{CasWrite, StoreEvent, Updated};
use crate::testutil::Etcd;
use chrono::Utc;
use persys_proto::{keys, Workload, WorkloadRequest, WorkloadStatus};
use std::sync::Arc;

fn workload(id: &str) -> Workload {
    let spec = WorkloadRequest {
        name: id.into(),
        image: "busybox:local".into(),
        ..Default::default()
    }
    .validate()
    .expect("valid");
    Workload::new(id.into(), spec, Utc::now())
}

#[tokio::test]
async fn a_batch_with_one_stale_compare_writes_nothing() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let mut writes = Vec::new();
    for i in 0..3 {
        let key = format!("/t/w{i}");
        let rev = store
            .put_if_absent(&key, &i)
            .await
            .expect("put")
            .expect("new");
        writes.push(CasWrite {
            key,
            bytes: b"10".to_vec(),
            // The last one is computed from a version that is gone.
            mod_revision: if i == 2 { rev - 1 } else { rev },
        });
    }
    assert_eq!(store.put_all_at(&writes).await.expect("txn"), None);
    for (i, w) in writes.iter().enumerate() {
        let got = store
            .get::<u32>(&w.key)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            got.value, i as u32,
            "{} was written by a failed batch",
            w.key
        );
    }
    for w in &mut writes[2..] {
        w.mod_revision += 1;
    }
    assert!(store.put_all_at(&writes).await.expect("txn").is_some());
    for w in &writes {
        let got = store
            .get::<u32>(&w.key)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(got.value, 10);
    }
}

#[tokio::test]
async fn concurrent_updates_all_land_and_a_stale_one_fails_only_itself() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let cache = Arc::new(Cache::new());
    let records = Records::new(store.clone(), cache.clone());
    let ids: Vec<String> = (0..24).map(|i| format!("w{i:02}")).collect();
    for id in &ids {
        let w = workload(id);
        let rev = store
            .put_if_absent(&keys::workload(id), &w)
            .await
            .expect("put")
            .expect("new");
        cache.apply(StoreEvent::WorkloadPut(Arc::new(w), rev));
    }
    // Another writer changes w05 behind the view's back: its update's compare fails.
    let mut behind = store
        .get::<Workload>(&keys::workload("w05"))
        .await
        .expect("get")
        .expect("present");
    behind.value.status_reason = Some("written elsewhere".into());
    store
        .put_at(&keys::workload("w05"), &behind.value, behind.mod_revision)
        .await
        .expect("put")
        .expect("won");

    let updates = ids.iter().map(|id| {
        records.update_workload(id, |w| {
            let mut next = w.clone();
            next.status = WorkloadStatus::Running;
            Some(next)
        })
    });
    for out in futures::future::join_all(updates).await {
        assert!(matches!(out, Ok(Updated::Written(_))), "{out:?}");
    }
    for id in &ids {
        let stored = store
            .get::<Workload>(&keys::workload(id))
            .await
            .expect("get")
            .expect("present");
        assert_eq!(stored.value.status, WorkloadStatus::Running, "{id}");
        let cached = cache.workload(id).expect("cached");
        assert_eq!(
            cached.mod_revision, stored.mod_revision,
            "{id}: view behind"
        );
    }
    let w05 = store
        .get::<Workload>(&keys::workload("w05"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        w05.value.status_reason.as_deref(),
        Some("written elsewhere"),
        "the retry of the stale update started from the other writer's version"
    );
}
