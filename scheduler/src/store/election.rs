//! etcd primitives of the leader election (the logic is in `crate::leader`): a lease
//! with keep-alive, create-if-absent of the leader key attached to it, a conditional
//! resign, a watch of the key, and the write fence every record write carries.

use super::ride::{Expect, Ride, Settled};
use super::{decode, encode, Op, Result, Store, StoreError};
use etcd_client::{
    Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream, Watcher,
};
use etcd_client::{PutOptions, Txn};
use persys_proto::{keys, LeaderRecord};
use std::sync::atomic::{AtomicI64, Ordering};

/// Fence value: record writes are not fenced (single process, tests, start-up).
const UNFENCED: i64 = 0;
/// Fence value: this replica is not the leader; every fenced write is refused.
const NOT_LEADER: i64 = -1;

/// What a record write must prove about leadership. Shared by every clone of a
/// [`Store`], so that the loops, the handlers and the cache all see one term.
#[derive(Debug, Default)]
pub(super) struct Fence(AtomicI64);

impl Fence {
    fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Outcome of one campaign for the leader key.
#[derive(Debug, Clone, PartialEq)]
pub enum Campaign {
    /// The key was absent and is now ours; the term is its create revision.
    Won {
        /// Create revision of the leader key: the fencing token of this term.
        term: i64,
    },
    /// Someone holds the key.
    Held {
        /// Its record (`None` if it does not decode).
        holder: Option<LeaderRecord>,
        /// Create revision of the key (the holder's term).
        term: i64,
        /// The holder's lease.
        lease: i64,
        /// Store revision the answer was read at (watch from `revision + 1`).
        revision: i64,
    },
}

/// A change of the leader key.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaderEvent {
    /// The key was written (a new term when `term` changed).
    Put {
        /// The record (`None` if it does not decode).
        holder: Option<LeaderRecord>,
        /// Create revision of the key.
        term: i64,
    },
    /// The key is gone (resigned, or its lease expired).
    Deleted,
}

/// Keeps one lease alive over a keep-alive stream. Renewals are pipelined: [`send`]
/// queues one without waiting, and etcd answers each on the stream in order, so a slow
/// answer never holds back the next renewal (etcd renews when it reads the request).
///
/// [`send`]: LeaseRenewer::send
pub struct LeaseRenewer {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    metrics: std::sync::Arc<super::StoreMetrics>,
}

impl std::fmt::Debug for LeaseRenewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseRenewer")
            .field("lease", &self.keeper.id())
            .finish()
    }
}

impl LeaseRenewer {
    /// Queue one renewal; its answer comes from [`LeaseRenewer::answer`].
    pub async fn send(&mut self) -> Result<()> {
        if let Err(e) = self.keeper.keep_alive().await {
            let e = StoreError::from(e);
            self.metrics.failed(Op::LeaseKeepAlive, &e);
            return Err(e);
        }
        Ok(())
    }

    /// The answer to the oldest renewal not yet answered: the lease's TTL in seconds
    /// from when etcd renewed it, `0` when the lease is gone.
    pub async fn answer(&mut self) -> Result<i64> {
        let answer = match self.stream.message().await {
            Ok(Some(resp)) => Ok(resp.ttl()),
            Ok(None) => Err(StoreError::Unavailable(
                "lease keep-alive stream ended".into(),
            )),
            Err(e) => Err(StoreError::from(e)),
        };
        if let Err(e) = &answer {
            self.metrics.failed(Op::LeaseKeepAlive, e);
        }
        answer
    }

    /// Record the round trip of one renewal, from its sending to its answer.
    pub fn answered_after(&self, took: std::time::Duration) {
        self.metrics.observe(Op::LeaseKeepAlive, took);
    }
}

/// A watch of the leader key. Dropping it cancels the watch.
pub struct LeaderWatch {
    _watcher: Watcher,
    stream: WatchStream,
}

impl std::fmt::Debug for LeaderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderWatch").finish_non_exhaustive()
    }
}

impl LeaderWatch {
    /// The next batch of changes; `Ok(None)` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Vec<LeaderEvent>>> {
        let Some(resp) = self.stream.message().await? else {
            return Ok(None);
        };
        if resp.compact_revision() > 0 {
            return Err(StoreError::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            return Err(StoreError::Etcd(format!(
                "leader watch canceled: {}",
                resp.cancel_reason()
            )));
        }
        Ok(Some(
            resp.events()
                .iter()
                .filter_map(|ev| {
                    let kv = ev.kv()?;
                    Some(match ev.event_type() {
                        EventType::Put => LeaderEvent::Put {
                            holder: decode(keys::LEADER, kv.value()).ok(),
                            term: kv.create_revision(),
                        },
                        EventType::Delete => LeaderEvent::Deleted,
                    })
                })
                .collect(),
        ))
    }
}

