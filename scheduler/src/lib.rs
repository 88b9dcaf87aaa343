//! persys scheduler: the API, placement, the etcd store, dispatch to agents, liveness
//! and reconciliation. [`run`] is the whole service; `main.rs` only parses flags.
//!
//! - [`config`]: flags. [`pki`]: CA, certificates, join token; [`trust`]: what the
//!   running scheduler signs and checks with. [`store`]: etcd. [`context`]: the parts
//!   every handler and loop shares, each behind an accessor.
//! - [`records`]: the only writer of workload and node records (etcd first, then the
//!   view); [`cache`]: that view, fed by the etcd watch, with indexes, read by all.
//! - [`placement`]: pure placement (and its explanation); [`placer`]: serialised,
//!   batched place-and-store; [`group_commit`]: the batching loop it shares with the
//!   records' status writes.
//! - [`api`]: HTTP routes. [`dispatch`]: desired state to agents. [`liveness`]:
//!   heartbeats. [`pending`]: re-placement. [`reconcile`]: the backstop.
//! - [`control`]: record changes shared by all of them. [`status`]: pure transitions.
//! - [`leader`]: election among replicas (only the leader runs the loops);
//!   [`forward`]: followers forward writes to the leader. [`authz`]: the role table and
//!   [`error`]: JSON errors, shared by the API and the forwarding layer.

pub mod admission;
pub mod agent_client;
pub mod api;
pub mod authz;
pub mod config;
pub mod context;
pub mod control;
pub mod dispatch;
pub mod dns;
pub mod error;
pub mod forward;
pub mod group_commit;
pub mod leader;
pub mod liveness;
pub mod metrics;
pub mod moves;
pub mod outage;
pub mod pending;
pub mod pki;
pub mod placement;
pub mod placer;
pub mod policy_cache;
pub mod reconcile;
pub mod records;
pub mod renew;
pub mod services;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod trust;
pub mod usage;

/// The in-memory view (read side of [`records`]).
pub use records::cache;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod ha_tests;
#[cfg(test)]
mod move_tests;
#[cfg(test)]
pub(crate) mod testutil;

use crate::cache::Cache;
use crate::config::Config;
use crate::context::Ctx;
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long start-up waits for etcd before giving up.
const ETCD_STARTUP_WAIT: Duration = Duration::from_secs(10);
/// How long start-up waits to learn who leads (normally one etcd round trip).
const LEADER_STARTUP_WAIT: Duration = Duration::from_secs(3);

/// Why the scheduler could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The PKI could not be set up.
    #[error("pki: {0}")]
    Pki(#[from] pki::PkiError),
    /// etcd could not be reached or read.
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// Why.
        source: StoreError,
    },
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] persys_certs::CertError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A server failed while running.
    #[error("server on {addr} failed: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started scheduler.
pub struct Running {
    /// Bound address of the mTLS API.
    pub api_addr: SocketAddr,
    /// Bound address of the bootstrap port.
    pub bootstrap_addr: SocketAddr,
    /// Shared state.
    pub ctx: Arc<Ctx>,
    tracker: TaskTracker,
    failed: Arc<tokio::sync::Mutex<Option<RunError>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("api_addr", &self.api_addr)
            .field("bootstrap_addr", &self.bootstrap_addr)
            .finish_non_exhaustive()
    }
}

