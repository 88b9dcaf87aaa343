//! etcd access: typed get/list/put/CAS/delete and a typed watch. The only etcd code.

mod batch;
mod cas_all;
mod election;
mod error;
pub mod metrics;
mod raw;
mod ride;
mod watch;

pub use batch::{Created, MAX_BATCH};
pub use cas_all::CasWrite;
pub use election::{Campaign, LeaderEvent, LeaderWatch, LeaseRenewer};
pub use error::StoreError;
pub use metrics::{Op, StoreMetrics};
pub use raw::PAGE as RAW_PAGE;
pub use ride::{deadline, within};
pub use watch::{StoreEvent, StoreWatch};

use error::{CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, REQUEST_TIMEOUT};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use persys_proto::keys;
use ride::{Expect, Ride};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How often a CAS update re-reads and retries before reporting a conflict.
const CAS_ATTEMPTS: usize = 16;

/// A value with the etcd revision it was last modified at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// etcd `mod_revision` of the key.
    pub mod_revision: i64,
}

/// Outcome of a compare-and-swap update.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated<T> {
    /// The new value was written at this revision.
    Written(Versioned<T>),
    /// The closure asked for no change; the current value.
    Unchanged(Versioned<T>),
    /// The key does not exist.
    Missing,
}

/// Typed access to etcd. Cheap to clone; clones share the write fence.
#[derive(Clone)]
pub struct Store {
    client: Client,
    /// Leadership proof that record writes (CAS puts and deletes) carry.
    fence: std::sync::Arc<election::Fence>,
    /// Latency and errors of every etcd request (shared by the clones).
    metrics: std::sync::Arc<StoreMetrics>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

type Result<T> = std::result::Result<T, StoreError>;

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_string(),
        source,
    })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_string(),
        source,
    })
}

