//! persys node agent: joins the cluster, runs containers through Docker, follows their
//! events and reports their state, and serves the agent API over mTLS.
//!
//! - [`config`]: flags and their env twins
//! - [`host`]: facts about this machine
//! - [`join`]: registration with a join token and a locally made CSR
//! - [`client`]: calls to the scheduler (heartbeats, status pushes)
//! - [`endpoints`]: several scheduler replicas, with failover
//! - [`heartbeat`]: the liveness loop with free capacity
//! - [`runtime`]: the container engine behind a trait (Docker, fake)
//! - [`compose`]: Compose projects (docker-compose, git-compose) over the Docker API
//! - [`sim`]: many simulated nodes (fake runtime) in one process
//! - [`state`]: engine state → workload status
//! - [`supervisor`]: container operations with idempotence, fencing and ownership
//! - [`adopt`]: startup adoption of this node's containers
//! - [`events`]: the engine's event stream → status pushes
//! - [`report`]: buffered, retried status reports with a periodic full list
//! - [`api`]: the mTLS agent API
//! - [`metrics`]: Prometheus metrics

pub mod adopt;
pub mod api;
pub mod client;
pub mod compose;
pub mod config;
pub mod endpoints;
pub mod events;
pub mod heartbeat;
pub mod host;
pub mod join;
pub mod metrics;
pub mod renew;
pub mod report;
pub mod runtime;
pub mod sim;
pub mod state;
pub mod stats;
pub mod supervisor;

pub use config::{Cli, Command, Config, RuntimeKind, SimArgs};

