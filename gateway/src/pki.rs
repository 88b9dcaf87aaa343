//! The gateway's certificates, issued at every start from the cluster CA in the
//! scheduler's data directory: a client certificate (CN `persys-gateway`) for mTLS to
//! the scheduler, and, unless the operator supplies one, the HTTPS server certificate.

use crate::{Config, StartError};
use persys_certs::ca::{CA_CERT_FILE, CA_KEY_FILE};
use persys_certs::CertificateAuthority;
use std::path::Path;
use std::sync::Arc;

/// Common name of the gateway's certificates.
pub const GATEWAY_CN: &str = "persys-gateway";

/// TLS configurations of both sides of the gateway.
pub struct GatewayTls {
    /// HTTPS for users: client certificates of the cluster CA optional.
    pub server: Arc<rustls::ServerConfig>,
    /// mTLS to the scheduler.
    pub upstream: rustls::ClientConfig,
}

fn read(path: &Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|source| StartError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// This machine's host name, if it can be read.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// SANs of the issued server certificate: localhost, loopback, the host name, extras.
pub fn server_sans(extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    sans.extend(hostname());
    for s in extra.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !sans.iter().any(|x| x == s) {
            sans.push(s.to_string());
        }
    }
    sans
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
            let issued = ca.issue_server(GATEWAY_CN, &server_sans(&config.tls_sans))?;
            (issued.cert_pem, issued.key_pem)
        }
    };
    let server =
        persys_certs::server_config_optional_client_auth(ca.cert_pem(), &cert_pem, &key_pem)?;
    let client = ca.issue_client(GATEWAY_CN)?;
    let upstream =
        persys_certs::client_config(ca.cert_pem(), Some((&client.cert_pem, &client.key_pem)))?;
    Ok(GatewayTls { server, upstream })
}
