//! One replica's rounds: campaign, then lead a term (loops running, lease renewed,
//! key watched) or follow the leader until its key goes away.

use super::Role;
use crate::context::Ctx;
use crate::store::{Campaign, LeaderEvent, LeaderWatch, LeaseRenewer, Store, StoreError};
use persys_proto::LeaderRecord;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// TTL of the leader's lease (etcd's minimum with default timing): a killed leader is
/// replaced about this long after its last renewal.
pub const LEASE_TTL_SECS: i64 = 2;
/// How often the leader renews its lease. Renewals are pipelined, so the lease's
/// expiry trails the last renewal etcd has read by at most this much: an etcd or
/// scheduler stall of up to `LEASE_TTL - RENEW_EVERY - EXPIRY_MARGIN` costs no term.
pub const RENEW_EVERY: Duration = Duration::from_millis(200);
/// The leader steps down this long before the earliest moment etcd may expire its
/// lease. That moment is known exactly from etcd's answers: a renewal sent at `t` and
/// answered with TTL `ttl` expires no earlier than `t + ttl`, since etcd starts the
/// TTL when it reads the request. The margin covers clock-rate differences and our own
/// wake-up latency.
pub const EXPIRY_MARGIN: Duration = Duration::from_millis(150);
/// Re-opening a keep-alive stream or the key watch must answer within this.
const RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// Renewals queued without an answer at most (etcd is not answering beyond this).
const MAX_IN_FLIGHT: usize = 32;
/// A follower re-reads the leader key this often, in case its watch went quiet.
const FOLLOW_RESYNC: Duration = Duration::from_secs(5);
/// Pause before campaigning again after an etcd error.
const RETRY: Duration = Duration::from_millis(250);

/// Start the leader-only loops for one term; they stop when `term` is cancelled.
fn spawn_loops(ctx: &Arc<Ctx>, tracker: &TaskTracker, term: &CancellationToken) {
    tracker.spawn(crate::dispatch::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::liveness::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::pending::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::reconcile::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::services::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::services::autoscale::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::snapshot::periodic::run(ctx.clone(), term.clone()));
    tracker.spawn(crate::dns::controller::run(ctx.clone(), term.clone()));
}

/// Take part in the election until `shutdown`: campaign, lead a term or follow the
/// leader, and again. On shutdown a leader stops its loops, then resigns.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let store = ctx.store().clone();
    store.fence_all();
    // An etcd outage is logged once, not at every retry.
    let mut failing = false;
    // Whether a round has reached etcd yet (reclaiming is for the first one only).
    let mut campaigned = false;
    // The last term this replica saw (won or followed): a new one is a leader change.
    let mut seen_term = None;
    while !shutdown.is_cancelled() {
        // Not raced against shutdown: a won key must be resigned, which `lead` does.
        match campaign(&ctx, !campaigned).await {
            Ok(Round::Won(term)) => {
                campaigned = true;
                recovered(&mut failing);
                saw_term(&ctx, &mut seen_term, term.term);
                lead(&ctx, *term, &shutdown).await
            }
            Ok(Round::Follow {
                leader,
                term,
                revision,
            }) => {
                campaigned = true;
                recovered(&mut failing);
                saw_term(&ctx, &mut seen_term, term);
                follow(&ctx, leader, term, revision, &shutdown).await
            }
            Ok(Round::Again) => {}
            Err(e) => {
                ctx.leadership().set(Role::Follower { leader: None });
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "leader election: etcd failed; retrying until it answers");
                } else {
                    tracing::debug!(error = %e, "leader election: etcd still failing");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// A won term: its lease, the lease's keep-alive, the term and the earliest moment
/// etcd may expire the lease.
struct WonTerm {
    lease: i64,
    renewer: LeaseRenewer,
    term: i64,
    expires: Instant,
}

enum Round {
    Won(Box<WonTerm>),
    Follow {
        leader: Option<LeaderRecord>,
        term: i64,
        revision: i64,
    },
    Again,
}

/// Count a leader change when `term` is not the one this replica saw last.
fn saw_term(ctx: &Ctx, seen: &mut Option<i64>, term: i64) {
    if seen.replace(term) != Some(term) {
        ctx.metrics().leader_changes.inc();
    }
}

fn recovered(failing: &mut bool) {
    if std::mem::replace(failing, false) {
        tracing::info!("leader election: etcd answers again");
    }
}

/// Revoke a lease we no longer need, without waiting (it expires anyway).
fn drop_lease(store: &Store, lease: i64) {
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.revoke_lease(lease).await {
            tracing::debug!(lease, error = %e, "revoking an unused lease failed; it expires");
        }
    });
}