impl Store {
    /// A client for `endpoints`. The connection is made lazily; use [`Store::ping`]
    /// to find out whether etcd answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with(endpoints, &persys_certs::etcd::Access::default()).await
    }

    /// [`Store::connect`] with TLS and credentials.
    pub async fn connect_with(
        endpoints: &[String],
        access: &persys_certs::etcd::Access,
    ) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            // HTTP/2 pings notice a dead etcd under an idle watch stream.
            .with_keep_alive(KEEPALIVE_INTERVAL, REQUEST_TIMEOUT);
        let client = Client::connect(endpoints, Some(access.apply(options))).await?;
        Ok(Self {
            client,
            fence: Default::default(),
            metrics: Default::default(),
        })
    }

    /// The etcd request metrics (register their collectors to export them).
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Whether etcd answers a read; returns its current revision.
    pub async fn ping(&self) -> Result<i64> {
        let mut kv = self.client.kv_client();
        let resp = self
            .metrics
            .timed(
                Op::Get,
                kv.get(
                    persys_proto::keys::LEADER,
                    Some(GetOptions::new().with_count_only()),
                ),
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// One value, if present.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        let resp = Ride::new()
            .run(|| async {
                let mut kv = self.client.kv_client();
                self.metrics.timed(Op::Get, kv.get(key, None)).await
            })
            .await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(Versioned {
                value: decode(key, kv.value())?,
                mod_revision: kv.mod_revision(),
            })),
        }
    }

    /// Every value under `prefix` (keyed by the rest of the key after the prefix), and the
    /// store revision the list was read at (start a watch at `revision + 1`).
    /// Values that do not decode are skipped with a warning rather than failing the list,
    /// so one bad record cannot stop the scheduler.
    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, Versioned<T>)>, i64)> {
        // Page by page at one revision: one answer of a large prefix (50,000 workloads
        // are ~60 MB) is over gRPC's 4 MiB message limit.
        let revision = self.ping().await?;
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .range_raw_versioned(prefix, after.as_deref(), revision, raw::PAGE)
                .await?;
            let full = page.len() as i64 == raw::PAGE;
            if let Some((last, _, _)) = page.last() {
                after = Some(last.clone());
            }
            for (k, v, mod_revision) in page {
                let key = String::from_utf8_lossy(&k).into_owned();
                match decode::<T>(&key, &v) {
                    Ok(value) => out.push((
                        key[prefix.len().min(key.len())..].to_string(),
                        Versioned {
                            value,
                            mod_revision,
                        },
                    )),
                    Err(e) => tracing::warn!(%key, error = %e, "skipping undecodable record"),
                }
            }
            if !full {
                break;
            }
        }
        Ok((out, revision))
    }

    /// Create `key` only if it does not exist. `Ok(None)` when it already exists.
    pub async fn put_if_absent<T: Serialize>(&self, key: &str, value: &T) -> Result<Option<i64>> {
        self.put_at(key, value, 0).await
    }

    /// Write `key` only if it is still at `mod_revision` (0: only if absent).
    /// `Ok(None)` when someone else changed it first.
    pub async fn put_at<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        mod_revision: i64,
    ) -> Result<Option<i64>> {
        self.put_bytes_at(key, &encode(key, value)?, mod_revision)
            .await
    }

    /// Write `key` unless it already holds exactly this value (no revision is spent on
    /// an unchanged value). Returns whether it wrote. For records with one writer
    /// (DNS records, token metadata).
    pub async fn put_if_changed<T: Serialize>(&self, key: &str, value: &T) -> Result<bool> {
        let bytes = encode(key, value)?;
        let resp = Ride::new()
            .run(|| async {
                let txn = Txn::new()
                    .when([Compare::value(key, CompareOp::Equal, bytes.clone())])
                    .or_else([TxnOp::put(key, bytes.clone(), None)]);
                let mut kv = self.client.kv_client();
                self.metrics.timed(Op::Txn, kv.txn(txn)).await
            })
            .await?;
        Ok(!resp.succeeded())
    }

    /// Read-modify-write with compare-and-swap on the mod revision, re-reading and
    /// retrying when another writer won. `f` returns `None` for "no change" (nothing is
    /// written, so unchanged data never spends an etcd revision).
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<Updated<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&T) -> Option<T>,
    {
        self.update_seeded(key, None, f).await
    }

    /// [`Store::update`] whose first attempt starts from `seed` (the cached version)
    /// instead of reading etcd: the compare-and-swap on its mod revision proves it
    /// current, so the common case costs one write and no read. A seed that asks for no
    /// change is not trusted (it may be stale); the key is read then.
    pub async fn update_seeded<T, F>(
        &self,
        key: &str,
        mut seed: Option<Versioned<T>>,
        mut f: F,
    ) -> Result<Updated<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&T) -> Option<T>,
    {
        if let Some(current) = seed.take() {
            if let Some(next) = f(&current.value) {
                if let Some(rev) = self.put_at(key, &next, current.mod_revision).await? {
                    return Ok(Updated::Written(Versioned {
                        value: next,
                        mod_revision: rev,
                    }));
                }
            }
        }
        for _ in 0..CAS_ATTEMPTS {
            let Some(current) = self.get::<T>(key).await? else {
                return Ok(Updated::Missing);
            };
            let Some(next) = f(&current.value) else {
                return Ok(Updated::Unchanged(current));
            };
            if let Some(rev) = self.put_at(key, &next, current.mod_revision).await? {
                return Ok(Updated::Written(Versioned {
                    value: next,
                    mod_revision: rev,
                }));
            }
            tracing::debug!(%key, "compare-and-swap lost, re-reading");
        }
        Err(StoreError::Conflict {
            key: key.to_string(),
        })
    }

    /// Delete `key` only if it is still at `mod_revision`. Returns the store revision of
    /// the delete, or `None` when it changed (or vanished) meanwhile.
    pub async fn delete_at(&self, key: &str, mod_revision: i64) -> Result<Option<i64>> {
        let compares = || vec![Compare::mod_revision(key, CompareOp::Equal, mod_revision)];
        let ops = || vec![TxnOp::delete(key, None)];
        let out = self
            .fenced_write(key, compares, ops, Expect::Absent)
            .await?;
        Ok(out.revision())
    }

    /// Delete `key` unconditionally; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let resp = Ride::new()
            .run(|| async {
                let mut kv = self.client.kv_client();
                self.metrics.timed(Op::Delete, kv.delete(key, None)).await
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    /// Watch workload and node records from `start_revision` (inclusive).
    pub async fn watch(&self, start_revision: i64) -> Result<StoreWatch> {
        let started = std::time::Instant::now();
        let watch = StoreWatch::start(self.client.watch_client(), start_revision).await;
        self.metrics.observe(Op::Watch, started.elapsed());
        if let Err(e) = &watch {
            self.metrics.failed(Op::Watch, e);
        }
        watch
    }
}

#[cfg(test)]
mod tests;
