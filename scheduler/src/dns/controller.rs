//! The DNS controller (leader only): keeps the skydns records of workloads and services
//! in etcd equal to [`records_of`] each workload. Changes arriving together (a storm of
//! workloads starting) are written together, up to [`MAX_BATCH`] keys per fenced
//! transaction, and only what changed is written. At the start of a term, and after a
//! failed write, everything is compared with what etcd holds (one list) and repaired.

use super::workloads::records_of;
use super::DnsRecord;
use crate::context::Ctx;
use crate::store::{StoreError, MAX_BATCH};
use persys_proto::{ClusterEvent, Workload};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events folded into one write at most.
const MAX_EVENTS: usize = 1024;
/// Pause before a full repair after a failed write.
const REPAIR_AFTER: Duration = Duration::from_secs(1);

/// What etcd holds as far as this term knows: workload id → a fingerprint of its
/// records (absent: none). Eight bytes a workload, not its records: at 50,000 serving
/// workloads the records themselves would cost the scheduler tens of MiB.
type Written = HashMap<String, u64>;
/// Key → new record (`None`: delete).
type Changes = BTreeMap<String, Option<DnsRecord>>;

/// The controller loop of one leader term.
pub async fn run(ctx: Arc<Ctx>, term: CancellationToken) {
    let mut changes = ctx.cache().subscribe();
    let mut written: Written = HashMap::new();
    let mut repair = true;
    loop {
        if repair {
            match resync(&ctx, &mut written).await {
                Ok(()) => repair = false,
                Err(e) => {
                    tracing::warn!(error = %e, "repairing the DNS records failed; retrying");
                    tokio::select! {
                        () = term.cancelled() => return,
                        () = tokio::time::sleep(REPAIR_AFTER) => continue,
                    }
                }
            }
        }
        let first = tokio::select! {
            () = term.cancelled() => return,
            ev = changes.recv() => ev,
        };
        let mut events = vec![first];
        while events.len() < MAX_EVENTS {
            match changes.try_recv() {
                Ok(ev) => events.push(Ok(ev)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    events.push(Err(broadcast::error::RecvError::Lagged(n)));
                }
                Err(_) => break,
            }
        }
        // `written` moves ahead of etcd here; a failed write repairs it from etcd.
        let mut pending = Changes::new();
        for ev in events {
            match ev {
                Ok(ClusterEvent::Workload { workload }) => {
                    diff(&ctx, &mut written, &mut pending, &workload);
                }
                // A placed workload is marked Deleted (and loses its records) before
                // its record goes; one that still has records here was missed.
                Ok(ClusterEvent::WorkloadDeleted { id }) => {
                    if written.contains_key(&id) {
                        repair = true;
                    }
                }
                // A node's address or status changes the records of what it runs.
                Ok(ClusterEvent::Node { node }) => {
                    for w in ctx.cache().workloads_on(&node.node_id) {
                        diff(&ctx, &mut written, &mut pending, &w);
                    }
                }
                // Missed changes: every workload against its fingerprint, from the cache
                // (no etcd list, which at 50,000 workloads is megabytes).
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "DNS controller lagged; comparing every workload");
                    let ids = ctx.cache().workload_ids();
                    let live: std::collections::HashSet<&str> =
                        ids.iter().map(String::as_str).collect();
                    if written.keys().any(|id| !live.contains(id.as_str())) {
                        // A workload that had records is gone: only etcd knows its keys.
                        repair = true;
                    }
                    for id in &ids {
                        if let Some(w) = ctx.cache().workload_shared(id).map(|v| v.value) {
                            diff(&ctx, &mut written, &mut pending, &w);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        match write(&ctx, &pending).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "writing DNS records failed; repairing");
                repair = true;
            }
        }
    }
}

fn desired(ctx: &Ctx, w: &Workload) -> Vec<(String, DnsRecord)> {
    let node = w
        .node_id
        .as_deref()
        .and_then(|n| ctx.cache().node(n))
        .map(|v| v.value);
    records_of(&ctx.config().cluster_domain, w, node.as_ref())
}

fn fingerprint(records: &[(String, DnsRecord)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    records.hash(&mut h);
    h.finish()
}

/// Fold workload `w` into `written` and `pending`.
fn diff(ctx: &Ctx, written: &mut Written, pending: &mut Changes, w: &Workload) {
    let want = desired(ctx, w);
    let now = (!want.is_empty()).then(|| fingerprint(&want));
    if written.get(&w.id).copied() == now {
        return;
    }
    if want.is_empty() {
        for key in super::workloads::keys_of(&ctx.config().cluster_domain, w) {
            pending.insert(key, None);
        }
        written.remove(&w.id);
    } else {
        for (key, record) in want {
            pending.insert(key, Some(record));
        }
        if let Some(fp) = now {
            written.insert(w.id.clone(), fp);
        }
    }
}

/// Write `pending` in fenced transactions of at most [`MAX_BATCH`] keys.
async fn write(ctx: &Ctx, pending: &Changes) -> Result<(), StoreError> {
    let all: Vec<(&String, &Option<DnsRecord>)> = pending.iter().collect();
    for chunk in all.chunks(MAX_BATCH) {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (key, record) in chunk {
            match record {
                Some(r) => puts.push((
                    (*key).clone(),
                    serde_json::to_vec(r).map_err(|e| StoreError::Etcd(e.to_string()))?,
                )),
                None => deletes.push((*key).clone()),
            }
        }
        ctx.store().put_and_delete_all(&puts, &deletes).await?;
    }
    Ok(())
}

/// Compare every workload's records with what etcd holds under the domain (one list)
/// and write the difference: stale entries (left by an earlier term, or by workloads
/// deleted while no leader ran) go, missing ones come.
async fn resync(ctx: &Ctx, written: &mut Written) -> Result<(), StoreError> {
    let prefix = super::node_key(&ctx.config().cluster_domain, "");
    let (present, _) = ctx.store().list::<DnsRecord>(&prefix).await?;
    let mut pending = Changes::new();
    // Workload entries are `<name>/<entry>`; node records (`<node id>`) are not ours.
    let mut stale: HashMap<String, DnsRecord> = present
        .into_iter()
        .filter(|(rest, _)| rest.contains('/'))
        .map(|(rest, v)| (format!("{prefix}{rest}"), v.value))
        .collect();
    let mut next = Written::new();
    for id in ctx.cache().workload_ids() {
        let Some(w) = ctx.cache().workload_shared(&id).map(|v| v.value) else {
            continue;
        };
        let want = desired(ctx, &w);
        for (key, record) in &want {
            if stale.remove(key).as_ref() != Some(record) {
                pending.insert(key.clone(), Some(record.clone()));
            }
        }
        if !want.is_empty() {
            next.insert(id, fingerprint(&want));
        }
    }
    for key in stale.into_keys() {
        pending.insert(key, None);
    }
    write(ctx, &pending).await?;
    *written = next;
    Ok(())
}
