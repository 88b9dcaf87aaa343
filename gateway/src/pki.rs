//! The gateway's certificates, issued at every start from the cluster CA in the
//! scheduler's data directory: a client certificate (the gateway's identity,
//! `spiffe://persys/gateway/persys-gateway`) for mTLS to the scheduler, and, unless
//! the operator supplies one, the HTTPS server certificate of the same identity.

use crate::{Config, StartError};
use persys_certs::ca::{CA_CERT_FILE, CA_KEY_FILE};
use persys_certs::issue::Usage;
use persys_certs::{CertificateAuthority, Expected, Identity, Role};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// TLS configurations of both sides of the gateway.
pub struct GatewayTls {
    /// HTTPS for users: client certificates of the cluster CA optional.
    pub server: Arc<rustls::ServerConfig>,
    /// mTLS to the scheduler.
    pub upstream: rustls::ClientConfig,
    /// The key credential records in etcd are signed with.
    pub record_key: persys_certs::RecordKey,
    /// The HTTPS certificate (PEM), for its expiry metric.
    pub server_cert_pem: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
    /// The client certificate (PEM): when it is due, both are renewed.
    pub client_cert_pem: String,
}

fn read(path: &Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|source| StartError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// SANs of the issued server certificate (shared with the scheduler's rules).
pub use persys_http::server_sans;

/// How long to wait for the scheduler to create the CA (both may start together).
const CA_WAIT: Duration = Duration::from_secs(15);

/// [`load`], waiting up to 15 s for the CA files to appear when they do not exist yet.
pub async fn load_when_ready(config: &Config) -> Result<GatewayTls, StartError> {
    let deadline = tokio::time::Instant::now() + CA_WAIT;
    let mut logged = false;
    loop {
        match load(config) {
            Err(StartError::Io { ref source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && tokio::time::Instant::now() < deadline =>
            {
                if !logged {
                    tracing::info!(dir = %config.scheduler_data_dir.display(), "waiting for the scheduler to create the cluster CA");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Loads the CA (never creates one: the scheduler owns it) and builds both configs.
pub fn load(config: &Config) -> Result<GatewayTls, StartError> {
    let dir = &config.scheduler_data_dir;
    let ca_pem = read(&dir.join(CA_CERT_FILE))?;
    let ca_key = read(&dir.join(CA_KEY_FILE))?;
    let ca = CertificateAuthority::from_pem(&ca_pem, &ca_key)?;
    let (cert_pem, key_pem) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (read(cert)?, read(key)?),
        _ => {
            let issued = ca.issue_valid_for(
                &Identity::gateway(),
                &server_sans(&config.tls_sans),
                Usage::Server,
                config.cert_validity,
            )?;
            (issued.cert_pem, issued.key_pem)
        }
    };
    let server =
        persys_certs::server_config_optional_client_auth(ca.cert_pem(), &cert_pem, &key_pem)?;
    let client = ca.issue_valid_for(
        &Identity::gateway(),
        &[],
        Usage::Client,
        config.cert_validity,
    )?;
    // Only a scheduler's certificate: the user's credentials behind each request must
    // never reach a node that claims the scheduler's address.
    let upstream = persys_certs::client_config(
        ca.cert_pem(),
        Some((&client.cert_pem, &client.key_pem)),
        Expected::role(Role::Scheduler),
    )?;
    Ok(GatewayTls {
        server,
        upstream,
        record_key: persys_certs::RecordKey::of(&ca),
        server_cert_pem: cert_pem,
        ca_pem,
        client_cert_pem: client.cert_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(dir: &Path) -> Config {
        Config::parse_from([
            "persys-gateway",
            "--scheduler-data-dir",
            &dir.to_string_lossy(),
            "--tls-san",
            "gw.example",
        ])
    }

    #[test]
    fn sans_always_cover_loopback_and_extras_once() {
        let sans = server_sans(&["gw.example".into(), "localhost".into(), " ".into()]);
        assert!(sans.iter().any(|s| s == "127.0.0.1"));
        assert_eq!(sans.iter().filter(|s| *s == "localhost").count(), 1);
        assert!(sans.iter().any(|s| s == "gw.example"));
    }

    #[tokio::test]
    async fn waits_for_the_scheduler_to_create_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            CertificateAuthority::load_or_generate(&path).expect("ca");
        });
        let tls = load_when_ready(&config(dir.path())).await;
        writer.await.expect("writer");
        assert!(tls.is_ok());
    }

    #[test]
    fn a_corrupt_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CA_CERT_FILE), "not pem").expect("write");
        std::fs::write(dir.path().join(CA_KEY_FILE), "not pem").expect("write");
        assert!(matches!(load(&config(dir.path())), Err(StartError::Pki(_))));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).expect("read"),
            "not pem"
        );
    }
}