/// One campaign. With `reclaim` (this process's first round), a key held under our own
/// replica id is taken back at once.
async fn campaign(ctx: &Ctx, reclaim: bool) -> Result<Round, StoreError> {
    let store = &ctx.store();
    // etcd counts the TTL from when it handled the grant or renewal, after this.
    let sent = Instant::now();
    let lease = store.grant_lease(LEASE_TTL_SECS).await?;
    let renewer = match store.keep_lease(lease).await {
        Ok(r) => r,
        Err(e) => {
            drop_lease(store, lease);
            return Err(e);
        }
    };
    let outcome = match store.campaign(ctx.leadership().me(), lease).await {
        Ok(o) => o,
        Err(e) => {
            drop_lease(store, lease);
            return Err(e);
        }
    };
    match outcome {
        Campaign::Won { term } => Ok(Round::Won(Box::new(WonTerm {
            lease,
            renewer,
            term,
            expires: sent + ttl(LEASE_TTL_SECS),
        }))),
        Campaign::Held {
            holder,
            term,
            lease: holder_lease,
            revision,
        } => {
            drop_lease(store, lease);
            let mine = holder
                .as_ref()
                .is_some_and(|h| h.id == ctx.leadership().me().id);
            if mine && reclaim && term > 0 {
                // Our own id holds the key at our start: an earlier run of this replica,
                // killed before its lease ran out. Ids are unique per replica, so
                // nobody else acts on it: take it back now instead of waiting for the
                // lease. Only at start: two live replicas wrongly sharing an id then
                // settle (the later one leads) instead of taking it from each other.
                tracing::info!(
                    term,
                    "leader key held by an earlier run of this replica; reclaiming it"
                );
                store.resign(term).await?;
                drop_lease(store, holder_lease);
                return Ok(Round::Again);
            }
            if term == 0 {
                return Err(StoreError::Etcd(
                    "the leader key was neither created nor readable".into(),
                ));
            }
            Ok(Round::Follow {
                leader: holder,
                term,
                revision,
            })
        }
    }
}

/// Follow the leader of `term` until its key goes away (or the view may be stale).
async fn follow(
    ctx: &Ctx,
    leader: Option<LeaderRecord>,
    term: i64,
    revision: i64,
    shutdown: &CancellationToken,
) {
    if ctx.leadership().leader() != leader {
        tracing::info!(leader = ?leader.as_ref().map(|l| &l.id), term, "following");
    }
    ctx.leadership().set(Role::Follower { leader });
    ctx.metrics().is_leader.set(0);
    let mut watch = match ctx.store().watch_leader(revision + 1).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the leader key; campaigning again");
            tokio::time::sleep(RETRY).await;
            return;
        }
    };
    let mut resync = tokio::time::interval_at(Instant::now() + FOLLOW_RESYNC, FOLLOW_RESYNC);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            batch = watch.next() => match batch {
                Ok(Some(events)) => {
                    for ev in events {
                        match ev {
                            LeaderEvent::Deleted => return,
                            LeaderEvent::Put { holder, term: t } => {
                                if t != term {
                                    return;
                                }
                                ctx.leadership().set(Role::Follower { leader: holder });
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    // Reconnects through a fresh campaign, which reads the key again.
                    tokio::time::sleep(RETRY).await;
                    return;
                }
            },
            _ = resync.tick() => {
                if !matches!(ctx.store().leader_term().await, Ok(Some(t)) if t == term) {
                    return;
                }
            }
        }
    }
}

/// Why a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    LeaseLost,
    CannotRenew,
    KeyChanged,
    CacheLoad,
}

/// Lead the term `term` until it ends; then stop the loops and give the key up.
async fn lead(ctx: &Arc<Ctx>, won: WonTerm, shutdown: &CancellationToken) {
    let won_at = Instant::now();
    let (lease, term) = (won.lease, won.term);
    let store = ctx.store().clone();
    store.fence_to_term(term);
    let loops = TaskTracker::new();
    let term_token = shutdown.child_token();
    // Start from everything the previous leader wrote, not from what the watch has
    // delivered so far.
    let ended = match ctx.cache().load(&store).await {
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the cluster state for a new term");
            Ended::CacheLoad
        }
        Ok(_) => {
            spawn_loops(ctx, &loops, &term_token);
            ctx.leadership().set(Role::Leader { term });
            ctx.metrics().is_leader.set(1);
            tracing::info!(
                term,
                elapsed_ms = won_at.elapsed().as_millis() as u64,
                "became leader; loops started"
            );
            keep_term(&store, won, shutdown).await
        }
    };
    // Stop acting first: no write of this term may land after this point.
    store.fence_all();
    term_token.cancel();
    ctx.leadership().set(Role::Follower { leader: None });
    ctx.metrics().is_leader.set(0);
    loops.close();
    loops.wait().await;
    if ended == Ended::Shutdown {
        let _ = timeout(RENEW_TIMEOUT, store.resign(term)).await;
        tracing::info!(term, "resigned leadership");
    } else {
        tracing::warn!(term, reason = ?ended, "leadership lost; loops stopped");
    }
    // Lets another replica take over at once rather than after the TTL.
    let _ = timeout(RENEW_TIMEOUT, store.revoke_lease(lease)).await;
}

