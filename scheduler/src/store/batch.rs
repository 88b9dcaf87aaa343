//! Many records created in one etcd transaction: the store half of batched placement
//! (Nomad's plan applier, kube-scheduler's binding pipeline). The transaction is
//! atomic, fenced to the leader's term like every record write, and creates each key
//! only if it is absent; so a batch is written whole or not at all.
//!
//! A key that already exists makes the whole transaction's compares fail. The keys are
//! then read back: one holding exactly our bytes was written by us (an earlier attempt
//! whose answer was lost), one holding other bytes belongs to someone else (an earlier
//! attempt of the same request, which is that member's answer); the rest are sent
//! again. So one conflicting member never fails the others.

use super::ride::Ride;
use super::{decode, encode, Result, Store, StoreError, Versioned};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Most records in one transaction. etcd refuses a transaction with more than
/// `--max-txn-ops` (default 128) compares or operations; each record needs one compare
/// and the leader fence one more.
pub const MAX_BATCH: usize = 100;

/// What became of one record of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Created<T> {
    /// Written by this batch, at this revision.
    Stored(i64),
    /// The key already held another record (returned).
    Existing(Versioned<T>),
}

/// How many times a batch is re-sent after keys turned out to exist.
const ROUNDS: usize = 4;

impl Store {
    /// Create every `(key, value)` that is absent, in as few transactions as it takes
    /// (one when nothing conflicts). The answer is in the order of `items`. Fails as a
    /// whole only when etcd cannot be reached, the fence is lost, or conflicts persist.
    pub async fn create_all<T>(&self, items: &[(String, &T)]) -> Result<Vec<Created<T>>>
    where
        T: Serialize + DeserializeOwned,
    {
        if items.len() > MAX_BATCH {
            return Err(StoreError::Etcd(format!(
                "a batch of {} records is over the limit of {MAX_BATCH}",
                items.len()
            )));
        }
        let encoded: Vec<Vec<u8>> = items
            .iter()
            .map(|(k, v)| encode(k, v))
            .collect::<Result<_>>()?;
        let mut out: Vec<Option<Created<T>>> = (0..items.len()).map(|_| None).collect();
        for _ in 0..ROUNDS {
            let todo: Vec<usize> = (0..items.len()).filter(|i| out[*i].is_none()).collect();
            if todo.is_empty() {
                break;
            }
            match self.create_round(items, &encoded, &todo).await {
                Ok(Some(rev)) => {
                    for i in todo {
                        out[i] = Some(Created::Stored(rev));
                    }
                    break;
                }
                Ok(None) => {}
                // Not leading (any more): what an earlier lost attempt wrote still
                // counts; the rest fail.
                Err(StoreError::NotLeader) => {
                    self.read_back(items, &encoded, &todo, &mut out).await?;
                    if out.iter().any(Option::is_none) {
                        return Err(StoreError::NotLeader);
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
            // Compares failed: some keys exist. Sort out which, then send the rest.
            self.read_back(items, &encoded, &todo, &mut out).await?;
        }
        out.into_iter()
            .zip(items)
            .map(|(o, (key, _))| {
                o.ok_or_else(|| StoreError::Conflict {
                    key: key.to_string(),
                })
            })
            .collect()
    }

    /// One fenced transaction creating `todo`: `Some(revision)` when written, `None`
    /// when a key existed. A lost answer is retried (until the request's deadline): the
    /// create-only compares make a repeat harmless, and [`Store::read_back`] finds a
    /// lost attempt that landed.
    async fn create_round(
        &self,
        items: &[(String, &impl Serialize)],
        encoded: &[Vec<u8>],
        todo: &[usize],
    ) -> Result<Option<i64>> {
        let mut ride = Ride::new();
        loop {
            let compares: Vec<Compare> = todo
                .iter()
                .map(|i| Compare::create_revision(items[*i].0.as_str(), CompareOp::Equal, 0))
                .collect();
            let (compares, term) = self.fenced(compares)?;
            let ops: Vec<TxnOp> = todo
                .iter()
                .map(|i| TxnOp::put(items[*i].0.as_str(), encoded[*i].clone(), None))
                .collect();
            match ride
                .attempt(self.fenced_txn_once(compares, ops, term))
                .await
            {
                Ok(resp) if resp.succeeded() => {
                    return Ok(Some(
                        resp.header().map(|h| h.revision()).unwrap_or_default(),
                    ))
                }
                Ok(_) => return Ok(None),
                Err(e) if ride.again(&e).await => {
                    tracing::debug!(records = todo.len(), error = %e, "a batch write's answer was lost; sending it again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Read the keys of `todo` in one transaction and settle those that exist: ours
    /// (same bytes) are stored, others' are existing records.
    async fn read_back<T: DeserializeOwned>(
        &self,
        items: &[(String, &T)],
        encoded: &[Vec<u8>],
        todo: &[usize],
        out: &mut [Option<Created<T>>],
    ) -> Result<()> {
        let resp = Ride::new()
            .run(|| async {
                let gets: Vec<TxnOp> = todo
                    .iter()
                    .map(|i| TxnOp::get(items[*i].0.as_str(), None))
                    .collect();
                let mut kv = self.client.kv_client();
                self.metrics
                    .timed(super::Op::Txn, kv.txn(Txn::new().and_then(gets)))
                    .await
            })
            .await?;
        let gets = resp.op_responses().into_iter().filter_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        for (i, get) in todo.iter().zip(gets) {
            let Some(kv) = get.kvs().first() else {
                continue;
            };
            out[*i] = Some(if kv.value() == encoded[*i].as_slice() {
                Created::Stored(kv.mod_revision())
            } else {
                Created::Existing(Versioned {
                    value: decode(&items[*i].0, kv.value())?,
                    mod_revision: kv.mod_revision(),
                })
            });
        }
        Ok(())
    }
}
