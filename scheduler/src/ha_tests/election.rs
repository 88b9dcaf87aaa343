//! Election, failover, reclaiming a dead run's key, fencing.

use super::{admin, leaders, one_leader, replica};
use crate::leader::Role;
use crate::store::{Campaign, StoreError};
use crate::testutil::{wait_until, Etcd};
use persys_proto::{keys, LeaderInfo, LeaderRecord};
use std::time::{Duration, Instant};

#[tokio::test]
async fn two_replicas_elect_exactly_one_leader_and_report_it() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), None).await;
    let b = replica(&etcd, dir.path(), None).await;
    let l = one_leader(&[&a, &b], 3.0).await;
    // The first to start wins; the other follows it.
    assert_eq!(l, 0);
    let leader_id = a.running.ctx.leadership().me().id.clone();
    let http = admin(dir.path());
    for (r, is_self) in [(&a, true), (&b, false)] {
        let info: LeaderInfo = http
            .get(format!("{}/cluster/leader", r.url()))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        assert_eq!(info.leader.as_deref(), Some(leader_id.as_str()));
        assert_eq!(info.url.as_deref(), Some(a.url().as_str()));
        assert_eq!(info.is_self, is_self);
    }
    assert_eq!(a.running.ctx.metrics().is_leader.get(), 1);
    assert_eq!(b.running.ctx.metrics().is_leader.get(), 0);
    // Still exactly one a while later: no flapping.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(leaders(&[&a, &b]), vec![0]);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn the_follower_takes_over_when_the_leader_stops() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), None).await;
    let b = replica(&etcd, dir.path(), None).await;
    one_leader(&[&a, &b], 3.0).await;
    let stopped = Instant::now();
    a.stop().await;
    assert!(
        wait_until(3.0, || b.is_leader()).await,
        "no takeover within 3 s"
    );
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(b.running.ctx.metrics().is_leader.get(), 1);
    b.stop().await;
}

#[tokio::test]
async fn a_leader_whose_key_vanishes_stops_acting_at_once_and_a_new_term_starts() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), None).await;
    let b = replica(&etcd, dir.path(), None).await;
    one_leader(&[&a, &b], 3.0).await;
    let observer = etcd.store().await;
    let term = observer.leader_term().await.expect("read").expect("held");
    let mut role = a.running.ctx.leadership().subscribe();
    // As if the lease had expired under the leader (a pause, a partition).
    observer.delete(keys::LEADER).await.expect("delete");
    let left = tokio::time::timeout(
        Duration::from_secs(1),
        // The borrow is dropped at once: holding it would block the role's writer.
        async {
            role.wait_for(|r| !matches!(r, Role::Leader { term: t } if *t == term))
                .await
                .map(|_| ())
        },
    )
    .await;
    assert!(left.is_ok(), "the old leader kept its term");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = observer.leader_term().await.expect("read");
        if now.is_some_and(|t| t > term) && leaders(&[&a, &b]).len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no new term");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The deposed term's fence refuses writes, even from a store that still holds it.
    let old = etcd.store().await;
    old.fence_to_term(term);
    let err = old
        .put_if_absent("/workloads/fenced", &serde_json::json!({}))
        .await
        .expect_err("fenced");
    assert!(matches!(err, StoreError::NotLeader), "{err}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_restarted_replica_reclaims_its_own_key_without_waiting_for_the_lease() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    // A previous run of "sched-1" died holding the key on a long lease.
    let lease = store.grant_lease(60).await.expect("lease");
    let old = LeaderRecord {
        id: "sched-1".into(),
        url: "https://127.0.0.1:1".into(),
        bootstrap_url: "https://127.0.0.1:2".into(),
    };
    assert!(matches!(
        store.campaign(&old, lease).await.expect("campaign"),
        Campaign::Won { .. }
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let a = replica(&etcd, dir.path(), Some("sched-1")).await;
    assert!(wait_until(2.0, || a.is_leader()).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    a.stop().await;
}

#[tokio::test]
async fn a_replica_follows_a_foreign_leader_until_its_lease_is_gone() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    let lease = store.grant_lease(60).await.expect("lease");
    let ghost = LeaderRecord {
        id: "ghost".into(),
        url: "https://127.0.0.1:1".into(),
        bootstrap_url: "https://127.0.0.1:1".into(),
    };
    store.campaign(&ghost, lease).await.expect("campaign");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), None).await;
    assert!(!a.is_leader());
    assert_eq!(
        a.running.ctx.leadership().leader().map(|l| l.id),
        Some("ghost".to_string())
    );
    // Writes cannot reach the ghost: 503 with Retry-After, nothing written.
    let resp = admin(dir.path())
        .post(format!("{}/workloads", a.url()))
        .json(&serde_json::json!({"image": "busybox:local"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unavailable");
    assert_eq!(a.running.ctx.cache().counts().total, 0);
    store.revoke_lease(lease).await.expect("revoke");
    assert!(wait_until(2.0, || a.is_leader()).await);
    a.stop().await;
}

#[tokio::test]
async fn a_follower_refuses_record_writes_itself() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    store.fence_all();
    let err = store
        .put_if_absent("/workloads/x", &serde_json::json!({}))
        .await
        .expect_err("not leader");
    assert!(matches!(err, StoreError::NotLeader));
    assert!(etcd
        .store()
        .await
        .get::<serde_json::Value>("/workloads/x")
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn replicas_wrongly_sharing_an_id_settle_instead_of_taking_the_key_from_each_other() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&etcd, dir.path(), Some("dup")).await;
    let b = replica(&etcd, dir.path(), Some("dup")).await;
    // The later one took the key at its start (it looks like a restart of "dup").
    assert!(wait_until(3.0, || b.is_leader() && !a.is_leader()).await);
    let observer = etcd.store().await;
    let term = observer.leader_term().await.expect("read");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        observer.leader_term().await.expect("read"),
        term,
        "no flapping"
    );
    assert!(b.is_leader() && !a.is_leader());
    a.stop().await;
    b.stop().await;
}
