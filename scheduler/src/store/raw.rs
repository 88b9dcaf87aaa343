//! Raw key-value access for snapshots: every key under a prefix as stored, read page by
//! page at one revision (a consistent point in time however long the read takes), and
//! keys created only where absent (a restore never overwrites what is there).

use super::ride::Ride;
use super::{Result, Store};
use etcd_client::{Compare, CompareOp, GetOptions, SortOrder, SortTarget, TxnOp};

/// Keys read per page.
pub const PAGE: i64 = 500;

impl Store {
    /// Up to `limit` `(key, value)` pairs under `prefix` after `after` (exclusive; from
    /// the start when `None`), in key order, as of `revision`.
    pub async fn range_raw(
        &self,
        prefix: &str,
        after: Option<&[u8]>,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .range_raw_versioned(prefix, after, revision, limit)
            .await?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect())
    }

    /// [`Store::range_raw`] with each key's mod revision.
    pub async fn range_raw_versioned(
        &self,
        prefix: &str,
        after: Option<&[u8]>,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>, i64)>> {
        let start: Vec<u8> = match after {
            // The smallest key greater than `after`.
            Some(a) => {
                let mut k = a.to_vec();
                k.push(0);
                k
            }
            None => prefix.as_bytes().to_vec(),
        };
        let end = persys_proto::keys::prefix_end(prefix.as_bytes());
        let resp = Ride::new()
            .run(|| async {
                let options = GetOptions::new()
                    .with_range(end.clone())
                    .with_revision(revision)
                    .with_limit(limit)
                    .with_sort(SortTarget::Key, SortOrder::Ascend);
                let mut kv = self.client.kv_client();
                self.metrics
                    .timed(super::Op::Range, kv.get(start.clone(), Some(options)))
                    .await
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
            .collect())
    }

    /// Whether any key exists under `prefix`.
    pub async fn any_under(&self, prefix: &str) -> Result<bool> {
        let resp = Ride::new()
            .run(|| async {
                let options = GetOptions::new().with_prefix().with_count_only();
                let mut kv = self.client.kv_client();
                self.metrics
                    .timed(super::Op::Range, kv.get(prefix, Some(options)))
                    .await
            })
            .await?;
        Ok(resp.count() > 0)
    }

    /// Create each `(key, value)` that is absent, fenced to the leader's term; returns
    /// how many were created. One transaction for the lot when none exists, else key by
    /// key.
    pub async fn create_absent_raw(&self, items: &[(Vec<u8>, Vec<u8>)]) -> Result<usize> {
        if items.is_empty() {
            return Ok(0);
        }
        let absent = |k: &[u8]| Compare::create_revision(k.to_vec(), CompareOp::Equal, 0);
        let (compares, term) = self.fenced(items.iter().map(|(k, _)| absent(k)).collect())?;
        let ops: Vec<TxnOp> = items
            .iter()
            .map(|(k, v)| TxnOp::put(k.clone(), v.clone(), None))
            .collect();
        let whole = self.fenced_txn_once(compares, ops, term).await?;
        if whole.succeeded() {
            return Ok(items.len());
        }
        let mut created = 0;
        for (k, v) in items {
            let (compares, term) = self.fenced(vec![absent(k)])?;
            let one = self
                .fenced_txn_once(compares, vec![TxnOp::put(k.clone(), v.clone(), None)], term)
                .await?;
            created += usize::from(one.succeeded());
        }
        Ok(created)
    }
}
