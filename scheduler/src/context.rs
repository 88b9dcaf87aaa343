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

/// Everything the scheduler's parts share. Held as `Arc<Ctx>`.
pub struct Ctx {
    /// Flags.
    pub config: Config,
    /// etcd.
    pub store: Store,
    /// In-memory view of workloads and nodes (read side).
    pub cache: Arc<Cache>,
    /// The only writer of records: etcd first, then the view.
    pub records: crate::records::Records,
    /// The single placer (serialises placement decisions).
    pub placer: Placer,
    /// Heartbeats in memory.
    pub liveness: Liveness,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Client for agents.
    pub agents: AgentClient,
    /// Queue of workloads whose desired state must be carried to their agent.
    pub dispatcher: Dispatcher,
    /// Nodes to reconcile now (the backstop, on demand).
    pub node_queue: crate::reconcile::NodeQueue,
    /// The cluster policy as this leader last read it.
    pub policy: crate::policy_cache::PolicyCache,
    /// Wakes the pending re-placement (capacity may have appeared).
    pub pending_kick: Notify,
    /// Cluster CA certificate (PEM), returned to registering agents.
    pub ca_pem: String,
    /// The CA, for signing agents' CSRs.
    pub ca: persys_certs::CertificateAuthority,
    /// Hash of the CA certificate (what join tokens carry).
    pub ca_hash: String,
    /// The key credential records in etcd are signed with.
    pub record_key: persys_certs::RecordKey,
    /// Failed joins per source address (guessing the join token is rate limited).
    pub join_failures: persys_certs::auth_failures::AuthFailures,
    /// Cancelled at shutdown (ends long-lived streams).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// This replica's part in the leader election (standalone unless set by `start`).
    pub leadership: crate::leader::Leadership,
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
        Self {
            liveness: Liveness::new(config.node_timeout()),
            placer: Placer::new(strategy),
            metrics: Metrics::new(),
            dispatcher: Dispatcher::new(),
            node_queue: crate::reconcile::NodeQueue::default(),
            pending_kick: Notify::new(),
            policy: Default::default(),
            ca_pem: pki.ca.cert_pem().to_string(),
            ca_hash: pki.ca.fingerprint(),
            record_key: pki.record_key(),
            join_failures: persys_certs::auth_failures::AuthFailures::new(
                config.join_failure_limit,
                std::time::Duration::from_millis(config.join_failure_window_ms),
            ),
            ca: pki.ca,
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
}