impl Store {
    /// A lease of `ttl_secs` seconds (etcd may round it up to its minimum).
    pub async fn grant_lease(&self, ttl_secs: i64) -> Result<i64> {
        let mut lease = self.client.lease_client();
        Ok(self
            .metrics
            .timed(Op::LeaseGrant, lease.grant(ttl_secs, None))
            .await?
            .id())
    }

    /// Revoke a lease, deleting the keys attached to it.
    pub async fn revoke_lease(&self, lease: i64) -> Result<()> {
        let mut client = self.client.lease_client();
        self.metrics
            .timed(Op::LeaseRevoke, client.revoke(lease))
            .await?;
        Ok(())
    }

    /// Open a keep-alive stream for `lease` (this renews it once).
    pub async fn keep_lease(&self, lease: i64) -> Result<LeaseRenewer> {
        let mut client = self.client.lease_client();
        let (keeper, stream) = self
            .metrics
            .timed(Op::LeaseKeepAlive, client.keep_alive(lease))
            .await?;
        Ok(LeaseRenewer {
            keeper,
            stream,
            metrics: self.metrics.clone(),
        })
    }

    /// Create the leader key with `record` on `lease` if nobody holds it.
    pub async fn campaign(&self, record: &LeaderRecord, lease: i64) -> Result<Campaign> {
        let bytes = encode(keys::LEADER, record)?;
        let txn = Txn::new()
            .when([Compare::create_revision(keys::LEADER, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                keys::LEADER,
                bytes,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(keys::LEADER, None)]);
        let mut kv = self.client.kv_client();
        let resp = self.metrics.timed(Op::Txn, kv.txn(txn)).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        if resp.succeeded() {
            return Ok(Campaign::Won { term: revision });
        }
        let held = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| Campaign::Held {
                holder: decode(keys::LEADER, kv.value()).ok(),
                term: kv.create_revision(),
                lease: kv.lease(),
                revision,
            }),
            _ => None,
        });
        // Deleted between the compare and the read (the txn is atomic, so only if the
        // answer is malformed): report it as held by nobody in particular; the caller
        // campaigns again.
        Ok(held.unwrap_or(Campaign::Held {
            holder: None,
            term: 0,
            lease: 0,
            revision,
        }))
    }

    /// Delete the leader key if it is still the one created at `term`. Whether it was.
    pub async fn resign(&self, term: i64) -> Result<bool> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                keys::LEADER,
                CompareOp::Equal,
                term,
            )])
            .and_then([TxnOp::delete(keys::LEADER, None)]);
        let mut kv = self.client.kv_client();
        Ok(self.metrics.timed(Op::Txn, kv.txn(txn)).await?.succeeded())
    }

    /// The term (create revision) of the leader key, `None` when nobody leads.
    pub async fn leader_term(&self) -> Result<Option<i64>> {
        let mut kv = self.client.kv_client();
        let resp = self
            .metrics
            .timed(Op::Get, kv.get(keys::LEADER, None))
            .await?;
        Ok(resp.kvs().first().map(|kv| kv.create_revision()))
    }

    /// Watch the leader key from `start_revision` (inclusive).
    pub async fn watch_leader(&self, start_revision: i64) -> Result<LeaderWatch> {
        let options = WatchOptions::new().with_start_revision(start_revision);
        let mut client = self.client.watch_client();
        let (watcher, stream) = self
            .metrics
            .timed(Op::Watch, client.watch(keys::LEADER, Some(options)))
            .await?;
        Ok(LeaderWatch {
            _watcher: watcher,
            stream,
        })
    }

    /// From now on, record writes succeed only while the leader key is the one created
    /// at `term` (fencing: a deposed leader's late writes are refused by etcd itself).
    pub fn fence_to_term(&self, term: i64) {
        self.fence.0.store(term.max(1), Ordering::SeqCst);
    }

    /// From now on, record writes are refused ([`StoreError::NotLeader`]) without
    /// asking etcd: this replica is not the leader.
    pub fn fence_all(&self) {
        self.fence.0.store(NOT_LEADER, Ordering::SeqCst);
    }

    /// The compares a record write needs in addition to its own, or the refusal.
    pub(super) fn fenced(&self, mut compares: Vec<Compare>) -> Result<(Vec<Compare>, i64)> {
        match self.fence.get() {
            UNFENCED => Ok((compares, UNFENCED)),
            NOT_LEADER => Err(StoreError::NotLeader),
            term => {
                compares.push(Compare::create_revision(
                    keys::LEADER,
                    CompareOp::Equal,
                    term,
                ));
                Ok((compares, term))
            }
        }
    }

    /// One fenced transaction: `compares` (plus the fence on `term`, from
    /// [`Store::fenced`]), then `ops`; on failure the leader key is read back so that a
    /// lost term is told apart from a lost CAS.
    pub(super) async fn fenced_txn_once(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        term: i64,
    ) -> Result<etcd_client::TxnResponse> {
        let mut txn = Txn::new().when(compares).and_then(ops);
        if term != UNFENCED {
            txn = txn.or_else([TxnOp::get(keys::LEADER, None)]);
        }
        let mut kv = self.client.kv_client();
        let resp = self.metrics.timed(Op::Txn, kv.txn(txn)).await?;
        if !resp.succeeded() && term != UNFENCED {
            let current = resp.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => Some(
                    get.kvs()
                        .first()
                        .map(|kv| kv.create_revision())
                        .unwrap_or(0),
                ),
                _ => None,
            });
            if current != Some(term) {
                return Err(StoreError::NotLeader);
            }
        }
        Ok(resp)
    }

    /// A fenced write of `key` that rides through etcd stalls (see [`super::ride`]):
    /// `compares` and `ops` are built anew for each attempt; `expect` is what the key
    /// holds once the write is applied. `Done(resp)` when a transaction ran (its
    /// compares held or not); `Landed(revision)` when an attempt whose answer was lost
    /// turned out to be applied.
    pub(super) async fn fenced_write(
        &self,
        key: &str,
        compares: impl Fn() -> Vec<Compare>,
        ops: impl Fn() -> Vec<TxnOp>,
        expect: Expect<'_>,
    ) -> Result<FencedWrite> {
        let mut ride = Ride::new();
        // The term of an attempt whose answer was lost: it may yet be applied.
        let mut lost: Option<i64> = None;
        loop {
            if let Some(term) = lost {
                match ride.attempt(self.settle(key, expect, term)).await {
                    Ok(Settled::Applied(rev)) => return Ok(FencedWrite::Landed(rev)),
                    Ok(Settled::Never) => lost = None,
                    // Sent again below, unless this replica no longer holds that term:
                    // then wait until the term ends or the write shows.
                    Ok(Settled::NotYet) if term == UNFENCED || self.fence.get() == term => {}
                    Ok(Settled::NotYet) | Err(_) => {
                        if !ride.pause().await {
                            return Err(unknown_outcome(key));
                        }
                        continue;
                    }
                }
            }
            let (cmp, term) = self.fenced(compares())?;
            match ride.attempt(self.fenced_txn_once(cmp, ops(), term)).await {
                Ok(resp) if !resp.succeeded() && lost.is_some() => {
                    // The compares failed, perhaps because the lost attempt landed.
                    if let Ok(Settled::Applied(rev)) = self.settle(key, expect, term).await {
                        return Ok(FencedWrite::Landed(rev));
                    }
                    return Ok(FencedWrite::Done(resp));
                }
                Ok(resp) => return Ok(FencedWrite::Done(resp)),
                Err(e) if e.is_unavailable() => {
                    tracing::debug!(%key, error = %e, "a write's answer was lost; finding out whether it was applied");
                    lost = Some(term);
                    if !ride.pause().await {
                        return Err(unknown_outcome(key));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The term record writes are fenced to now (`None` when not leading).
    pub fn fence_term(&self) -> Option<i64> {
        Some(self.fence.get()).filter(|t| *t > 0)
    }
}

/// Result of [`Store::fenced_write`].
pub(super) enum FencedWrite {
    /// A transaction ran; whether its compares held is in the answer.
    Done(etcd_client::TxnResponse),
    /// An earlier attempt was applied, at this revision.
    Landed(i64),
}

impl FencedWrite {
    /// The revision of the write, or `None` when its compares failed.
    pub(super) fn revision(&self) -> Option<i64> {
        match self {
            Self::Done(resp) => resp
                .succeeded()
                .then(|| resp.header().map(|h| h.revision()).unwrap_or_default()),
            Self::Landed(rev) => Some(*rev),
        }
    }
}

fn unknown_outcome(key: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "etcd did not confirm the write of {key} in time, and whether it was applied is not known yet; \
         read it back before repeating it"
    ))
}
