//! Group commit, the one loop behind batched creates ([`crate::placer`]) and batched
//! status writes (`records::combine`): each caller queues its member, then callers take
//! turns on a lock; whoever holds it and still has no answer takes the members waiting
//! at that moment and writes them together. So a batch is whatever arrived while the
//! previous one was being written, and nobody waits for a timer.

use crate::store::StoreError;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex};
use tokio_util::task::TaskTracker;

/// Wait for `answer`, taking turns with the other callers on `lock`. A turn that finds
/// the answer not yet given commits a batch: `take` picks it from the waiting members
/// and `commit` writes it and answers each member. The write runs on a task of
/// `batches`, holding the lock, under the caller's request deadline, so a caller that
/// goes away mid-write cannot abandon the other members. `lost` is the answer when
/// the batch task stopped before answering.
pub async fn wait_turn<G, T, B, Fut>(
    lock: &Arc<Mutex<G>>,
    batches: &TaskTracker,
    answer: &mut oneshot::Receiver<Result<T, StoreError>>,
    mut take: impl FnMut() -> B,
    mut commit: impl FnMut(B) -> Fut,
    lost: fn() -> StoreError,
) -> Result<T, StoreError>
where
    G: Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let guard = lock.clone().lock_owned().await;
        // Whoever held the lock before may have taken ours into its batch.
        match answer.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let work = commit(take());
        let deadline = crate::store::deadline();
        let job = batches.spawn(async move {
            let _guard = guard;
            match deadline {
                Some(d) => crate::store::within(d, work).await,
                None => work.await,
            }
        });
        if job.await.is_err() {
            return Err(lost());
        }
    }
}
