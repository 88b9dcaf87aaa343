//! persys DNS responder: answers the cluster's DNS records, which the scheduler keeps
//! in etcd in the format of CoreDNS's etcd plugin (skydns, see `persys_proto::dns`),
//! so that `dig @<persys-dns> web.cluster.local.dev` finds a service's replicas
//! without CoreDNS. [`run`] is the whole service; `main.rs` only parses flags.
//!
//! - Flags: [`config`]. Errors: [`error`].
//! - The in-memory zone, records by key: [`zone`]; kept current with one etcd list
//!   and a watch from its revision by [`sync`].
//! - The answer to one question (A, AAAA, SRV, SOA, NS; NXDOMAIN and REFUSED), pure:
//!   [`resolve`]; the hickory request handler around it: [`handler`].
//! - UDP and TCP listeners: [`serve`]; Prometheus counters and `/metrics`: [`metrics`].

pub mod config;
pub mod error;
pub mod handler;
pub mod metrics;
pub mod resolve;
pub mod serve;
pub mod sync;
pub mod zone;

pub use config::Config;
pub use error::DnsError;

use etcd_client::{Client, ConnectOptions};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// etcd connection timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// etcd request timeout (a list page).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings notice a dead etcd under an idle watch stream.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Serve DNS until `shutdown`: bind the listeners (and write `--addr-file`), keep the
/// zone current from etcd, answer from it. A zone not loaded yet answers SERVFAIL; an
/// unreachable etcd is retried for ever (the last zone keeps answering meanwhile).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DnsError> {
    let domain = config.zone();
    let resolver =
        resolve::Resolver::new(&domain).ok_or_else(|| DnsError::Domain(config.domain.clone()))?;
    let access = config.etcd_access()?;
    let metrics = metrics::Metrics::new();
    let zone = zone::SharedZone::new(&domain);

    let listeners = serve::bind(config.listen).await?;
    let addr = listeners.addr;
    let metrics_listener = match config.metrics_listen {
        Some(a) => Some(metrics::bind(a).await.map_err(|source| DnsError::Bind {
            addr: a.to_string(),
            source,
        })?),
        None => None,
    };

    let Some(client) = connect(&config.etcd_endpoints, &access, &shutdown).await? else {
        return Ok(());
    };
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(sync::run(
        client,
        zone.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    if let Some(l) = metrics_listener {
        let at = l.local_addr().ok();
        tracing::info!(addr = ?at, "metrics on /metrics");
        let (m, stop) = (metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(error) = metrics::serve(l, m, stop).await {
                tracing::warn!(%error, "metrics listener failed");
            }
        });
    }
    tasks.close();

    tracing::info!(%addr, %domain, "persys-dns answering on UDP and TCP");
    if let Some(path) = &config.addr_file {
        serve::write_addr_file(path, addr)?;
    }
    let handler = handler::Handler::new(zone, resolver, metrics);
    let served = serve::serve(
        listeners,
        handler,
        config.tcp_idle_timeout(),
        shutdown.clone(),
    )
    .await;
    // Whatever ended serving ends the rest too.
    shutdown.cancel();
    tasks.wait().await;
    if let Some(path) = &config.addr_file {
        // Nothing answers there any more (best effort: a reader only finds no file).
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("persys-dns stopped");
    served
}

/// A client of etcd; retried (jittered backoff) while etcd refuses it, which only
/// happens with `--etcd-user` (the client authenticates at once; otherwise it
/// connects lazily). `None` on shutdown.
async fn connect(
    endpoints: &[String],
    access: &persys_certs::etcd::Access,
    shutdown: &CancellationToken,
) -> Result<Option<Client>, DnsError> {
    use backon::BackoffBuilder;
    let mut pauses = backon::ExponentialBuilder::default()
        .with_min_delay(sync::RETRY_MIN)
        .with_max_delay(sync::RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, REQUEST_TIMEOUT);
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            r = Client::connect(endpoints, Some(access.apply(options))) => r,
        };
        match attempt {
            Ok(c) => return Ok(Some(c)),
            // A bad endpoint or option is not going to get better.
            Err(e @ (etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_))) => {
                return Err(e.into())
            }
            Err(error) => {
                let delay = pauses.next().unwrap_or(sync::RETRY_MAX);
                tracing::warn!(%error, retry_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "cannot connect to etcd; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
