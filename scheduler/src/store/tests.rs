use super::*;
use crate::testutil::Etcd;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rec {
    n: u32,
}

#[tokio::test]
async fn put_if_absent_refuses_an_existing_key() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    assert!(s
        .put_if_absent("/t/a", &Rec { n: 1 })
        .await
        .expect("put")
        .is_some());
    assert!(s
        .put_if_absent("/t/a", &Rec { n: 2 })
        .await
        .expect("put")
        .is_none());
    let got = s.get::<Rec>("/t/a").await.expect("get").expect("present");
    assert_eq!(got.value, Rec { n: 1 });
}

#[tokio::test]
async fn put_at_stale_revision_loses() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let r1 = s
        .put_if_absent("/t/a", &Rec { n: 1 })
        .await
        .expect("put")
        .expect("new");
    let r2 = s
        .put_at("/t/a", &Rec { n: 2 }, r1)
        .await
        .expect("cas")
        .expect("wins");
    assert!(s
        .put_at("/t/a", &Rec { n: 3 }, r1)
        .await
        .expect("cas")
        .is_none());
    assert!(s.delete_at("/t/a", r1).await.expect("del").is_none());
    assert!(s.delete_at("/t/a", r2).await.expect("del").is_some());
    assert!(s.get::<Rec>("/t/a").await.expect("get").is_none());
}

#[tokio::test]
async fn concurrent_cas_updates_never_lose_an_increment() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.put_if_absent("/t/c", &Rec { n: 0 }).await.expect("put");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.update::<Rec, _>("/t/c", |r| Some(Rec { n: r.n + 1 }))
                .await
        }));
    }
    for t in tasks {
        assert!(matches!(
            t.await.expect("joins").expect("updates"),
            Updated::Written(_)
        ));
    }
    let got = s.get::<Rec>("/t/c").await.expect("get").expect("present");
    assert_eq!(got.value.n, 8);
}

#[tokio::test]
async fn unchanged_update_writes_no_revision() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.put_if_absent("/t/u", &Rec { n: 1 }).await.expect("put");
    let before = s.ping().await.expect("rev");
    let out = s.update::<Rec, _>("/t/u", |_| None).await.expect("update");
    assert!(matches!(out, Updated::Unchanged(_)));
    assert!(!s.put_if_changed("/t/u", &Rec { n: 1 }).await.expect("put"));
    assert_eq!(s.ping().await.expect("rev"), before);
    assert!(s.put_if_changed("/t/u", &Rec { n: 2 }).await.expect("put"));
}

#[tokio::test]
async fn watch_reports_workload_puts_and_deletes() {
    use chrono::Utc;
    use persys_proto::{keys, Workload, WorkloadRequest};
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let rev = s.ping().await.expect("rev");
    let mut watch = s.watch(rev + 1).await.expect("watch");
    let spec = WorkloadRequest {
        image: "busybox:local".into(),
        ..Default::default()
    }
    .validate()
    .expect("valid");
    let w = Workload::new("w1".into(), spec, Utc::now());
    s.put_if_absent(&keys::workload("w1"), &w)
        .await
        .expect("put");
    s.put_if_changed("/skydns/x", &serde_json::json!({"host": "h"}))
        .await
        .expect("put");
    s.delete(&keys::workload("w1")).await.expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(watch.next().await.expect("watch ok").expect("open"));
    }
    assert!(matches!(&seen[0], StoreEvent::WorkloadPut(got, _) if got.id == "w1"));
    assert!(matches!(&seen[1], StoreEvent::WorkloadDeleted(id, _) if id == "w1"));
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_quickly() {
    let mut etcd = Etcd::start().await;
    let s = etcd.store().await;
    etcd.kill();
    let start = std::time::Instant::now();
    let err = s.get::<Rec>("/t/x").await.expect_err("etcd is down");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn watch_from_a_compacted_revision_reports_compaction() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    for n in 0..5 {
        s.put_if_changed("/workloads/x", &Rec { n })
            .await
            .expect("put");
    }
    let rev = s.ping().await.expect("rev");
    let mut raw = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("raw client");
    raw.compact(rev, None).await.expect("compact");
    let mut watch = s.watch(2).await.expect("watch created");
    let err = watch.next().await.expect_err("compacted");
    assert!(matches!(err, StoreError::Compacted(_)), "{err:?}");
}

