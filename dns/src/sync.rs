//! Keeps the zone current with etcd: list the zone's prefix once, then watch it from
//! the list's revision (no polling). A compacted, cancelled or broken watch, or an
//! etcd that does not answer, means listing again, after a pause that doubles up to
//! [`RETRY_MAX`] and is jittered so responders do not come back to etcd in lockstep.

use crate::error::DnsError;
use crate::metrics::Metrics;
use crate::zone::SharedZone;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// First pause before listing again.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// Largest pause before listing again (before jitter).
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Keys read per list request (one revision for all pages).
const PAGE: i64 = 1000;

fn pauses() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Keep `zone` current until `shutdown`.
pub async fn run(client: Client, zone: SharedZone, metrics: Metrics, shutdown: CancellationToken) {
    let mut pauses = pauses();
    let mut first = true;
    loop {
        if !first {
            metrics.resyncs.inc();
        }
        first = false;
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = sync_once(&client, &zone, &metrics, &mut pauses) => r,
        };
        // Without a max count the iterator never ends; the fallback only satisfies types.
        let delay = pauses.next().unwrap_or(RETRY_MAX);
        match result {
            Err(error) => tracing::warn!(
                %error,
                retry_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "DNS records: etcd list or watch failed; listing again"
            ),
            Ok(()) => tracing::info!("DNS records: etcd watch ended; listing again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One list and the watch after it; returns when the watch ends.
async fn sync_once(
    client: &Client,
    zone: &SharedZone,
    metrics: &Metrics,
    pauses: &mut ExponentialBackoff,
) -> Result<(), DnsError> {
    let prefix = zone.read().watch_prefix();
    let (kvs, revision) = list(client, &prefix).await?;
    let (records, skipped) = {
        let mut z = zone.write();
        let skipped = z.replace(kvs, revision);
        (z.len(), skipped)
    };
    metrics
        .records
        .set(i64::try_from(records).unwrap_or(i64::MAX));
    metrics.revision.set(revision);
    tracing::info!(records, skipped, revision, prefix, "DNS records loaded");
    // A successful list: the next failure starts from the shortest pause.
    *pauses = self::pauses();

    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1)
        // Idle zones still learn etcd's revision (the SOA serial) now and then.
        .with_progress_notify();
    let (_watcher, mut stream) = client
        .watch_client()
        .watch(prefix.as_str(), Some(options))
        .await?;
    while let Some(resp) = stream.message().await? {
        if resp.compact_revision() > 0 {
            return Err(DnsError::WatchLost(format!(
                "compacted at revision {}",
                resp.compact_revision()
            )));
        }
        if resp.canceled() {
            return Err(DnsError::WatchLost(format!(
                "cancelled: {}",
                resp.cancel_reason()
            )));
        }
        let mut z = zone.write();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            match ev.event_type() {
                EventType::Put => {
                    z.put(kv.key(), kv.value());
                }
                EventType::Delete => z.delete(kv.key()),
            }
            z.advance(kv.mod_revision());
        }
        if let Some(h) = resp.header() {
            z.advance(h.revision());
        }
        metrics
            .records
            .set(i64::try_from(z.len()).unwrap_or(i64::MAX));
        metrics.revision.set(z.revision());
    }
    Ok(())
}

/// Every key and value under `prefix`, read in pages at one revision; and that
/// revision (watch from the next one).
async fn list(client: &Client, prefix: &str) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, i64), DnsError> {
    let mut kv = client.kv_client();
    let end = persys_proto::keys::prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = kv.get(from.clone(), Some(options)).await?;
        if revision == 0 {
            revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        }
        for item in resp.kvs() {
            out.push((item.key().to_vec(), item.value().to_vec()));
        }
        match (resp.more(), resp.kvs().last()) {
            (true, Some(last)) => {
                // The next page starts just after the last key read.
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((out, revision)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_bounded() {
        let p: Vec<Duration> = pauses().take(12).collect();
        assert!(p[0] >= RETRY_MIN && p[0] <= RETRY_MIN * 2, "{p:?}");
        assert!(p.iter().all(|d| *d <= RETRY_MAX * 2), "{p:?}");
        assert!(p[11] >= RETRY_MAX, "{p:?}");
    }
}
