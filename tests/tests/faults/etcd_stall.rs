//! etcd stalls (SIGSTOP, then SIGCONT) under a stream of writes to two scheduler
//! replicas. Shorter than the leader's lease: no 503, no step-down, every
//! acknowledged write stored once. Longer than the lease: one failover, and the writes
//! ride through it onto the new leader.

use crate::common::ms;
use persys_tests::{Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;

/// What one write saw.
#[derive(Debug, Clone)]
struct Answer {
    name: String,
    sent: Instant,
    answered: Instant,
    status: u16,
    id: Option<String>,
    retry_after: bool,
    body: String,
}

/// Writers creating workloads (they stay Pending: no agents) through every replica in
/// turn, until `stop`.
fn writers(
    apis: Vec<Api>,
    stop: Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Mutex<Vec<Answer>>>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let tasks = (0..WRITERS)
        .map(|_| {
            let (apis, stop, answers, next) =
                (apis.clone(), stop.clone(), answers.clone(), next.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let name = format!("stall-{n}");
                    let body =
                        json!({"name": name, "image": TEST_IMAGE, "command": ["sleep", "3600"]});
                    let api = &apis[n % apis.len()];
                    let sent = Instant::now();
                    let resp = api
                        .client()
                        .post(api.url("/workloads"))
                        .json(&body)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                        .expect("every write is answered");
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().contains_key("retry-after");
                    let text = resp.text().await.unwrap_or_default();
                    let id = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(String::from));
                    answers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Answer {
                            name,
                            sent,
                            answered: Instant::now(),
                            status,
                            id,
                            retry_after,
                            body: text,
                        });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    (tasks, answers)
}

/// The term (create revision of the leader key), if anyone leads.
async fn term(c: &Cluster) -> Option<i64> {
    let mut etcd = c.etcd.client().await.ok()?;
    let got = etcd.get("/persys/leader", None).await.ok()?;
    got.kvs().first().map(|kv| kv.create_revision())
}

/// Lines of every replica's log containing `needle`.
fn log_lines(c: &Cluster, needle: &str) -> Vec<String> {
    c.all_logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Every acknowledged workload is in etcd, under its id, exactly once by name.
async fn assert_stored_once(c: &Cluster, answers: &[Answer]) {
    let mut etcd = c.etcd.client().await.expect("etcd");
    let listed = etcd
        .get(
            "/workloads/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("list");
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for kv in listed.kvs() {
        let v: serde_json::Value = serde_json::from_slice(kv.value()).expect("record");
        let name = v["spec"]["name"]
            .as_str()
            .or(v["name"].as_str())
            .unwrap_or_default();
        by_name
            .entry(name.to_string())
            .or_default()
            .push(v["id"].as_str().unwrap_or_default().to_string());
    }
    for a in answers.iter().filter(|a| a.status == 201) {
        let ids = by_name.get(&a.name).cloned().unwrap_or_default();
        assert_eq!(
            ids,
            vec![a.id.clone().unwrap_or_default()],
            "acknowledged {} is stored once under its id",
            a.name
        );
    }
    for (name, ids) in &by_name {
        assert!(ids.len() == 1, "{name} stored {} times: {ids:?}", ids.len());
    }
}

async fn two_replicas() -> (Cluster, Vec<Api>) {
    let c = Cluster::start(ClusterOptions {
        schedulers: 2,
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    let apis = (0..c.replica_count())
        .map(|i| c.replica_api(i).expect("api"))
        .collect();
    (c, apis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stall_shorter_than_the_lease_costs_no_term_and_no_write() {
    let _serial = crate::common::serial().await;
    let (c, apis) = two_replicas().await;
    let before = term(&c).await.expect("a term");
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, answers) = writers(apis, stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.etcd.pause().expect("SIGSTOP etcd");
    let stalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.etcd.resume().expect("SIGCONT etcd");
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent < resumed && a.answered > stalled)
        .collect();
    let slowest = during
        .iter()
        .map(|a| a.answered - a.sent)
        .max()
        .unwrap_or_default();
    println!(
        "{} writes, {} in flight during the 1.5 s stall, slowest {} ms",
        answers.len(),
        during.len(),
        ms(slowest)
    );
    assert!(!during.is_empty(), "writes were in flight during the stall");
    let failed: Vec<String> = answers
        .iter()
        .filter(|a| a.status != 201)
        .map(|a| format!("{} {}", a.status, a.body))
        .collect();
    assert!(
        failed.is_empty(),
        "writes failed across the stall: {failed:?}"
    );
    assert_eq!(term(&c).await, Some(before), "the leader kept its term");
    let lost = log_lines(&c, "leadership lost");
    assert!(lost.is_empty(), "no replica stepped down: {lost:?}");
    assert_stored_once(&c, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stall_longer_than_the_lease_fails_over_once_and_writes_resume() {
    let _serial = crate::common::serial().await;
    let (c, apis) = two_replicas().await;
    let before = term(&c).await.expect("a term");
    let became_before = log_lines(&c, "became leader").len();
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, answers) = writers(apis, stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    c.etcd.pause().expect("SIGSTOP etcd");
    let stalled = Instant::now();
    // Longer than the 2 s lease, shorter than the 5 s write deadline.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    c.etcd.resume().expect("SIGCONT etcd");
    let resumed = Instant::now();
    // The new term, as etcd records it.
    let mut new_term = None;
    while resumed.elapsed() < Duration::from_secs(10) {
        if let Some(t) = term(&c).await.filter(|t| *t != before) {
            new_term = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new_term = new_term.expect("a new term after the lease expired");
    let failover = resumed.elapsed();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let first_after = answers
        .iter()
        .filter(|a| a.status == 201 && a.answered > resumed)
        .map(|a| a.answered)
        .min()
        .expect("writes are acknowledged after the stall");
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 201).collect();
    println!(
        "{} writes ({} not acknowledged); stall 3 s; new term {} ms after SIGCONT; first acknowledgement {} ms after SIGCONT, {} ms after SIGSTOP",
        answers.len(),
        failed.len(),
        ms(failover),
        ms(first_after - resumed),
        ms(first_after - stalled)
    );
    // Exactly one failover: one new term, one replica that became leader for it.
    assert_eq!(term(&c).await, Some(new_term), "no second change of term");
    let became = log_lines(&c, "became leader");
    assert_eq!(
        became.len(),
        became_before + 1,
        "one new leader: {became:?}"
    );
    // The old term ended in its leader, which stopped its loops first (fencing).
    let lost = log_lines(&c, "leadership lost");
    assert_eq!(lost.len(), 1, "one step-down: {lost:?}");
    // Writes rode through: the stall was shorter than their deadline.
    for a in &failed {
        assert_eq!(a.status, 503, "only 'unavailable': {}", a.body);
        assert!(a.retry_after, "a 503 carries Retry-After: {}", a.body);
    }
    assert!(
        failed.is_empty(),
        "writes failed though the stall was shorter than their deadline: {:?}",
        failed.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    // Writes after the failover went to the new leader and are all there once.
    assert!(
        answers
            .iter()
            .any(|a| a.status == 201 && a.sent > resumed + failover),
        "writes resume on the new leader"
    );
    assert_stored_once(&c, &answers).await;
}