#[tokio::test]
async fn cache_relists_after_compaction_and_keeps_following() {
    use crate::cache::Cache;
    use crate::testutil::wait_until;
    use chrono::Utc;
    use persys_proto::{keys, Workload, WorkloadRequest};
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let cache = std::sync::Arc::new(Cache::new());
    let rev = cache.load(&s).await.expect("load");
    let spec = WorkloadRequest {
        image: "busybox:local".into(),
        ..Default::default()
    }
    .validate()
    .expect("valid");
    // Written and compacted before the watch starts: the watch's start is gone.
    let w = Workload::new("w1".into(), spec, Utc::now());
    s.put_if_absent(&keys::workload("w1"), &w)
        .await
        .expect("put");
    s.put_if_changed("/skydns/filler", &Rec { n: 1 })
        .await
        .expect("put");
    let now = s.ping().await.expect("rev");
    let mut raw = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("raw client");
    raw.compact(now, None).await.expect("compact");
    let token = tokio_util::sync::CancellationToken::new();
    let c = cache.clone();
    let t = token.clone();
    let task = tokio::spawn(async move { c.run(s, rev, t).await });
    assert!(wait_until(5.0, || cache.workload("w1").is_some()).await);
    token.cancel();
    task.await.expect("cache loop stops");
}

/// The version etcd keeps of `key` (how many times it was written since created).
async fn version(etcd: &Etcd, key: &str) -> i64 {
    let mut c = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("client");
    let got = c.get(key, None).await.expect("get");
    got.kvs().first().map(|kv| kv.version()).unwrap_or(0)
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_in_a_stall_is_applied_once() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.ping().await.expect("etcd answers");
    // Longer than one etcd request may take (2 s): the first answer is lost.
    let thaw = etcd.stall(Duration::from_millis(2600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let rev = within(deadline, s.put_if_absent("/t/lost", &Rec { n: 1 }))
        .await
        .expect("the write rides through the stall");
    thaw.join().expect("thawed");
    assert!(rev.is_some(), "acknowledged as created");
    assert_eq!(version(&etcd, "/t/lost").await, 1, "written exactly once");
}

#[tokio::test]
async fn an_update_whose_answer_is_lost_in_a_stall_is_applied_once() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.put_if_absent("/t/n", &Rec { n: 0 }).await.expect("put");
    let thaw = etcd.stall(Duration::from_millis(2600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    // Not idempotent by itself: applied twice, n would be 2.
    let out = within(
        deadline,
        s.update::<Rec, _>("/t/n", |r| Some(Rec { n: r.n + 1 })),
    )
    .await
    .expect("the update rides through the stall");
    thaw.join().expect("thawed");
    assert!(matches!(out, Updated::Written(_)), "{out:?}");
    let got = s.get::<Rec>("/t/n").await.expect("get").expect("present");
    assert_eq!(got.value, Rec { n: 1 });
    assert_eq!(version(&etcd, "/t/n").await, 2, "one create, one update");
}

#[tokio::test]
async fn without_a_deadline_a_stall_fails_the_operation() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.ping().await.expect("etcd answers");
    let thaw = etcd.stall(Duration::from_millis(2600));
    let err = s
        .put_if_absent("/t/x", &Rec { n: 1 })
        .await
        .expect_err("one attempt, cut by the request timeout");
    thaw.join().expect("thawed");
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn a_stall_longer_than_the_deadline_answers_unavailable_in_time() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.ping().await.expect("etcd answers");
    let thaw = etcd.stall(Duration::from_millis(3000));
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    let err = within(deadline, s.get::<Rec>("/t/none"))
        .await
        .expect_err("etcd is frozen past the deadline");
    let took = started.elapsed();
    thaw.join().expect("thawed");
    assert!(err.is_unavailable(), "{err}");
    assert!(
        took < Duration::from_millis(1500),
        "answered by the deadline: {took:?}"
    );
}

#[tokio::test]
async fn etcd_user_and_password_from_the_flags_are_used() {
    let etcd = Etcd::start().await;
    let mut admin = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("client");
    admin.user_add("root", "s3cret", None).await.expect("user");
    admin.role_add("root").await.expect("role");
    admin.user_grant_role("root", "root").await.expect("grant");
    admin.auth_enable().await.expect("auth on");
    let endpoints = [etcd.endpoint.clone()];
    let with = |user: &str, password: &str| {
        persys_certs::etcd::Access::from_flags(None, None, None, Some(user), Some(password))
            .expect("access")
    };
    let s = Store::connect_with(&endpoints, &with("root", "s3cret"))
        .await
        .expect("connects with the password");
    assert!(s
        .put_if_absent("/t/auth", &Rec { n: 1 })
        .await
        .expect("write with credentials")
        .is_some());
    let refused = match Store::connect_with(&endpoints, &with("root", "wrong")).await {
        Err(_) => true,
        Ok(bad) => bad.get::<Rec>("/t/auth").await.is_err(),
    };
    assert!(refused, "a wrong password reads nothing");
    let anonymous = Store::connect(&endpoints).await.expect("client");
    assert!(
        anonymous.get::<Rec>("/t/auth").await.is_err(),
        "no credentials, no read"
    );
    assert!(persys_certs::etcd::Access::from_flags(None, None, None, Some("root"), None).is_err());
}

#[tokio::test]
async fn a_batch_is_one_transaction_and_a_conflicting_member_fails_only_itself() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    s.put_if_absent("/t/b", &Rec { n: 99 }).await.expect("put");
    let (a, b, c) = (Rec { n: 1 }, Rec { n: 2 }, Rec { n: 3 });
    let items = vec![
        ("/t/a".to_string(), &a),
        ("/t/b".to_string(), &b),
        ("/t/c".to_string(), &c),
    ];
    let out = s.create_all(&items).await.expect("batch");
    let (Created::Stored(ra), Created::Existing(eb), Created::Stored(rc)) =
        (&out[0], &out[1], &out[2])
    else {
        panic!("unexpected outcome {out:?}");
    };
    // The others went in together, in one revision; the existing record is untouched.
    assert_eq!(ra, rc);
    assert_eq!(eb.value, Rec { n: 99 });
    for (key, want) in [("/t/a", 1), ("/t/b", 99), ("/t/c", 3)] {
        let got = s.get::<Rec>(key).await.expect("get").expect("present");
        assert_eq!(got.value.n, want, "{key}");
    }
}

#[tokio::test]
async fn a_batch_member_already_written_with_our_bytes_counts_as_stored() {
    // What a lost answer leaves behind: the record is there, with exactly our value.
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let (a, b) = (Rec { n: 1 }, Rec { n: 2 });
    let rev = s
        .put_if_absent("/t/a", &a)
        .await
        .expect("put")
        .expect("new");
    let items = vec![("/t/a".to_string(), &a), ("/t/b".to_string(), &b)];
    let out = s.create_all(&items).await.expect("batch");
    assert_eq!(out[0], Created::Stored(rev));
    assert!(matches!(out[1], Created::Stored(r) if r > rev));
}

#[tokio::test]
async fn a_batch_over_etcds_transaction_limit_is_refused_before_etcd() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let r = Rec { n: 0 };
    let items: Vec<(String, &Rec)> = (0..=MAX_BATCH).map(|i| (format!("/t/{i}"), &r)).collect();
    assert!(s.create_all(&items).await.is_err());
    let full: Vec<(String, &Rec)> = (0..MAX_BATCH).map(|i| (format!("/t/{i}"), &r)).collect();
    let out = s
        .create_all(&full)
        .await
        .expect("a full batch fits etcd's limit");
    assert!(out.iter().all(|c| matches!(c, Created::Stored(_))));
}