async fn wait_for_etcd(store: &Store, endpoints: &str) -> Result<(), RunError> {
    let deadline = tokio::time::Instant::now() + ETCD_STARTUP_WAIT;
    loop {
        match store.ping().await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {
                tracing::info!(%endpoints, error = %e, "waiting for etcd");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(source) => {
                return Err(RunError::Etcd {
                    endpoints: endpoints.to_string(),
                    source,
                })
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Start everything: PKI, etcd (waiting a few seconds for it), the cache, both
/// listeners and every loop. Returns once serving; logs `ready`.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, RunError> {
    let strategy: placement::Strategy = config
        .placement
        .parse()
        .map_err(|e: placement::ParseStrategyError| RunError::Config(e.to_string()))?;
    if config.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
        return Err(RunError::Config("--etcd-endpoints is empty".into()));
    }
    let ca_existed = config.data_dir.join(persys_certs::ca::CA_KEY_FILE).exists();
    let mut pki = pki::Pki::load_or_create(
        &config.data_dir,
        &config.tls_sans,
        config.join_token.as_deref(),
    )?;
    // Short-lived, renewed by `renew` (the one on disk is for tools of the host).
    let own = pki
        .ca
        .issue_valid_for(
            &persys_certs::Identity::scheduler(),
            &pki::server_sans(&config.tls_sans),
            persys_certs::issue::Usage::Dual,
            config.cert_validity,
        )
        .map_err(|e| RunError::Config(format!("issuing the scheduler certificate: {e}")))?;
    pki.cert_pem = own.cert_pem;
    pki.key_pem = own.key_pem;
    let endpoints = config.etcd_endpoints.join(",");
    let etcd_err = |source| RunError::Etcd {
        endpoints: endpoints.clone(),
        source,
    };
    let access = config
        .etcd_access()
        .map_err(|e| RunError::Config(format!("etcd: {e}")))?;
    let store = Store::connect_with(&config.etcd_endpoints, &access)
        .await
        .map_err(etcd_err)?;
    wait_for_etcd(&store, &endpoints).await?;
    pki.publish_token(&store).await?;
    let cache = Arc::new(Cache::new());
    let revision = cache.load(&store).await.map_err(etcd_err)?;

    let api_tls = persys_certs::server_config_mtls(pki.ca.cert_pem(), &pki.cert_pem, &pki.key_pem)?;
    let bootstrap_tls =
        persys_certs::server_config_bootstrap(pki.ca.cert_pem(), &pki.cert_pem, &pki.key_pem)?;
    // Renewals send new configurations to both listeners (see `renew`).
    let (api_tls_tx, api_tls) = persys_certs::ServerTls::reloadable(api_tls);
    let (bootstrap_tls_tx, bootstrap_tls) = persys_certs::ServerTls::reloadable(bootstrap_tls);
    let own_cert_pem = pki.cert_pem.clone();
    let agents = agent_client::AgentClient::new(pki.ca.cert_pem(), &pki.cert_pem, &pki.key_pem)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let api_listener = bind(config.listen).await?;
    let bootstrap_listener = bind(config.bootstrap_listen).await?;
    let api_addr = api_listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.listen,
        source,
    })?;
    let bootstrap_addr = bootstrap_listener
        .local_addr()
        .map_err(|source| RunError::Bind {
            addr: config.bootstrap_listen,
            source,
        })?;

    let me = leader::identity(
        config.replica_id.as_deref(),
        config.advertise_url.as_deref(),
        config.advertise_bootstrap_url.as_deref(),
        api_addr,
        bootstrap_addr,
    )
    .map_err(RunError::Config)?;
    let forwarder = forward::Forwarder::new(pki.ca.cert_pem(), &pki.cert_pem, &pki.key_pem)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let mut ctx = Ctx::new(
        config,
        store.clone(),
        cache.clone(),
        pki,
        agents,
        strategy,
        shutdown.clone(),
    );
    ctx.set_leadership(leader::Leadership::replica(me, forwarder));
    ctx.restore_guard().arm_if(
        ca_existed,
        cache.counts().total == 0 && cache.nodes().is_empty(),
    );
    let ctx = Arc::new(ctx);

    let tracker = TaskTracker::new();
    tracker.spawn(renew::run(
        ctx.clone(),
        renew::Listeners {
            api: api_tls_tx,
            bootstrap: bootstrap_tls_tx,
        },
        own_cert_pem,
        shutdown.clone(),
    ));
    let failed = Arc::new(tokio::sync::Mutex::new(None));
    {
        let (cache, store, token) = (cache.clone(), store.clone(), shutdown.clone());
        tracker.spawn(async move { cache.run(store, revision, token).await });
    }
    // Dispatch, liveness, pending and reconcile run in the leader's terms only. At
    // shutdown the leader keeps its term until the servers have drained, so that
    // in-flight requests finish; then it stops the loops and resigns.
    let election = CancellationToken::new();
    let servers = TaskTracker::new();
    tracker.spawn(leader::run(ctx.clone(), election.clone()));
    let limits = ctx
        .config()
        .listener
        .limits(persys_certs::limits::DEFAULT_MAX_CONNECTIONS_SCHEDULER);
    for (listener, tls, router, addr, name) in [
        (
            api_listener,
            api_tls,
            api::router(ctx.clone()),
            api_addr,
            "api",
        ),
        (
            bootstrap_listener,
            bootstrap_tls,
            api::bootstrap_router(ctx.clone()),
            bootstrap_addr,
            "bootstrap",
        ),
    ] {
        let (token, failed) = (shutdown.clone(), failed.clone());
        let options = persys_certs::ServeOptions {
            limits,
            metrics: ctx.metrics().connections.listener(name),
        };
        servers.spawn(async move {
            if let Err(source) =
                persys_certs::serve_tls_with(listener, tls, router, token.clone(), options).await
            {
                *failed.lock().await = Some(RunError::Serve { addr, source });
                // One listener down means the service is broken: stop everything.
                token.cancel();
            }
        });
    }
    servers.close();
    {
        let token = shutdown.clone();
        tracker.spawn(async move {
            token.cancelled().await;
            servers.wait().await;
            election.cancel();
        });
    }
    tracker.close();
    let mut role = ctx.leadership().subscribe();
    // The borrow is dropped at once: holding it would block the election's writer.
    let known = tokio::time::timeout(LEADER_STARTUP_WAIT, async {
        role.wait_for(|r| !matches!(r, leader::Role::Follower { leader: None }))
            .await
            .map(|_| ())
    })
    .await;
    if known.is_err() {
        tracing::warn!("no scheduler leader known yet; writes answer 503 until one is elected");
    }
    let me = ctx.leadership().me();
    tracing::info!(replica = %me.id, url = %me.url, leader = ctx.leadership().is_leader(), "leader election joined");
    tracing::info!(api = %api_addr, bootstrap = %bootstrap_addr, nodes = cache.nodes().len(), workloads = cache.counts().total, "ready");
    Ok(Running {
        api_addr,
        bootstrap_addr,
        ctx,
        tracker,
        failed,
    })
}

impl Running {
    /// Wait until every task has stopped (after `shutdown` is cancelled); the error of
    /// a server that failed, if any.
    pub async fn wait(self) -> Result<(), RunError> {
        self.tracker.wait().await;
        match self.failed.lock().await.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Run the scheduler until `shutdown` is cancelled: stop accepting, finish in-flight
/// requests, stop the loops, return.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let running = start(config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    let result = running.wait().await;
    tracing::info!("stopped");
    result
}
