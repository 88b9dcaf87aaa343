//! Joining the cluster: the node makes its key and CSR locally (the key never leaves
//! it), registers on the scheduler's bootstrap port with its join token while checking
//! the server against the CA hash in that token, and keeps what it gets in its data dir.
//! It registers at every start, which rotates its certificate.

use crate::endpoints::Endpoints;
use crate::host::HostFacts;
use backon::{BackoffBuilder, ExponentialBuilder};
use persys_certs::JoinToken;
use persys_proto::{ApiError, RegisterRequest, RegisterResponse};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Files in the data dir.
pub mod files {
    /// The node's private key (0600).
    pub const KEY: &str = "node.key";
    /// The node's certificate.
    pub const CERT: &str = "node.crt";
    /// The cluster CA certificate.
    pub const CA: &str = "ca.crt";
    /// The node id.
    pub const NODE_ID: &str = "node-id";
}

/// Heartbeat period when the scheduler did not say (no registration this start).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(1000);
/// First wait between registration attempts.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between registration attempts (before jitter).
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Timeout of one registration call.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);

/// Who this node is in the cluster: its certificate, key and the CA.
#[derive(Clone)]
pub struct Identity {
    /// Node id (the certificate's common name).
    pub node_id: String,
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// PEM cluster CA.
    pub ca_pem: String,
    /// Heartbeat period the scheduler asked for.
    pub heartbeat_interval: Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key must not end up in logs.
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is malformed.
    #[error("invalid join token: {0}")]
    Token(String),
    /// No token and nothing saved.
    #[error("this node is not registered yet ({0} is missing); pass --join-token (or PERSYS_JOIN_TOKEN)")]
    NotRegistered(PathBuf),
    /// The bootstrap server's chain does not match the token's CA hash.
    #[error("refusing the bootstrap server {url}: its certificate is not trusted under the CA hash in the join token ({detail})")]
    Untrusted {
        /// Bootstrap URL.
        url: String,
        /// What the TLS layer said.
        detail: String,
    },
    /// The scheduler answered with an error.
    #[error("registration refused by {url}: HTTP {status}: {message}")]
    Rejected {
        /// Bootstrap URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The scheduler's message.
        message: String,
    },
    /// The scheduler could not be reached (retried).
    #[error("cannot reach the bootstrap server {url}: {detail}")]
    Unreachable {
        /// Bootstrap URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The answer was not what the contract says.
    #[error("unexpected registration answer: {0}")]
    BadAnswer(String),
    /// Key or CSR generation, or a client configuration, failed.
    #[error("pki: {0}")]
    Pki(String),
    /// A data-dir file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Shutdown came first.
    #[error("registration interrupted by shutdown")]
    Cancelled,
}

impl JoinError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Everything a registration sends.
#[derive(Debug, Clone)]
pub struct Joiner {
    /// Bootstrap base URLs (one per scheduler replica), tried in turn.
    pub bootstrap_urls: Vec<String>,
    /// Join token, when given.
    pub token: Option<String>,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Requested node id.
    pub node_id: String,
    /// Host facts.
    pub facts: HostFacts,
    /// Address the scheduler reaches the agent at.
    pub advertise: IpAddr,
    /// Agent API port.
    pub agent_port: u16,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
}

/// The node id: the flag, else the saved one, else the host name.
pub fn resolve_node_id(flag: Option<&str>, data_dir: &Path, hostname: &str) -> String {
    if let Some(id) = flag.map(str::trim).filter(|s| !s.is_empty()) {
        return id.to_string();
    }
    std::fs::read_to_string(data_dir.join(files::NODE_ID))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| hostname.to_string())
}

/// Whether any error in the chain comes from TLS verification.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // io::Error hides its payload from `source()` (and the TLS connector nests one
        // io::Error in another); look inside.
        let mut io = err.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(std::io::Error::get_ref) {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls.to_string());
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = err.source();
    }
    None
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

