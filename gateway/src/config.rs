//! Flags of `persys-gateway`, each with a `PERSYS_*` environment twin.

use clap::Parser;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default HTTPS listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8551";
/// Default scheduler API URL.
pub const DEFAULT_SCHEDULER_URL: &str = "https://127.0.0.1:8085";
/// Default scheduler data directory (holds the cluster CA).
pub const DEFAULT_SCHEDULER_DATA_DIR: &str = "/var/lib/persys/scheduler";
/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_WEBHOOK_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// A secret from a flag: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "persys-gateway",
    version,
    about = "persys gateway: HTTPS API for users (API tokens or cluster client certificates), forwarded to the scheduler over mTLS"
)]
pub struct Config {
    /// HTTPS listen address.
    #[arg(long, env = "PERSYS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Scheduler API URL(s) (mTLS, 8085); repeatable or comma separated. Requests go to
    /// the first healthy one and fail over to the next on connection errors.
    #[arg(
        long = "scheduler-url",
        env = "PERSYS_SCHEDULER_URL",
        value_delimiter = ',',
        default_value = DEFAULT_SCHEDULER_URL
    )]
    pub scheduler_urls: Vec<String>,

    /// The scheduler's data directory: the cluster CA (`ca.crt`, `ca.key`) is read from it
    /// to issue the gateway's client (and, without --tls-cert, server) certificate.
    #[arg(long, env = "PERSYS_SCHEDULER_DATA_DIR", default_value = DEFAULT_SCHEDULER_DATA_DIR)]
    pub scheduler_data_dir: PathBuf,

    /// etcd endpoints (API token records live there).
    #[arg(
        long,
        env = "PERSYS_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// TLS and credentials towards etcd.
    #[command(flatten)]
    pub etcd: persys_certs::etcd::EtcdFlags,

    /// Server certificate (PEM) supplied by the operator; issued from the cluster CA if absent.
    #[arg(long, env = "PERSYS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Key of --tls-cert (PEM).
    #[arg(long, env = "PERSYS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Extra SANs of the issued server certificate (repeatable / comma separated).
    #[arg(long = "tls-san", env = "PERSYS_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,

    /// Bootstrap admin token file: created with a new admin token (mode 0600) when it
    /// does not exist.
    #[arg(long, env = "PERSYS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Secret of the GitHub webhook (HMAC-SHA256 of `X-Hub-Signature-256`). Without it
    /// (or --github-webhook-secret-file) every delivery is refused.
    #[arg(long, env = "PERSYS_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<Secret>,

    /// File holding the GitHub webhook secret (surrounding whitespace ignored).
    #[arg(long, env = "PERSYS_GITHUB_WEBHOOK_SECRET_FILE")]
    pub github_webhook_secret_file: Option<PathBuf>,

    /// Largest accepted request body, bytes (413 above); default
    /// `persys_proto::limits::MAX_REQUEST_BYTES`, the scheduler's too.
    #[arg(long, env = "PERSYS_MAX_BODY_BYTES", default_value_t = persys_proto::limits::MAX_REQUEST_BYTES)]
    pub max_body_bytes: usize,

    /// Largest accepted webhook payload, bytes.
    #[arg(long, env = "PERSYS_WEBHOOK_MAX_BODY_BYTES", default_value_t = DEFAULT_WEBHOOK_MAX_BODY_BYTES)]
    pub webhook_max_body_bytes: usize,

    /// Time allowed for a non-streaming call to the scheduler (answer head and body), ms.
    #[arg(long, env = "PERSYS_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// How long a request waits for a scheduler to become reachable again (all of
    /// them refusing connections: restarting, failing over) before 503, ms.
    #[arg(long, env = "PERSYS_UPSTREAM_WAIT_MS", default_value_t = 5_000)]
    pub upstream_wait_ms: u64,

    /// Sustained requests per second per credential (token or certificate); 0 disables.
    #[arg(long, env = "PERSYS_RATE_LIMIT_PER_SECOND", default_value_t = 50)]
    pub rate_limit_per_second: u32,

    /// Requests a credential may burst above the sustained rate.
    #[arg(long, env = "PERSYS_RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,

    /// How long the certificates the gateway issues itself (from the cluster CA) are
    /// valid (`7d`, `12h`, ...); it renews them after two thirds of it, without a
    /// restart. An operator's `--tls-cert` is re-read at each renewal.
    #[arg(long, env = "PERSYS_GATEWAY_CERT_VALIDITY", default_value = "7d", value_parser = humantime::parse_duration)]
    pub cert_validity: Duration,

    /// How often each scheduler is probed for health, ms.
    #[arg(long, env = "PERSYS_HEALTH_INTERVAL_MS", default_value_t = 2_000)]
    pub health_interval_ms: u64,

    /// Failed authentications one client address may make per window before its
    /// requests get 429 for the rest of the window; 0 disables.
    #[arg(long, env = "PERSYS_AUTH_FAILURE_LIMIT", default_value_t = 20)]
    pub auth_failure_limit: u32,

    /// The window of --auth-failure-limit, ms.
    #[arg(long, env = "PERSYS_AUTH_FAILURE_WINDOW_MS", default_value_t = 10_000)]
    pub auth_failure_window_ms: u64,

    /// Timeouts and the connection cap of the HTTPS listener.
    #[command(flatten)]
    pub listener: persys_certs::ListenerFlags,

    /// Log line format.
    #[command(flatten)]
    pub log: persys_http::logging::LogFlags,
}

impl Config {
    /// Timeout of non-streaming upstream calls.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    /// How to reach etcd, from the `--etcd-*` flags.
    pub fn etcd_access(&self) -> Result<persys_certs::etcd::Access, persys_certs::CertError> {
        self.etcd.access()
    }

    /// Wait for an unreachable scheduler.
    pub fn upstream_wait(&self) -> Duration {
        Duration::from_millis(self.upstream_wait_ms)
    }

    /// The window of the failed-authentication limit.
    pub fn auth_failure_window(&self) -> Duration {
        Duration::from_millis(self.auth_failure_window_ms.max(1))
    }

    /// Interval of the scheduler health probe.
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms.max(50))
    }

    /// The webhook secret from the flag or the file, if configured.
    pub fn webhook_secret(&self) -> Result<Option<Vec<u8>>, crate::StartError> {
        if let Some(s) = &self.github_webhook_secret {
            return Ok(Some(s.0.trim().as_bytes().to_vec()).filter(|s| !s.is_empty()));
        }
        match &self.github_webhook_secret_file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Some(s.trim().as_bytes().to_vec()).filter(|s| !s.is_empty()))
                .map_err(|source| crate::StartError::Io {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_urls_are_comma_separated_and_repeatable() {
        let c = Config::parse_from([
            "persys-gateway",
            "--scheduler-url",
            "https://a:8085,https://b:8085",
            "--scheduler-url",
            "https://c:8085",
        ]);
        assert_eq!(
            c.scheduler_urls,
            ["https://a:8085", "https://b:8085", "https://c:8085"]
        );
        assert_eq!(c.listen.port(), 8551);
    }

    #[test]
    fn debug_never_prints_the_webhook_secret() {
        let c = Config::parse_from(["persys-gateway", "--github-webhook-secret", "hunter2"]);
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            c.webhook_secret().expect("secret"),
            Some(b"hunter2".to_vec())
        );
    }

    #[test]
    fn tls_cert_requires_its_key() {
        assert!(Config::try_parse_from(["persys-gateway", "--tls-cert", "/x.crt"]).is_err());
    }
}
