//! Many compare-and-swap writes in one etcd transaction: the store half of the record
//! writer's group commit (status changes pushed by a thousand agents at once). Each
//! write is a put of `key` only if it is still at its `mod_revision`, and the whole
//! transaction is fenced to the leader's term, so a batch is written whole or not at
//! all. When any compare fails the answer does not say which one: the caller settles
//! each member on its own ([`Store::put_at`]).

use super::ride::Ride;
use super::{Result, Store, StoreError};
use etcd_client::{Compare, CompareOp, TxnOp};

/// One compare-and-swap write of a batch.
#[derive(Debug, Clone)]
pub struct CasWrite {
    /// The key.
    pub key: String,
    /// Its new value, encoded.
    pub bytes: Vec<u8>,
    /// The mod revision it must still be at (never 0: creates go through
    /// [`Store::create_all`]).
    pub mod_revision: i64,
}

impl Store {
    /// One fenced transaction writing every member of `writes` (distinct keys, at most
    /// [`super::MAX_BATCH`]): `Some(revision)` when all were written, `None` when some
    /// compare failed (nothing was written). An answer lost in transit is an
    /// [`StoreError::Unavailable`] error: the members must then be settled one by one.
    pub async fn put_all_at(&self, writes: &[CasWrite]) -> Result<Option<i64>> {
        if writes.len() > super::MAX_BATCH {
            return Err(StoreError::Etcd(format!(
                "a batch of {} writes is over the limit of {}",
                writes.len(),
                super::MAX_BATCH
            )));
        }
        let compares: Vec<Compare> = writes
            .iter()
            .map(|w| Compare::mod_revision(w.key.as_str(), CompareOp::Equal, w.mod_revision))
            .collect();
        let (compares, term) = self.fenced(compares)?;
        let ops: Vec<TxnOp> = writes
            .iter()
            .map(|w| TxnOp::put(w.key.as_str(), w.bytes.clone(), None))
            .collect();
        let resp = Ride::new()
            .attempt(self.fenced_txn_once(compares, ops, term))
            .await?;
        Ok(resp
            .succeeded()
            .then(|| resp.header().map(|h| h.revision()).unwrap_or_default()))
    }

    /// Unconditional puts and deletes (distinct keys, at most [`super::MAX_BATCH`] in
    /// all) in one transaction fenced to the leader's term: for records only the
    /// leader writes and nothing else compares (DNS entries).
    pub async fn put_and_delete_all(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<()> {
        if puts.len() + deletes.len() > super::MAX_BATCH {
            return Err(StoreError::Etcd(format!(
                "a batch of {} writes is over the limit of {}",
                puts.len() + deletes.len(),
                super::MAX_BATCH
            )));
        }
        let (compares, term) = self.fenced(Vec::new())?;
        let ops: Vec<TxnOp> = puts
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
            .chain(deletes.iter().map(|k| TxnOp::delete(k.as_str(), None)))
            .collect();
        let resp = Ride::new()
            .attempt(self.fenced_txn_once(compares, ops, term))
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Etcd(
                "the leader's term ended before the write".into(),
            ))
        }
    }

    /// [`Store::put_at`] of bytes already encoded.
    pub async fn put_bytes_at(
        &self,
        key: &str,
        bytes: &[u8],
        mod_revision: i64,
    ) -> Result<Option<i64>> {
        let compares = || {
            vec![if mod_revision == 0 {
                Compare::create_revision(key, CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(key, CompareOp::Equal, mod_revision)
            }]
        };
        let ops = || vec![TxnOp::put(key, bytes.to_vec(), None)];
        let out = self
            .fenced_write(key, compares, ops, super::ride::Expect::Value(bytes))
            .await?;
        Ok(out.revision())
    }
}
