//! Certificate renewal: the node's certificate is short-lived (the scheduler's
//! `--node-cert-validity`, a week by default), so the agent renews it once two thirds
//! of its lifetime have passed, without a restart. A renewal is a registration with
//! the current certificate (the scheduler hands the node id only to its holder); the
//! new certificate then serves every new connection, both ways: the client of the
//! scheduler is rebuilt, and the agent API's listener gets the new server
//! configuration through its watch. Open connections (a followed log, the heartbeat
//! stream) keep the session they have. A failed renewal is retried with backoff,
//! well before expiry.

use crate::client::SchedulerClient;
use crate::join::{Identity, Joiner};
use backon::BackoffBuilder;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Shortest pause between renewals, so a clock far off never makes a tight loop.
const MIN_PAUSE: Duration = Duration::from_secs(1);

/// Who gets the new certificate.
pub struct Renewal {
    /// Registers with the current certificate.
    pub joiner: Arc<Joiner>,
    /// The scheduler client (rebuilt with the new certificate).
    pub client: Arc<SchedulerClient>,
    /// The agent API listener's configuration.
    pub server_tls: watch::Sender<Arc<rustls::ServerConfig>>,
    /// Told each new certificate (the expiry metric).
    pub on_renewed: Box<dyn Fn(&Identity) + Send + Sync>,
}

/// The renewal loop; ends at `stop`.
pub async fn run(renewal: Renewal, mut identity: Identity, stop: CancellationToken) {
    if renewal.joiner.token.is_none() {
        tracing::warn!("no join token: the node's certificate is not renewed (it expires; restart with --join-token)");
        return;
    }
    let mut failures = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build();
    let mut pause = due(&identity);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        match renew(&renewal, &identity).await {
            Ok(next) => {
                identity = next;
                failures = backon::ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(60))
                    .with_jitter()
                    .without_max_times()
                    .build();
                pause = due(&identity);
                tracing::info!(next_in_s = pause.as_secs(), "certificate renewed");
            }
            Err(e) => {
                pause = failures.next().unwrap_or(Duration::from_secs(60));
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "certificate renewal failed; retrying");
            }
        }
    }
}

fn due(identity: &Identity) -> Duration {
    persys_certs::renew::renew_in(&identity.cert_pem, SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .max(MIN_PAUSE)
}

async fn renew(renewal: &Renewal, _current: &Identity) -> Result<Identity, String> {
    let next = renewal
        .joiner
        .register_once()
        .await
        .map_err(|e| e.to_string())?;
    renewal.client.rotate(&next).map_err(|e| e.to_string())?;
    let server = persys_certs::server_config_mtls(&next.ca_pem, &next.cert_pem, &next.key_pem)
        .map_err(|e| e.to_string())?;
    // No receiver only when the listener has stopped (shutdown).
    let _ = renewal.server_tls.send(server);
    (renewal.on_renewed)(&next);
    Ok(next)
}