use client::SchedulerClient;
use heartbeat::Capacity;
use join::Joiner;
use report::ReportHandle;
use runtime::docker::DockerRuntime;
use runtime::fake::FakeRuntime;
use runtime::{ContainerRuntime, RuntimeError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use supervisor::ledger::Ledger;
use supervisor::{Supervisor, SupervisorError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The container engine is unusable.
    #[error(transparent)]
    Docker(#[from] RuntimeError),
    /// Joining the cluster failed.
    #[error(transparent)]
    Join(#[from] join::JoinError),
    /// A listener or file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// TLS configuration from the node identity failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Startup container operations failed.
    #[error("adopting containers: {0}")]
    Adopt(#[from] SupervisorError),
    /// The flags ask for something impossible.
    #[error("{0}")]
    Usage(String),
    /// A simulated node's task panicked.
    #[error("a simulated node's task ended abnormally: {0}")]
    SimTask(String),
    /// Simulated nodes stopped with an error (the others ran on).
    #[error("{failed} simulated node(s) failed; the first, {node_id}: {source}")]
    SimNodes {
        /// How many failed.
        failed: usize,
        /// The first that failed.
        node_id: String,
        /// Why it stopped.
        source: Box<AgentError>,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

fn ensure_data_dir(dir: &PathBuf) -> Result<(), AgentError> {
    std::fs::create_dir_all(dir)
        .map_err(io_error(format!("creating data dir {}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // It holds the node's private key.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_error(format!("securing data dir {}", dir.display())))?;
    }
    Ok(())
}

/// Run the agent until `shutdown` is cancelled over the engine `--runtime` names:
/// connect to Docker (or make the in-memory engine), then [`run_with`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    match config.runtime {
        RuntimeKind::Docker => {
            let runtime = DockerRuntime::connect(config.docker_host.as_deref()).await?;
            let hooks = NodeHooks {
                compose: Some(runtime.clone()),
                ..NodeHooks::default()
            };
            run_with(config, Arc::new(runtime), hooks, shutdown).await
        }
        RuntimeKind::Fake => {
            let runtime = FakeRuntime::with_options(config.fake.options(0));
            run_with(config, Arc::new(runtime), NodeHooks::default(), shutdown).await
        }
    }
}

/// What a process running many nodes shares between them ([`sim`]); one agent uses
/// the default (nothing shared).
#[derive(Debug, Clone, Default)]
pub struct NodeHooks {
    /// Taken for the node's first registration, so that the nodes of one process do
    /// not all register at once.
    pub join_permits: Option<Arc<Semaphore>>,
    /// Host facts detected once for every node (else detected by the node).
    pub facts: Option<host::HostFacts>,
    /// Told the node id once the node has registered and serves its API.
    pub ready: Option<mpsc::UnboundedSender<String>>,
    /// The engine Compose projects run on (none: the node refuses them).
    pub compose: Option<DockerRuntime>,
}

/// Run one agent over `runtime` until `shutdown` is cancelled: bind the API, register,
/// adopt existing containers, then serve, heartbeat, follow events and report. On
/// shutdown the API stops accepting and drains, then the loops stop. Containers keep
/// running.
pub async fn run_with<R: ContainerRuntime>(
    config: Config,
    runtime: Arc<R>,
    hooks: NodeHooks,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    ensure_data_dir(&config.data_dir)?;
    let facts = match hooks.facts {
        Some(f) => f,
        None => host::HostFacts::detect(config.cpu, config.memory_mb),
    };
    let api_version = runtime.version().await?;
    tracing::debug!(runtime = %config.runtime, api_version = %api_version, "container engine answers");
    if config.runtime == RuntimeKind::Docker {
        tracing::info!(docker_api_version = %api_version, "connected to docker");
    }

    // Bound before registering so that the registered port is the real one (port 0 works).
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io_error(format!("binding {}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(io_error("reading the listen address"))?;

    let joiner = Arc::new(Joiner {
        bootstrap_urls: config.bootstrap_urls.clone(),
        token: config.join_token.clone().filter(|t| !t.trim().is_empty()),
        data_dir: config.data_dir.clone(),
        node_id: join::resolve_node_id(
            config.node_id.as_deref(),
            &config.data_dir,
            &facts.hostname,
        ),
        facts: facts.clone(),
        advertise: config.advertise_ip(),
        agent_port: local.port(),
        labels: config.labels.clone(),
    });
    let permit = match &hooks.join_permits {
        Some(permits) => tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = permits.clone().acquire_owned() => p.ok(),
        },
        None => None,
    };
    let identity = match joiner.join(&shutdown).await {
        Err(join::JoinError::Cancelled) => return Ok(()),
        other => other?,
    };
    drop(permit);
    let node_id = identity.node_id.clone();
    let server_tls =
        persys_certs::server_config_mtls(&identity.ca_pem, &identity.cert_pem, &identity.key_pem)
            .map_err(|e| AgentError::Tls(e.to_string()))?;
    metrics::global().set_certificates(&identity.cert_pem, &identity.ca_pem);
    // Renewals replace it for new connections (see `renew`).
    let (server_tls_tx, server_tls) = persys_certs::ServerTls::reloadable(server_tls);
    let client = Arc::new(
        SchedulerClient::new(&config.scheduler_urls, &identity)
            .map_err(|e| AgentError::Tls(e.to_string()))?,
    );

    let (reports, inbox) = ReportHandle::channel();
    // The fake engine's containers end with the process; so would their stop intents.
    let ledger = Ledger::open(
        (config.runtime == RuntimeKind::Docker).then(|| config.file("stopped-containers.json")),
    );
    let mut supervisor = Supervisor::new(runtime, node_id.clone(), ledger, reports.clone());
    if let Some(engine) = hooks.compose {
        let engine = compose::engine::ComposeEngine::new(engine, node_id.clone());
        supervisor = supervisor.with_projects(Arc::new(compose::Projects::new(
            engine,
            node_id.clone(),
            &config.data_dir,
            reports,
        )));
    }
    let supervisor = Arc::new(supervisor);
    adopt::adopt(&supervisor).await?;
    if let Some(projects) = supervisor.projects() {
        // Starts cut short by a restart go on; their tasks are the projects' own and
        // are not awaited at shutdown (a build may outlast it; the next start resumes).
        projects.resume().await;
    }
    // Probing resumes for what runs; new starts are picked up from the event stream.
    supervisor.resume_health_checks().await;

    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(
        report::run_reporter(
            inbox,
            client.clone(),
            supervisor.clone(),
            Duration::from_millis(config.full_report_interval_ms.max(1000)),
            background.clone(),
        )
        .in_current_span(),
    );
    tasks.spawn(events::follow_events(supervisor.clone(), background.clone()).in_current_span());
    if config.usage_interval_ms > 0 {
        tasks.spawn(
            stats::run_sampling(
                supervisor.clone(),
                client.clone(),
                Duration::from_millis(config.usage_interval_ms.max(100)),
                background.clone(),
            )
            .in_current_span(),
        );
    }
    tasks.spawn(
        renew::run(
            renew::Renewal {
                joiner: joiner.clone(),
                client: client.clone(),
                server_tls: server_tls_tx,
                on_renewed: Box::new(|next| {
                    metrics::global().set_certificates(&next.cert_pem, &next.ca_pem)
                }),
            },
            identity.clone(),
            background.clone(),
        )
        .in_current_span(),
    );
    tasks.spawn(
        heartbeat::run_heartbeats(
            supervisor.clone(),
            client,
            joiner,
            Capacity {
                cpu_cores: facts.cpu_cores,
                memory_mb: facts.memory_mb,
            },
            identity.heartbeat_interval,
            background.clone(),
        )
        .in_current_span(),
    );

    let app = api::router(api::AppState {
        supervisor: supervisor.clone(),
        stop_timeout: Duration::from_secs(config.stop_timeout_secs),
    });
    let options = persys_certs::ServeOptions {
        limits: config
            .listener
            .limits(persys_certs::limits::DEFAULT_MAX_CONNECTIONS_AGENT),
        metrics: metrics::global().connections.listener("api"),
    };
    let mut server = tokio::spawn(
        persys_certs::serve_tls_with(listener, server_tls, app, shutdown.clone(), options)
            .in_current_span(),
    );
    tracing::info!(node_id = %node_id, listen = %local, advertise = %config.advertise_ip(), "ready");
    if let Some(ready) = &hooks.ready {
        // The receiver goes away only when the simulation is over.
        let _ = ready.send(node_id.clone());
    }

    let served = tokio::select! {
        r = &mut server => r,
        _ = shutdown.cancelled() => server.await,
    };
    tracing::info!(
        "shutting down: api drained, stopping background loops (containers keep running)"
    );
    background.cancel();
    tasks.close();
    tasks.wait().await;
    supervisor.health_monitors().shutdown().await;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AgentError::Io {
            what: "serving the agent api".into(),
            source: e,
        }),
        Err(e) => Err(AgentError::Io {
            what: "serving the agent api".into(),
            source: std::io::Error::other(e),
        }),
    }
}