impl Joiner {
    fn path(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// Register (retrying while the scheduler is unreachable), or, without a token,
    /// use the identity saved by an earlier registration.
    pub async fn join(&self, shutdown: &CancellationToken) -> Result<Identity, JoinError> {
        if self.token.is_none() {
            tracing::warn!("no join token: using the saved certificate without rotating it");
            return self.load_saved().await;
        }
        // Doubling pauses, forever (a node waits for its scheduler however long it
        // takes), jittered so that a fleet restarted together does not register in
        // lockstep against a scheduler that has just come back.
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN)
            .with_max_delay(RETRY_MAX)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let error = match self.register_once().await {
                Ok(identity) => return Ok(identity),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            // Without a max count the iterator never ends; the fallback only satisfies types.
            let delay = pauses.next().unwrap_or(RETRY_MAX);
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "registration failed, retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return Err(JoinError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One registration: key + CSR, `POST /nodes/register` (to each bootstrap URL in
    /// turn while they are unreachable or answer 5xx), save.
    pub async fn register_once(&self) -> Result<Identity, JoinError> {
        let raw = self.token.as_deref().unwrap_or_default();
        let token = JoinToken::parse(raw).map_err(|e| JoinError::Token(e.to_string()))?;
        let sans = vec![self.advertise.to_string()];
        let (csr, key_pem) = persys_certs::generate_csr(&self.node_id, &sans)
            .map_err(|e| JoinError::Pki(e.to_string()))?;
        // A node that registered before renews with its current certificate: the
        // scheduler hands an existing node id only to its holder.
        let current = self.load_saved().await.ok().filter(|saved| {
            saved.node_id == self.node_id
                && persys_certs::fingerprint_pem(&saved.ca_pem)
                    .is_ok_and(|h| h.eq_ignore_ascii_case(&token.ca_hash))
        });
        let tls = persys_certs::client_config_pinned(
            &token.ca_hash,
            persys_certs::Expected::role(persys_certs::Role::Scheduler),
            current
                .as_ref()
                .map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
        )
        .map_err(|e| JoinError::Pki(e.to_string()))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(REGISTER_TIMEOUT)
            .build()
            .map_err(|e| JoinError::Pki(e.to_string()))?;
        let body = RegisterRequest {
            node_id: Some(self.node_id.clone()),
            csr,
            hostname: self.facts.hostname.clone(),
            ip_address: self.advertise.to_string(),
            agent_port: self.agent_port,
            os_name: self.facts.os_name.clone(),
            kernel_version: self.facts.kernel_version.clone(),
            total_cpu: self.facts.cpu_cores,
            total_memory: self.facts.memory_mb,
            labels: self.labels.clone(),
        };
        let bases = Endpoints::new(&self.bootstrap_urls);
        let mut last = None;
        for (_, base) in bases.in_order() {
            match self.register_at(&client, base, &token, &body).await {
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "bootstrap server cannot serve; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
                Ok(answer) => return self.accept(answer, &token, base, key_pem).await,
            }
        }
        Err(last.unwrap_or_else(|| JoinError::Unreachable {
            url: bases.list(),
            detail: "no bootstrap URL is configured".into(),
        }))
    }

    async fn register_at(
        &self,
        client: &reqwest::Client,
        base: &str,
        token: &JoinToken,
        body: &RegisterRequest,
    ) -> Result<RegisterResponse, JoinError> {
        let url = format!("{base}/nodes/register");
        let response = client
            .post(&url)
            .bearer_auth(token.to_string())
            .json(body)
            .send()
            .await
            .map_err(|e| match tls_failure(&e) {
                Some(detail) => JoinError::Untrusted {
                    url: url.clone(),
                    detail,
                },
                None => JoinError::Unreachable {
                    url: url.clone(),
                    detail: chain(&e),
                },
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ApiError>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            return Err(JoinError::Rejected {
                url,
                status: status.as_u16(),
                message,
            });
        }
        response
            .json()
            .await
            .map_err(|e| JoinError::BadAnswer(chain(&e)))
    }

    /// Check a registration answer against the token and save the identity.
    async fn accept(
        &self,
        answer: RegisterResponse,
        token: &JoinToken,
        url: &str,
        key_pem: String,
    ) -> Result<Identity, JoinError> {
        // The body's CA must be the one the token pins, not just the TLS chain's.
        let ca_hash = persys_certs::fingerprint_pem(&answer.ca_certificate)
            .map_err(|e| JoinError::BadAnswer(format!("caCertificate: {e}")))?;
        if !ca_hash.eq_ignore_ascii_case(&token.ca_hash) {
            return Err(JoinError::Untrusted {
                url: url.to_string(),
                detail: "the CA certificate in the answer has another hash".into(),
            });
        }
        let identity = Identity {
            node_id: answer.node_id,
            cert_pem: answer.certificate,
            key_pem,
            ca_pem: answer.ca_certificate,
            heartbeat_interval: match answer.heartbeat_interval_ms {
                0 => DEFAULT_HEARTBEAT,
                ms => Duration::from_millis(ms),
            },
        };
        self.save(&identity).await?;
        tracing::info!(node_id = %identity.node_id, "registered with the scheduler");
        Ok(identity)
    }

    async fn save(&self, identity: &Identity) -> Result<(), JoinError> {
        let this = self.clone();
        let identity = identity.clone();
        tokio::task::spawn_blocking(move || {
            let write = |name: &str, contents: &str| {
                let path = this.path(name);
                persys_certs::write_private(&path, contents)
                    .map_err(|source| JoinError::Io { path, source })
            };
            write(files::KEY, &identity.key_pem)?;
            write(files::CERT, &identity.cert_pem)?;
            write(files::CA, &identity.ca_pem)?;
            write(files::NODE_ID, &format!("{}\n", identity.node_id))
        })
        .await
        .map_err(|e| JoinError::Pki(format!("saving the identity: {e}")))?
    }

    /// The identity an earlier registration saved.
    pub async fn load_saved(&self) -> Result<Identity, JoinError> {
        let read = |name: &'static str| {
            let path = self.path(name);
            async move {
                match tokio::fs::read_to_string(&path).await {
                    Ok(s) => Ok(s),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(JoinError::NotRegistered(path))
                    }
                    Err(source) => Err(JoinError::Io { path, source }),
                }
            }
        };
        let cert_pem = read(files::CERT).await?;
        let key_pem = read(files::KEY).await?;
        let ca_pem = read(files::CA).await?;
        let node_id = read(files::NODE_ID)
            .await
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| self.node_id.clone());
        Ok(Identity {
            node_id,
            cert_pem,
            key_pem,
            ca_pem,
            heartbeat_interval: DEFAULT_HEARTBEAT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_prefers_the_flag_then_the_saved_file_then_the_host_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(resolve_node_id(None, dir.path(), "host"), "host");
        std::fs::write(dir.path().join(files::NODE_ID), "saved\n").expect("write");
        assert_eq!(resolve_node_id(None, dir.path(), "host"), "saved");
        assert_eq!(resolve_node_id(Some("flag"), dir.path(), "host"), "flag");
    }

    fn joiner(dir: &Path, token: Option<&str>) -> Joiner {
        Joiner {
            bootstrap_urls: vec!["https://127.0.0.1:1".into()],
            token: token.map(str::to_string),
            data_dir: dir.to_path_buf(),
            node_id: "n1".into(),
            facts: HostFacts::detect(Some(1.0), Some(256)),
            advertise: IpAddr::from([127, 0, 0, 1]),
            agent_port: 8080,
            labels: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn without_a_token_an_unregistered_node_says_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = joiner(dir.path(), None)
            .join(&CancellationToken::new())
            .await
            .expect_err("not registered");
        assert!(matches!(err, JoinError::NotRegistered(_)), "{err}");
        assert!(err.to_string().contains("--join-token"));
    }

    #[tokio::test]
    async fn a_malformed_token_is_refused_without_retrying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = joiner(dir.path(), Some("nonsense"))
            .join(&CancellationToken::new())
            .await
            .expect_err("bad token");
        assert!(matches!(err, JoinError::Token(_)), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_scheduler_is_transient() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = format!("PERSYS1.{}.secret", "ab".repeat(32));
        let err = joiner(dir.path(), Some(&token))
            .register_once()
            .await
            .expect_err("nothing listens");
        assert!(err.is_transient(), "{err}");
    }
}
