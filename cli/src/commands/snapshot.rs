//! `persys snapshot save FILE` and `persys snapshot restore FILE`: the cluster's state
//! (`GET /cluster/snapshot`, `POST /cluster/restore`; the admin's). The file is sealed
//! with the cluster's key: only a scheduler of this cluster opens it, so it holds the
//! records' secret values without showing them.

use super::Ctx;
use crate::output::say;
use anyhow::{bail, Context};
use futures::StreamExt;
use persys_proto::snapshot::{RestoreSummary, SnapshotHeader, FORMAT};
use std::io::Write;
use std::path::Path;

/// Lines of a part are sent together up to this many bytes (a longer line goes alone).
const PART_BYTES: usize = 1024 * 1024;

/// `persys snapshot save FILE`: written aside, then renamed, mode 0600.
pub async fn save(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let resp = ctx.client.stream("/cluster/snapshot").await?;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".persys-snapshot")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut body = resp.bytes_stream();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.client.transport_error(&e))?;
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        tmp.write_all(&chunk).context("writing the snapshot")?;
    }
    tmp.as_file().sync_all().context("writing the snapshot")?;
    // The header (first line) and the end line at least.
    if lines < 2 {
        bail!("the snapshot stream ended early ({bytes} bytes); nothing was saved");
    }
    tmp.persist(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    say(&format!(
        "snapshot saved to {} ({} entries, {bytes} bytes)",
        file.display(),
        lines - 2
    ));
    Ok(())
}

/// `persys snapshot restore FILE`: into an empty cluster only. The end line goes first
/// (with the emptiness check), so a cut-off file is refused before anything is written.
pub async fn restore(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() < 2 {
        bail!("{} is not a persys snapshot (too short)", file.display());
    }
    let header_line = lines.remove(0);
    let header: SnapshotHeader = serde_json::from_slice(header_line)
        .with_context(|| format!("{} is not a persys snapshot", file.display()))?;
    if header.persys_snapshot != FORMAT {
        bail!(
            "{} is a snapshot of format {}; this persys reads {FORMAT}",
            file.display(),
            header.persys_snapshot
        );
    }
    let end = lines.pop().unwrap_or_default();
    let entries = lines.len() as u64;
    let started = std::time::Instant::now();
    let check = send(ctx, header_line, &[end], Part::First).await?;
    if check.end_entries != Some(entries) {
        bail!(
            "{} is cut off or changed: it says {:?} entries and holds {entries}; nothing was restored",
            file.display(),
            check.end_entries
        );
    }
    let mut total = RestoreSummary::default();
    let mut part: Vec<&[u8]> = Vec::new();
    let mut size = 0;
    for line in lines {
        if !part.is_empty() && size + line.len() > PART_BYTES {
            add(
                &mut total,
                send(ctx, header_line, &part, Part::Middle).await?,
            );
            part.clear();
            size = 0;
        }
        size += line.len() + 1;
        part.push(line);
    }
    // The last part (maybe empty) makes the restore take effect.
    add(&mut total, send(ctx, header_line, &part, Part::Last).await?);
    say(&format!(
        "restored {} entries ({} already present) from {} taken {} in {:.1}s",
        total.restored,
        total.skipped,
        file.display(),
        header.taken_at.to_rfc3339(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn add(total: &mut RestoreSummary, part: RestoreSummary) {
    total.restored += part.restored;
    total.skipped += part.skipped;
}

/// Which part of a restore a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The check: the end line, and the cluster must be empty.
    First,
    /// Entries.
    Middle,
    /// The last entries; the restore takes effect.
    Last,
}

async fn send(
    ctx: &Ctx,
    header: &[u8],
    lines: &[&[u8]],
    part: Part,
) -> anyhow::Result<RestoreSummary> {
    let mut body = header.to_vec();
    body.push(b'\n');
    for l in lines {
        body.extend_from_slice(l);
        body.push(b'\n');
    }
    let path = match part {
        Part::First => "/cluster/restore?first=true",
        Part::Middle => "/cluster/restore",
        Part::Last => "/cluster/restore?last=true",
    };
    let answer = ctx.client.post_json(path, body).await?;
    serde_json::from_value(answer).context("the scheduler's answer to a restore")
}
