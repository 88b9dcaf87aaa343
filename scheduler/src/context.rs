//! The shared state every handler and loop works with.

use crate::agent_client::AgentClient;
use crate::cache::Cache;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::placer::Placer;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::Notify;

/// Everything the scheduler's parts share. Held as `Arc<Ctx>`; each part is reached
/// through its accessor, so what a handler may touch is what the parts' own methods
/// allow (e.g. records are written only through [`crate::records::Records`]).
pub struct Ctx {
    /// Flags.
    config: Config,
    /// etcd (reads; writes go through [`Ctx::records`]).
    store: Store,
    /// In-memory view of workloads and nodes (read side).
    cache: Arc<Cache>,
    /// The only writer of records: etcd first, then the view.
    records: crate::records::Records,
    /// The single placer (serialises placement decisions).
    placer: Placer,
    /// Heartbeats in memory.
    liveness: Liveness,
    /// What measured workloads use (leader memory, from the agents' usage reports).
    usage: crate::usage::UsageStore,
    /// Keeps nodes' containers while an emptied etcd awaits a restore.
    restore_guard: crate::snapshot::guard::RestoreGuard,
    /// Prometheus metrics.
    metrics: Metrics,
    /// Client for agents.
    agents: AgentClient,
    /// Queue of workloads whose desired state must be carried to their agent.
    dispatcher: Dispatcher,
    /// Nodes to reconcile now (the backstop, on demand).
    node_queue: crate::reconcile::NodeQueue,
    /// The cluster policy as this leader last read it.
    policy: crate::policy_cache::PolicyCache,
    /// The CA, the record key and the join limiter.
    trust: crate::trust::Trust,
    /// Cancelled at shutdown (ends long-lived streams).
    shutdown: tokio_util::sync::CancellationToken,
    /// This replica's part in the leader election (standalone unless set by `start`).
    leadership: crate::leader::Leadership,
    /// Services to reconcile (the service controller's queue).
    services: crate::services::ServiceQueue,
    /// Wakes the pending re-placement (capacity may have appeared).
    pending_kick: Notify,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

impl Ctx {
    /// Assemble the shared state from its parts.
    pub fn new(
        config: Config,
        store: Store,
        cache: Arc<Cache>,
        pki: crate::pki::Pki,
        agents: AgentClient,
        strategy: crate::placement::Strategy,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let metrics = Metrics::new();
        metrics.register_all(store.metrics().collectors());
        metrics.set_serving_certificate(&pki.cert_pem);
        metrics.set_ca_certificate(pki.ca.cert_pem());
        Self {
            liveness: Liveness::new(config.node_timeout()),
            usage: crate::usage::UsageStore::default(),
            restore_guard: Default::default(),
            placer: Placer::new(strategy),
            metrics,
            dispatcher: Dispatcher::new(),
            node_queue: crate::reconcile::NodeQueue::default(),
            pending_kick: Notify::new(),
            services: crate::services::ServiceQueue::default(),
            policy: Default::default(),
            trust: crate::trust::Trust::new(
                pki,
                persys_certs::auth_failures::AuthFailures::new(
                    config.join_failure_limit,
                    std::time::Duration::from_millis(config.join_failure_window_ms),
                ),
            ),
            records: crate::records::Records::new(store.clone(), cache.clone()),
            config,
            store,
            cache,
            agents,
            shutdown,
            leadership: crate::leader::Leadership::standalone(),
        }
    }

    /// Ask the pending re-placement to run soon.
    pub fn kick_pending(&self) {
        self.pending_kick.notify_one();
    }

    /// The service controller's queue.
    pub fn services(&self) -> &crate::services::ServiceQueue {
        &self.services
    }

    /// Resolves once [`Ctx::kick_pending`] was called (the pending loop's wake-up).
    pub async fn pending_kicked(&self) {
        self.pending_kick.notified().await;
    }

    /// Take part in a leader election instead of standing alone (before sharing).
    pub fn set_leadership(&mut self, leadership: crate::leader::Leadership) {
        self.leadership = leadership;
    }

    /// Flags.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// etcd (reads; writes go through [`Ctx::records`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// In-memory view of workloads and nodes (read side).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The only writer of records: etcd first, then the view.
    pub fn records(&self) -> &crate::records::Records {
        &self.records
    }

    /// The single placer (serialises placement decisions).
    pub fn placer(&self) -> &Placer {
        &self.placer
    }

    /// Heartbeats in memory.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// What measured workloads use (the agents' usage reports).
    pub fn usage(&self) -> &crate::usage::UsageStore {
        &self.usage
    }

    /// Whether containers without a record are kept (an emptied etcd awaits a
    /// restore).
    pub fn restore_guard(&self) -> &crate::snapshot::guard::RestoreGuard {
        &self.restore_guard
    }

    /// Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Client for agents.
    pub fn agents(&self) -> &AgentClient {
        &self.agents
    }

    /// Queue of workloads whose desired state must be carried to their agent.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Nodes to reconcile now (the backstop, on demand).
    pub fn node_queue(&self) -> &crate::reconcile::NodeQueue {
        &self.node_queue
    }

    /// The cluster policy as this leader last read it.
    pub fn policy(&self) -> &crate::policy_cache::PolicyCache {
        &self.policy
    }

    /// The CA, the record key and the join limiter.
    pub fn trust(&self) -> &crate::trust::Trust {
        &self.trust
    }

    /// Cancelled at shutdown (ends long-lived streams).
    pub fn shutdown(&self) -> &tokio_util::sync::CancellationToken {
        &self.shutdown
    }

    /// This replica's part in the leader election (standalone unless set by `start`).
    pub fn leadership(&self) -> &crate::leader::Leadership {
        &self.leadership
    }
}
