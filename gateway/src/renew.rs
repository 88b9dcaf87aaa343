//! Renewal of the gateway's certificates without a restart: once two thirds of their
//! lifetime (`--cert-validity`) have passed, both are issued again from the cluster CA
//! (an operator's `--tls-cert` is re-read). The HTTPS listener gets the new server
//! configuration through its watch (open connections keep their session), and the
//! scheduler client is rebuilt (requests under way finish on their connections).

use crate::pki;
use crate::{App, Config};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Shortest pause between renewals.
const MIN_PAUSE: Duration = Duration::from_secs(1);
/// Pause after a failed renewal.
const RETRY: Duration = Duration::from_secs(10);

fn due(client_cert_pem: &str) -> Duration {
    persys_certs::renew::renew_in(client_cert_pem, SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .max(MIN_PAUSE)
}

/// The renewal loop; ends at `stop`.
pub async fn run(
    config: Config,
    app: Arc<App>,
    first_client_cert_pem: String,
    server: watch::Sender<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) {
    let mut pause = due(&first_client_cert_pem);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        let renewed = pki::load(&config).and_then(|tls| {
            app.upstreams.rotate(tls.upstream.clone())?;
            Ok(tls)
        });
        match renewed {
            Ok(tls) => {
                let _ = server.send(tls.server.clone());
                app.metrics
                    .set_certificates(&tls.server_cert_pem, &tls.ca_pem);
                pause = due(&tls.client_cert_pem);
                tracing::info!(next_in_s = pause.as_secs(), "certificates renewed");
            }
            Err(e) => {
                pause = RETRY;
                tracing::warn!(error = %e, "certificate renewal failed; retrying in 10 s");
            }
        }
    }
}
