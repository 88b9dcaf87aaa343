//! Cluster snapshots: [`write`] reads every persys record at one etcd revision, page by
//! page, and seals it line by line ([`persys_proto::snapshot`] is the format);
//! [`restore_part`] opens the lines of one part of a snapshot and creates each key that
//! is absent. A restore goes into an empty cluster only (no workload, no service):
//! over a live one it would bring deleted workloads back. [`guard`] keeps a scheduler
//! that starts on an emptied etcd from removing the containers a restore will adopt;
//! [`periodic`] is the leader's snapshot schedule.

pub mod guard;
pub mod periodic;

use crate::context::Ctx;
use crate::store::{Store, StoreError};
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use persys_certs::{SealError, SnapshotKey};
use persys_proto::keys;
use persys_proto::snapshot::{
    RestoreSummary, SnapshotHeader, SnapshotLine, EXCLUDED, FORMAT, PREFIXES,
};
use tokio::sync::mpsc;

/// Entries created per etcd transaction on restore.
const RESTORE_BATCH: usize = 100;

/// Why a snapshot could not be made or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// etcd.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A line is not what a snapshot holds.
    #[error("line {line}: {message}")]
    Malformed {
        /// 1-based line number within the part.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Another cluster's snapshot, or a changed one.
    #[error("line {line}: {source}")]
    Seal {
        /// 1-based line number within the part.
        line: usize,
        /// The cause.
        source: SealError,
    },
    /// The snapshot was sealed with another cluster's key.
    #[error("the snapshot is of another cluster (key {found}; this cluster's is {ours})")]
    OtherCluster {
        /// The header's key id.
        found: String,
        /// Ours.
        ours: String,
    },
    /// The cluster holds workloads or services already.
    #[error("the cluster already holds {0}; a snapshot is restored into an empty cluster only")]
    NotEmpty(&'static str),
    /// The reader went away.
    #[error("the snapshot's reader went away")]
    Gone,
}

fn seal_line(key: &SnapshotKey, line: &SnapshotLine) -> Result<Bytes, SealError> {
    let plain = serde_json::to_vec(line).unwrap_or_default();
    let sealed = key.seal(&plain)?;
    let mut text = base64::engine::general_purpose::STANDARD.encode(sealed);
    text.push('\n');
    Ok(Bytes::from(text))
}

/// Read the whole snapshot at the store's current revision into `tx`, one line per
/// message: the header, the entries, the end. Stops early when the receiver goes.
pub async fn write(
    store: &Store,
    key: &SnapshotKey,
    tx: mpsc::Sender<Result<Bytes, SnapshotError>>,
) -> Result<u64, SnapshotError> {
    let revision = store.ping().await?;
    let header = SnapshotHeader {
        persys_snapshot: FORMAT,
        taken_at: Utc::now(),
        revision,
        key_id: key.id().to_string(),
    };
    let mut first = serde_json::to_vec(&header).unwrap_or_default();
    first.push(b'\n');
    tx.send(Ok(Bytes::from(first)))
        .await
        .map_err(|_| SnapshotError::Gone)?;
    let mut entries = 0u64;
    for prefix in PREFIXES {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .range_raw(prefix, after.as_deref(), revision, crate::store::RAW_PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() as i64 == crate::store::RAW_PAGE;
            for (k, v) in page {
                let k = String::from_utf8_lossy(&k).into_owned();
                if EXCLUDED.contains(&k.as_str()) {
                    continue;
                }
                let Ok(v) = serde_json::value::RawValue::from_string(
                    String::from_utf8_lossy(&v).into_owned(),
                ) else {
                    tracing::warn!(key = %k, "not JSON; left out of the snapshot");
                    continue;
                };
                let line = seal_line(key, &SnapshotLine::entry(k, v))
                    .map_err(|source| SnapshotError::Seal { line: 0, source })?;
                tx.send(Ok(line)).await.map_err(|_| SnapshotError::Gone)?;
                entries += 1;
            }
            if !full {
                break;
            }
        }
    }
    let end = seal_line(key, &SnapshotLine::end(entries))
        .map_err(|source| SnapshotError::Seal { line: 0, source })?;
    tx.send(Ok(end)).await.map_err(|_| SnapshotError::Gone)?;
    Ok(entries)
}

/// Restore one part of a snapshot: its header line, then sealed lines. The first part
/// (`first`) is refused unless the cluster is empty, and arms the restore guard; the
/// last (`last`) makes the view current and lifts it. Keys that exist are left alone.
pub async fn restore_part(
    ctx: &Ctx,
    body: &[u8],
    first: bool,
    last: bool,
) -> Result<RestoreSummary, SnapshotError> {
    let key = ctx.trust().snapshot_key();
    let mut lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header: SnapshotHeader = lines
        .next()
        .and_then(|l| serde_json::from_slice(l).ok())
        .ok_or_else(|| SnapshotError::Malformed {
            line: 1,
            message: "the first line is not a snapshot header".into(),
        })?;
    if header.persys_snapshot != FORMAT {
        return Err(SnapshotError::Malformed {
            line: 1,
            message: format!("format {} is not {FORMAT}", header.persys_snapshot),
        });
    }
    if header.key_id != key.id() {
        return Err(SnapshotError::OtherCluster {
            found: header.key_id,
            ours: key.id().to_string(),
        });
    }
    if first {
        if ctx.store().any_under(keys::WORKLOADS).await? {
            return Err(SnapshotError::NotEmpty("workloads"));
        }
        if ctx.store().any_under(keys::SERVICES).await? {
            return Err(SnapshotError::NotEmpty("services"));
        }
        ctx.restore_guard().arm("a snapshot is being restored");
    }
    let mut summary = RestoreSummary::default();
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(RESTORE_BATCH);
    for (i, raw) in lines.enumerate() {
        let n = i + 2;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| SnapshotError::Malformed {
                line: n,
                message: format!("not base64: {e}"),
            })?;
        let plain = key
            .open(&sealed)
            .map_err(|source| SnapshotError::Seal { line: n, source })?;
        let line: SnapshotLine =
            serde_json::from_slice(&plain).map_err(|e| SnapshotError::Malformed {
                line: n,
                message: e.to_string(),
            })?;
        match line {
            SnapshotLine {
                k: Some(k),
                v: Some(v),
                ..
            } => {
                if EXCLUDED.contains(&k.as_str()) || !PREFIXES.iter().any(|p| k.starts_with(p)) {
                    return Err(SnapshotError::Malformed {
                        line: n,
                        message: format!("{k} is no key a snapshot holds"),
                    });
                }
                batch.push((k.into_bytes(), v.get().as_bytes().to_vec()));
                if batch.len() == RESTORE_BATCH {
                    flush(ctx, &mut batch, &mut summary).await?;
                }
            }
            SnapshotLine {
                entries: Some(entries),
                ..
            } => summary.end_entries = Some(entries),
            _ => {
                return Err(SnapshotError::Malformed {
                    line: n,
                    message: "neither an entry nor the end".into(),
                })
            }
        }
    }
    flush(ctx, &mut batch, &mut summary).await?;
    if last {
        finish(ctx).await?;
    }
    Ok(summary)
}

/// The restore is whole: make the view current (one list, so that no loop acts on a
/// view that lacks part of it), lift the guard, and act on what came back.
async fn finish(ctx: &Ctx) -> Result<(), SnapshotError> {
    ctx.cache().load(ctx.store()).await?;
    ctx.restore_guard().clear("a snapshot was restored");
    ctx.kick_pending();
    for node in ctx.cache().nodes() {
        ctx.node_queue().request(&node.node_id);
    }
    let (services, _) = ctx
        .store()
        .list::<persys_proto::Service>(keys::SERVICES)
        .await?;
    for (name, _) in services {
        ctx.services().enqueue(&name);
    }
    Ok(())
}

async fn flush(
    ctx: &Ctx,
    batch: &mut Vec<(Vec<u8>, Vec<u8>)>,
    summary: &mut RestoreSummary,
) -> Result<(), SnapshotError> {
    let created = ctx.store().create_absent_raw(batch).await? as u64;
    summary.restored += created;
    summary.skipped += batch.len() as u64 - created;
    batch.clear();
    Ok(())
}
