//! Renewal of the scheduler's own certificate (server for its two listeners, client
//! towards agents and the other replicas): issued from the cluster CA for
//! `--cert-validity` at every start and again once two thirds of it have passed,
//! without a restart. The listeners get the new server configurations through their
//! watches (open connections keep their session), the agent client and the forwarder
//! present the new certificate on their next connections.

use crate::context::Ctx;
use persys_certs::issue::Usage;
use persys_certs::Identity;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Shortest pause between renewals.
const MIN_PAUSE: Duration = Duration::from_secs(1);
/// Pause after a failed renewal.
const RETRY: Duration = Duration::from_secs(10);

type ServerWatch = persys_certs::ServerTlsSender;

/// The listeners whose certificate is renewed.
pub struct Listeners {
    /// The mTLS API.
    pub api: ServerWatch,
    /// The bootstrap port.
    pub bootstrap: ServerWatch,
}

/// Issue the scheduler's certificate: `(cert_pem, key_pem)`.
pub fn issue(ctx: &Ctx) -> Result<(String, String), persys_certs::CertError> {
    let issued = ctx.trust().ca().issue_valid_for(
        &Identity::scheduler(),
        &crate::pki::server_sans(&ctx.config().tls_sans),
        Usage::Dual,
        ctx.config().cert_validity,
    )?;
    Ok((issued.cert_pem, issued.key_pem))
}

/// The renewal loop; `cert_pem` is the certificate in use. Ends at `stop`.
pub async fn run(ctx: Arc<Ctx>, listeners: Listeners, cert_pem: String, stop: CancellationToken) {
    let due = |pem: &str| {
        persys_certs::renew::renew_in(pem, SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .max(MIN_PAUSE)
    };
    let mut pause = due(&cert_pem);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        match renew(&ctx, &listeners) {
            Ok(pem) => {
                pause = due(&pem);
                tracing::info!(next_in_s = pause.as_secs(), "scheduler certificate renewed");
            }
            Err(e) => {
                pause = RETRY;
                tracing::warn!(error = %e, "scheduler certificate renewal failed; retrying in 10 s");
            }
        }
    }
}

fn renew(ctx: &Ctx, listeners: &Listeners) -> Result<String, String> {
    let (cert, key) = issue(ctx).map_err(|e| e.to_string())?;
    let ca = ctx.trust().ca_pem();
    let api = persys_certs::server_config_mtls(ca, &cert, &key).map_err(|e| e.to_string())?;
    let bootstrap =
        persys_certs::server_config_bootstrap(ca, &cert, &key).map_err(|e| e.to_string())?;
    ctx.agents()
        .rotate(&cert, &key)
        .map_err(|e| e.to_string())?;
    if let Some(f) = &ctx.leadership().forwarder {
        f.rotate(ca, &cert, &key).map_err(|e| e.to_string())?;
    }
    let _ = listeners.api.send(api);
    let _ = listeners.bootstrap.send(bootstrap);
    ctx.metrics().set_serving_certificate(&cert);
    Ok(cert)
}
