//! Riding through short etcd stalls. A request's store operations run under its
//! deadline ([`within`], set by the API's write path): an operation that meets "etcd is
//! unavailable" waits (exponential backoff with jitter) and tries again until the
//! deadline, and each attempt is cut at the deadline. Outside a request (the loops,
//! start-up) there is no deadline and one attempt is made: the loops requeue on their
//! own.
//!
//! A write whose answer was lost may still have been applied. Before it is sent again
//! the store finds out ([`Store::settle`]): its value is there (applied), or the term
//! that fenced it is over (it never will be), or neither is known yet (wait). So a
//! retry never applies a write twice.

use super::{keys, Result, Store, StoreError};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use etcd_client::{Txn, TxnOp, TxnOpResponse};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Run `f` with its store operations retried until `deadline`.
pub async fn within<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The deadline of the operation being run, if it runs under one.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// First and largest pause between two attempts.
const MIN_PAUSE: Duration = Duration::from_millis(40);
const MAX_PAUSE: Duration = Duration::from_millis(400);

/// The retry state of one operation.
pub(super) struct Ride {
    deadline: Option<Instant>,
    pauses: ExponentialBackoff,
}

impl Ride {
    pub(super) fn new() -> Self {
        Self {
            deadline: deadline(),
            pauses: ExponentialBuilder::default()
                .with_min_delay(MIN_PAUSE)
                .with_max_delay(MAX_PAUSE)
                .with_jitter()
                .without_max_times()
                .build(),
        }
    }

    /// One attempt, cut at the deadline (as "unavailable": etcd did not answer in time).
    pub(super) async fn attempt<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        match self.deadline {
            None => f.await,
            Some(d) => tokio::time::timeout_at(d, f).await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "etcd did not answer before the request's deadline".into(),
                ))
            }),
        }
    }

    /// After `e`: whether to try again (having paused), or give up.
    pub(super) async fn again(&mut self, e: &StoreError) -> bool {
        e.is_unavailable() && self.pause().await
    }

    /// Pause before the next attempt; `false` (no pause) when it would pass the deadline.
    pub(super) async fn pause(&mut self) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        let pause = self.pauses.next().unwrap_or(MAX_PAUSE);
        if Instant::now() + pause >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
    }

    /// Run `op` until it succeeds, fails for good, or the deadline comes. For reads and
    /// writes that are safe to repeat as they are.
    pub(super) async fn run<T, F, Fut>(mut self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        loop {
            match self.attempt(op()).await {
                Err(e) if self.again(&e).await => {
                    tracing::debug!(error = %e, "etcd did not answer; trying again");
                }
                other => return other,
            }
        }
    }
}

/// What became of a write whose answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// It was applied: the key holds what it wrote (its mod revision), or is gone for a
    /// delete (the store revision).
    Applied(i64),
    /// It was not applied and never will be: its fencing term is over.
    Never,
    /// It was not applied (yet): try it again.
    NotYet,
}

/// What a lost write was meant to leave behind.
#[derive(Clone, Copy)]
pub(super) enum Expect<'a> {
    /// The key holds these bytes.
    Value(&'a [u8]),
    /// The key is gone.
    Absent,
}

impl Store {
    /// Find out, in one read, whether a write to `key` fenced at `term` (0: unfenced)
    /// was applied.
    pub(super) async fn settle(&self, key: &str, expect: Expect<'_>, term: i64) -> Result<Settled> {
        let txn = Txn::new().and_then([TxnOp::get(key, None), TxnOp::get(keys::LEADER, None)]);
        let mut kv = self.client.kv_client();
        let resp = self.metrics.timed(super::Op::Txn, kv.txn(txn)).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut gets = resp.op_responses().into_iter().filter_map(|op| match op {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (Some(record), Some(leader)) = (gets.next(), gets.next()) else {
            return Err(StoreError::Etcd("malformed answer to a read".into()));
        };
        let kv = record.kvs().first();
        let applied = match (&expect, kv) {
            (Expect::Value(bytes), Some(kv)) if kv.value() == *bytes => Some(kv.mod_revision()),
            (Expect::Absent, None) => Some(revision),
            _ => None,
        };
        if let Some(rev) = applied {
            return Ok(Settled::Applied(rev));
        }
        let term_now = leader.kvs().first().map(|kv| kv.create_revision());
        // A term's key never comes back once gone: create revisions only grow.
        if term > 0 && term_now != Some(term) {
            return Ok(Settled::Never);
        }
        Ok(Settled::NotYet)
    }
}