fn ttl(secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Renew the lease and watch the key until the term ends: the key changes, etcd says
/// the lease is gone, or the lease may have expired (no answer soon enough). Slow
/// answers alone end nothing.
async fn keep_term(store: &Store, won: WonTerm, shutdown: &CancellationToken) -> Ended {
    let WonTerm {
        lease,
        renewer,
        term,
        mut expires,
    } = won;
    let mut renewer = Some(renewer);
    // When each renewal still unanswered was sent, oldest first.
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut watch: Option<LeaderWatch> = None;
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step_down_at = expires.checked_sub(EXPIRY_MARGIN).unwrap_or(expires);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ended::Shutdown,
            _ = tokio::time::sleep_until(step_down_at) => return Ended::CannotRenew,
            answer = next_answer(&mut renewer) => match answer {
                Ok(ttl_secs) if ttl_secs > 0 => {
                    if let Some(sent) = in_flight.pop_front() {
                        expires = expires.max(sent + ttl(ttl_secs));
                        if let Some(r) = &renewer {
                            r.answered_after(sent.elapsed());
                        }
                    }
                }
                Ok(_) => return Ended::LeaseLost,
                Err(e) => {
                    tracing::debug!(error = %e, "lease keep-alive stream failed; re-opening it");
                    renewer = None;
                    in_flight.clear();
                }
            },
            batch = next_leader_event(&mut watch) => match batch {
                Ok(Some(events)) => {
                    let lost = events.iter().any(|ev| match ev {
                        LeaderEvent::Deleted => true,
                        LeaderEvent::Put { term: t, .. } => *t != term,
                    });
                    if lost {
                        return Ended::KeyChanged;
                    }
                }
                // Re-opened on the next tick; the lease still guards the term.
                Ok(None) | Err(_) => watch = None,
            },
            _ = tick.tick() => {
                let bound = RENEW_TIMEOUT.min(step_down_at.saturating_duration_since(Instant::now()));
                match renewer.as_mut() {
                    Some(r) if in_flight.len() < MAX_IN_FLIGHT => {
                        let sent = Instant::now();
                        match r.send().await {
                            Ok(()) => in_flight.push_back(sent),
                            Err(e) => {
                                tracing::debug!(error = %e, "queueing a lease renewal failed");
                                renewer = None;
                                in_flight.clear();
                            }
                        }
                    }
                    // etcd has not answered the queued ones; the expiry decides.
                    Some(_) => {}
                    None => {
                        let sent = Instant::now();
                        match timeout(bound, store.keep_lease(lease)).await {
                            // Opening the stream renews once; etcd refuses an expired lease.
                            Ok(Ok(r)) => {
                                renewer = Some(r);
                                expires = expires.max(sent + ttl(LEASE_TTL_SECS));
                            }
                            Ok(Err(StoreError::Etcd(e))) if e.contains("lease not found") => {
                                return Ended::LeaseLost
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "re-opening the lease keep-alive failed"),
                            Err(_) => tracing::debug!("re-opening the lease keep-alive timed out"),
                        }
                    }
                }
                if watch.is_none() {
                    watch = timeout(bound, store.watch_leader(term)).await.ok().and_then(Result::ok);
                }
            }
        }
    }
}

async fn next_answer(renewer: &mut Option<LeaseRenewer>) -> Result<i64, StoreError> {
    match renewer {
        Some(r) => r.answer().await,
        None => std::future::pending().await,
    }
}

async fn next_leader_event(
    watch: &mut Option<LeaderWatch>,
) -> Result<Option<Vec<LeaderEvent>>, StoreError> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_of_one_and_a_half_seconds_fits_in_the_lease() {
        let lease = Duration::from_secs(LEASE_TTL_SECS as u64);
        let rides_through = lease - RENEW_EVERY - EXPIRY_MARGIN;
        assert!(
            rides_through >= Duration::from_millis(1500),
            "{rides_through:?}"
        );
        assert!(EXPIRY_MARGIN >= Duration::from_millis(100));
    }
}
