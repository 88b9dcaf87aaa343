//! The agent's client of the scheduler API (mTLS with the node certificate):
//! heartbeats and status pushes. The certificate can be replaced after a
//! re-registration without interrupting callers. With several scheduler replicas, a
//! call that cannot be served (connection error, 502/503/504) goes to the next one.

use crate::endpoints::Endpoints;
use crate::join::Identity;
use crate::report::StatusSink;
use persys_proto::{ApiError, HeartbeatResponse, NodeHeartbeat, StatusReport};
use std::sync::RwLock;
use std::time::Duration;

/// Timeout of one call to the scheduler.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of connecting to the scheduler.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to the scheduler failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS configuration could not be built from the identity.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// The call did not complete.
    #[error("{url}: {detail}")]
    Transport {
        /// What was called.
        url: String,
        /// Why it failed.
        detail: String,
    },
    /// The scheduler answered with an error status.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// What was called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The scheduler's message.
        message: String,
    },
    /// No scheduler URL is configured.
    #[error("no scheduler URL is configured")]
    NoUrl,
}

impl ClientError {
    /// Whether another scheduler replica may serve the call: this one could not be
    /// reached, or answered that it cannot serve now.
    pub fn fails_over(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => matches!(status, 502..=504),
            Self::Tls(_) | Self::NoUrl => false,
        }
    }
}

/// Calls the scheduler as this node.
#[derive(Debug)]
pub struct SchedulerClient {
    bases: Endpoints,
    node_id: String,
    http: RwLock<reqwest::Client>,
}

fn build(identity: &Identity) -> Result<reqwest::Client, ClientError> {
    let tls = persys_certs::client_config(
        &identity.ca_pem,
        Some((&identity.cert_pem, &identity.key_pem)),
        // Only a scheduler's certificate: a node's, even with the right host name, is
        // never taken for the scheduler.
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
    )
    .map_err(|e| ClientError::Tls(e.to_string()))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| ClientError::Tls(e.to_string()))
}

impl SchedulerClient {
    /// A client of the scheduler replicas at `bases` (e.g. `https://127.0.0.1:8085`)
    /// with this identity.
    pub fn new(bases: &[String], identity: &Identity) -> Result<Self, ClientError> {
        Ok(Self {
            bases: Endpoints::new(bases),
            node_id: identity.node_id.clone(),
            http: RwLock::new(build(identity)?),
        })
    }

    /// Use a new certificate from now on (after a re-registration).
    pub fn rotate(&self, identity: &Identity) -> Result<(), ClientError> {
        let client = build(identity)?;
        *self.http.write().unwrap_or_else(|p| p.into_inner()) = client;
        Ok(())
    }

    fn client(&self) -> reqwest::Client {
        self.http.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// POST to the replica that answered last, failing over to the others in turn.
    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<reqwest::Response, ClientError> {
        let mut last = None;
        for (i, base) in self.bases.in_order() {
            match self.post_to(base, path, body).await {
                Err(e) if e.fails_over() => {
                    tracing::debug!(error = %e, "scheduler replica cannot serve; trying the next");
                    last = Some(e);
                }
                other => {
                    self.bases.settle(i);
                    return other;
                }
            }
        }
        Err(last.unwrap_or(ClientError::NoUrl))
    }

    async fn post_to<T: serde::Serialize>(
        &self,
        base: &str,
        path: &str,
        body: &T,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{base}{path}");
        let response = self
            .client()
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                detail: describe(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        Err(ClientError::Status {
            url,
            status: status.as_u16(),
            message,
        })
    }

    /// `POST /nodes/heartbeat/stream` on the replica that answered last, with `lines`
    /// (one JSON heartbeat each) as the body. Resolves when the stream ends: the
    /// scheduler went away, refused it (a follower, or an older scheduler without the
    /// route), or `lines` ended.
    pub async fn heartbeat_stream<S>(&self, lines: S) -> Result<(), ClientError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let Some((i, base)) = self.bases.in_order().next() else {
            return Err(ClientError::NoUrl);
        };
        let url = format!("{base}/nodes/heartbeat/stream");
        let response = self
            .client()
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            // Not the client's per-call timeout: the stream lasts its lifetime (the
            // agent ends it then), plus a margin for the answer.
            .timeout(crate::heartbeat::STREAM_LIFETIME + std::time::Duration::from_secs(30))
            .body(reqwest::Body::wrap_stream(lines))
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                detail: describe(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            self.bases.settle(i);
            return Ok(());
        }
        Err(ClientError::Status {
            url,
            status: status.as_u16(),
            message: response.text().await.unwrap_or_default(),
        })
    }

    /// `POST /nodes/heartbeat`.
    pub async fn heartbeat(&self, beat: &NodeHeartbeat) -> Result<HeartbeatResponse, ClientError> {
        let response = self.post("/nodes/heartbeat", beat).await?;
        // An empty or unexpected body is not worth failing a heartbeat over.
        Ok(response.json().await.unwrap_or_default())
    }

    /// `POST /nodes/usage`.
    pub async fn push_usage(
        &self,
        report: &persys_proto::autoscale::UsageReport,
    ) -> Result<(), ClientError> {
        self.post("/nodes/usage", report).await.map(|_| ())
    }

    /// `POST /nodes/{id}/status`.
    pub async fn push_status(&self, report: &StatusReport) -> Result<(), ClientError> {
        let path = format!("/nodes/{}/status", self.node_id);
        self.post(&path, report).await.map(|_| ())
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        parts.push(err.to_string());
        cur = err.source();
    }
    parts.join(": ")
}

impl StatusSink for SchedulerClient {
    async fn push(&self, report: &StatusReport) -> Result<(), String> {
        self.push_status(report).await.map_err(|e| e.to_string())
    }
}