#[tokio::test]
async fn a_batch_fenced_to_a_lost_term_writes_nothing() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    let observer = etcd.store().await;
    // A term: the leader key's create revision.
    observer
        .put_if_changed(keys::LEADER, &Rec { n: 7 })
        .await
        .expect("hold the key");
    let term = s.leader_term().await.expect("read").expect("held");
    s.fence_to_term(term);
    observer.delete(keys::LEADER).await.expect("lose the term");
    let (a, b) = (Rec { n: 1 }, Rec { n: 2 });
    let items = vec![("/t/a".to_string(), &a), ("/t/b".to_string(), &b)];
    let e = s.create_all(&items).await.expect_err("fenced off");
    assert!(matches!(e, StoreError::NotLeader), "{e}");
    for key in ["/t/a", "/t/b"] {
        assert!(s.get::<Rec>(key).await.expect("get").is_none(), "{key}");
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Big {
    n: u32,
    pad: String,
}

#[tokio::test]
async fn a_list_larger_than_one_grpc_message_is_read_whole_at_one_revision() {
    let etcd = Etcd::start().await;
    let s = etcd.store().await;
    // 1,300 records of 4 KiB: 5.2 MB, over gRPC's 4 MiB answer limit.
    let pad = "x".repeat(4096);
    for chunk in (0..1300u32).collect::<Vec<_>>().chunks(100) {
        let items: Vec<(String, Big)> = chunk
            .iter()
            .map(|n| {
                (
                    format!("/big/{n:05}"),
                    Big {
                        n: *n,
                        pad: pad.clone(),
                    },
                )
            })
            .collect();
        let refs: Vec<(String, &Big)> = items.iter().map(|(k, v)| (k.clone(), v)).collect();
        s.create_all(&refs).await.expect("batch");
    }
    let (all, revision) = s.list::<Big>("/big/").await.expect("list");
    assert_eq!(all.len(), 1300);
    assert_eq!(all[0].0, "00000");
    assert_eq!(all[1299].1.value.n, 1299);
    assert!(all.iter().all(|(_, v)| v.mod_revision <= revision));
}
