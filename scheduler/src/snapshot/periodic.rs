//! Periodic snapshots (leader only, with `--snapshot-dir`): every
//! `--snapshot-interval` a snapshot is written to `persys-snapshot-<UTC time>.snap`
//! (written aside, synced, then renamed, so a file of that name is whole; mode 0600,
//! since the sealing key's cluster reads it), and only the newest `--snapshot-retain`
//! are kept.

use super::SnapshotError;
use crate::context::Ctx;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// File names of periodic snapshots start so.
pub const FILE_PREFIX: &str = "persys-snapshot-";
/// And end so.
pub const FILE_SUFFIX: &str = ".snap";

/// Why a periodic snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum PeriodicError {
    /// Reading the cluster.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Writing the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The leader's snapshot loop of one term.
pub async fn run(ctx: Arc<Ctx>, term: CancellationToken) {
    let Some(dir) = ctx.config().snapshot_dir.clone() else {
        return;
    };
    let every = ctx.config().snapshot_interval;
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: a new term starts with a fresh snapshot.
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = std::time::Instant::now();
        match take(&ctx, &dir).await {
            Ok((path, entries)) => {
                tracing::info!(path = %path.display(), entries, took_ms = started.elapsed().as_millis() as u64, "snapshot written");
                if let Err(e) = prune(&dir, ctx.config().snapshot_retain) {
                    tracing::warn!(error = %e, "removing old snapshots failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "periodic snapshot failed; the next one follows"),
        }
    }
}

/// Write one snapshot into `dir`; its path and entry count.
pub async fn take(ctx: &Ctx, dir: &Path) -> Result<(PathBuf, u64), PeriodicError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PeriodicError::Io { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    let name = format!(
        "{FILE_PREFIX}{}{FILE_SUFFIX}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let path = dir.join(&name);
    let part = dir.join(format!(".{name}.part"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&part).await.map_err(io(&part))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let store = ctx.store().clone();
    let writer = super::write(&store, ctx.trust().snapshot_key(), tx);
    let copy = async {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            file.write_all(&chunk).await.map_err(io(&part))?;
        }
        Ok::<(), PeriodicError>(())
    };
    let (entries, copied) = tokio::join!(writer, copy);
    let entries = entries?;
    copied?;
    file.sync_all().await.map_err(io(&part))?;
    drop(file);
    tokio::fs::rename(&part, &path).await.map_err(io(&path))?;
    Ok((path, entries))
}

/// Keep the newest `retain` periodic snapshots of `dir` (names sort by time).
pub fn prune(dir: &Path, retain: usize) -> std::io::Result<usize> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(FILE_PREFIX) && n.ends_with(FILE_SUFFIX))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(retain.max(1));
    for n in &names[..excess] {
        std::fs::remove_file(dir.join(n))?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_snapshots_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        for t in [
            "20261201T000000.000Z",
            "20261202T000000.000Z",
            "20261203T000000.000Z",
        ] {
            std::fs::write(
                dir.path().join(format!("{FILE_PREFIX}{t}{FILE_SUFFIX}")),
                "x",
            )
            .expect("write");
        }
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
        assert_eq!(prune(dir.path(), 2).expect("prune"), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt".to_string(),
                format!("{FILE_PREFIX}20261202T000000.000Z{FILE_SUFFIX}"),
                format!("{FILE_PREFIX}20261203T000000.000Z{FILE_SUFFIX}"),
            ]
        );
    }
}
