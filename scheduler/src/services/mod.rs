//! The service controller (leader only): keeps each service's replicas at `replicas`
//! copies of its current revision. Reconciles one service at a time, idempotently,
//! when its record is written (the API kicks it), when one of its replicas changes
//! (the cache's change broadcast), and for every service at the start of a term;
//! failures are retried with jittered backoff. Rollouts replace old-revision replicas
//! `parallelism` at a time ([`rollout`]); a scheduled service starts its runs when
//! they are due ([`jobs`]).

pub mod autoscale;
mod jobs;
pub mod replicas;
pub mod rollout;

use crate::context::Ctx;
use crate::store::StoreError;
use persys_proto::{keys, ClusterEvent, Service};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use replicas::{replicas_of, ReplicaView};

/// Longest pause before a failed reconcile is tried again.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often an unfinished rollout is looked at again without any change (a replica's
/// `minHealthySeconds` or `healthyDeadlineSeconds` passing is not an event).
pub const ROLLOUT_TICK: Duration = Duration::from_millis(500);

/// How often a service is looked at again while a restore is awaited.
const RESTORE_WAIT: Duration = Duration::from_secs(1);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// etcd.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handle to ask for services to be reconciled.
#[derive(Debug)]
pub struct ServiceQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    autoscaled: autoscale::Autoscaled,
}

impl Default for ServiceQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            autoscaled: autoscale::Autoscaled::default(),
        }
    }
}

impl ServiceQueue {
    /// Reconcile service `name` soon.
    pub fn enqueue(&self, name: &str) {
        let _ = self.tx.send(name.to_string());
    }

    /// The services the autoscaler looks at.
    pub fn autoscaled(&self) -> &autoscale::Autoscaled {
        &self.autoscaled
    }
}

/// What one reconcile asks for next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something changes.
    Done,
    /// Look again after this long (a rollout or a schedule waits on time).
    After(Duration),
}

fn retry_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_RETRY)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The controller loop of one leader term.
pub async fn run(ctx: Arc<Ctx>, term: CancellationToken) {
    let Some(mut rx) = ctx
        .services()
        .rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        tracing::error!("service controller started twice");
        return;
    };
    let mut changes = ctx.cache().subscribe();
    let tx = ctx.services().tx.clone();
    // Every service once: the term may start after changes no one reconciled.
    match ctx.store().list::<Service>(keys::SERVICES).await {
        Ok((all, _)) => all.into_iter().for_each(|(name, _)| {
            let _ = tx.send(name);
        }),
        Err(e) => {
            tracing::warn!(error = %e, "listing services failed; each is reconciled on its next change")
        }
    }
    let mut running: HashMap<String, bool> = HashMap::new(); // name → dirty
    let mut failures: HashMap<String, backon::ExponentialBackoff> = HashMap::new();
    let mut tasks: JoinSet<(String, Result<Next, ServiceError>)> = JoinSet::new();
    let mut timers: JoinSet<()> = JoinSet::new();
    let mut waiting: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            () = term.cancelled() => break,
            Some(name) = rx.recv() => {
                waiting.remove(&name);
                start(&ctx, &mut running, &mut tasks, name);
            }
            ev = changes.recv() => match ev {
                Ok(ClusterEvent::Workload { workload }) => {
                    if let Some(name) = &workload.service_id {
                        start(&ctx, &mut running, &mut tasks, name.clone());
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok((all, _)) = ctx.store().list::<Service>(keys::SERVICES).await {
                        for (name, _) in all {
                            start(&ctx, &mut running, &mut tasks, name);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((name, result)) = done else { continue };
                let dirty = running.remove(&name).unwrap_or(false);
                let delay = match result {
                    Ok(Next::Done) => {
                        failures.remove(&name);
                        None
                    }
                    Ok(Next::After(delay)) => {
                        failures.remove(&name);
                        Some(delay)
                    }
                    Err(e) => {
                        tracing::warn!(service = %name, error = %e, "reconciling the service failed; will retry");
                        Some(failures.entry(name.clone()).or_insert_with(retry_backoff).next().unwrap_or(MAX_RETRY))
                    }
                };
                if dirty {
                    start(&ctx, &mut running, &mut tasks, name);
                } else if let Some(delay) = delay {
                    if waiting.insert(name.clone()) {
                        let (tx, token) = (tx.clone(), term.clone());
                        timers.spawn(async move {
                            tokio::select! {
                                () = token.cancelled() => {}
                                () = tokio::time::sleep(delay) => { let _ = tx.send(name); }
                            }
                        });
                    }
                }
            }
            Some(_) = timers.join_next(), if !timers.is_empty() => {}
        }
    }
    tasks.shutdown().await;
    timers.shutdown().await;
    *ctx.services().rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
}

fn start(
    ctx: &Arc<Ctx>,
    running: &mut HashMap<String, bool>,
    tasks: &mut JoinSet<(String, Result<Next, ServiceError>)>,
    name: String,
) {
    if let Some(dirty) = running.get_mut(&name) {
        *dirty = true;
        return;
    }
    running.insert(name.clone(), false);
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let result = reconcile(&ctx, &name).await;
        (name, result)
    });
}

/// CAS-update the record of `service`, starting from the version a step read (stored
/// at `mod_revision`); `f` sees the current record on a lost race.
pub(crate) async fn update_service<F>(
    ctx: &Ctx,
    service: &Service,
    mod_revision: i64,
    f: F,
) -> Result<crate::store::Updated<Service>, StoreError>
where
    F: FnMut(&Service) -> Option<Service>,
{
    let seed = crate::store::Versioned {
        value: service.clone(),
        mod_revision,
    };
    ctx.store()
        .update_seeded(&keys::service(&service.name), Some(seed), f)
        .await
}

/// Bring service `name`'s replicas to what its record says.
pub async fn reconcile(ctx: &Arc<Ctx>, name: &str) -> Result<Next, ServiceError> {
    if ctx.restore_guard().keeps_orphans() {
        // A restore is under way or awaited: its replicas may not all be back yet.
        return Ok(Next::After(RESTORE_WAIT));
    }
    let Some(record) = ctx.store().get::<Service>(&keys::service(name)).await? else {
        ctx.services().autoscaled().note(name, false);
        // Deleted: its replicas go too.
        for w in replicas_of(ctx, name) {
            replicas::remove(ctx, &w.id).await?;
        }
        return Ok(Next::Done);
    };
    let service = record.value;
    ctx.services()
        .autoscaled()
        .note(name, service.autoscale.is_some());
    if let Some(job) = &service.job {
        return jobs::step(ctx, &service, job, record.mod_revision).await;
    }
    let view = ReplicaView::of(ctx, &service);
    rollout::step(ctx, &service, &view, record.mod_revision).await
}
