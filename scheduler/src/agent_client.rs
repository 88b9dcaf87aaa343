//! The scheduler's client for agents' mTLS API (`https://<node>:<agentPort>/docker/...`),
//! presenting the scheduler's certificate (CN `persys-scheduler`).

use persys_proto::{ApiError, ContainerState, LogsQuery, Node, RunRequest};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Dial timeout towards an agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A run may create a container (and try to pull), which can take a while.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Stop waits for the container's grace period.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Short calls (list, remove).
const SHORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an agent call failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent could not be reached or the connection broke (worth retrying).
    #[error("agent {node} unreachable: {message}")]
    Unreachable {
        /// Node id.
        node: String,
        /// What happened.
        message: String,
    },
    /// The agent answered with an error status.
    #[error("agent {node} answered {status}: {message}")]
    Status {
        /// Node id.
        node: String,
        /// HTTP status.
        status: u16,
        /// The agent's error message.
        message: String,
    },
    /// The agent's answer was not what we expect.
    #[error("agent {node} sent an unexpected answer: {message}")]
    Decode {
        /// Node id.
        node: String,
        /// What was wrong.
        message: String,
    },
    /// The TLS client could not be built.
    #[error("agent client setup: {0}")]
    Setup(String),
}

impl AgentError {
    /// Whether trying again later may help (network trouble or a 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Decode { .. } | Self::Setup(_) => false,
        }
    }

    /// Whether the agent says there is no such container.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }
}

/// HTTP client for agents: one connection pool per node, each accepting only that
/// node's certificate (`spiffe://persys/node/<id>`), so no other node, even one at
/// the same address, is ever sent another node's workloads.
#[derive(Clone)]
pub struct AgentClient {
    /// Replaced when the scheduler's certificate is renewed ([`AgentClient::rotate`]).
    tls: Arc<std::sync::RwLock<Arc<TlsMaterial>>>,
    per_node: Arc<Mutex<HashMap<String, reqwest::Client>>>,
}

struct TlsMaterial {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ListBody {
    Bare(Vec<ContainerState>),
    Wrapped { containers: Vec<ContainerState> },
}

impl AgentClient {
    /// A client trusting only `ca_pem` and presenting `(cert_pem, key_pem)`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, AgentError> {
        let client = Self {
            tls: Arc::new(std::sync::RwLock::new(Arc::new(TlsMaterial {
                ca_pem: ca_pem.to_string(),
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            }))),
            per_node: Arc::default(),
        };
        // Fail at start, not at the first dispatch, when the material is bad.
        client.build("setup-check")?;
        Ok(client)
    }

    /// Present `(cert_pem, key_pem)` from now on (a renewed certificate): the clients
    /// of every node are built again on their next call; calls under way finish on the
    /// connections they have.
    pub fn rotate(&self, cert_pem: &str, key_pem: &str) -> Result<(), AgentError> {
        let ca_pem = self.material().ca_pem.clone();
        let next = Self {
            tls: Arc::new(std::sync::RwLock::new(Arc::new(TlsMaterial {
                ca_pem,
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            }))),
            per_node: Arc::default(),
        };
        next.build("setup-check")?;
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = next.material();
        self.per_node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    fn material(&self) -> Arc<TlsMaterial> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn build(&self, node_id: &str) -> Result<reqwest::Client, AgentError> {
        let m = self.material();
        let mut tls = persys_certs::tls::for_one_server(
            persys_certs::client_config(
                &m.ca_pem,
                Some((&m.cert_pem, &m.key_pem)),
                persys_certs::Expected::Exactly(persys_certs::Identity::node(node_id)),
            )
            .map_err(|e| AgentError::Setup(e.to_string()))?,
        );
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AgentError::Setup(e.to_string()))
    }

    /// The client for `node` (built on first use).
    fn http(&self, node: &Node) -> Result<reqwest::Client, AgentError> {
        let mut clients = self.per_node.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&node.node_id) {
            return Ok(c.clone());
        }
        let c = self.build(&node.node_id)?;
        clients.insert(node.node_id.clone(), c.clone());
        Ok(c)
    }

    /// Forget `node_id`'s client (its node was removed).
    pub fn forget(&self, node_id: &str) {
        self.per_node
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node_id);
    }

    /// `POST /docker/run`: create or adopt the container; its state after.
    pub async fn run(&self, node: &Node, req: &RunRequest) -> Result<ContainerState, AgentError> {
        let url = format!("{}/docker/run", node.agent_url());
        let resp = traced(self.http(node)?.post(url))
            .json(req)
            .timeout(RUN_TIMEOUT)
            .send()
            .await;
        decode(node, resp).await
    }

    /// `POST /docker/stop/{id}`.
    pub async fn stop(&self, node: &Node, workload_id: &str) -> Result<ContainerState, AgentError> {
        let url = format!("{}/docker/stop/{workload_id}", node.agent_url());
        let resp = traced(self.http(node)?.post(url))
            .timeout(STOP_TIMEOUT)
            .send()
            .await;
        decode(node, resp).await
    }

    /// `POST /docker/remove/{id}`. A container that is already gone counts as removed.
    pub async fn remove(&self, node: &Node, workload_id: &str) -> Result<(), AgentError> {
        let url = format!("{}/docker/remove/{workload_id}", node.agent_url());
        let resp = traced(self.http(node)?.post(url))
            .timeout(SHORT_TIMEOUT)
            .send()
            .await;
        match decode::<serde_json::Value>(node, resp).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /docker/list`: every container of this node.
    pub async fn list(&self, node: &Node) -> Result<Vec<ContainerState>, AgentError> {
        let url = format!("{}/docker/list", node.agent_url());
        let resp = traced(self.http(node)?.get(url))
            .timeout(SHORT_TIMEOUT)
            .send()
            .await;
        Ok(match decode::<ListBody>(node, resp).await? {
            ListBody::Bare(v) | ListBody::Wrapped { containers: v } => v,
        })
    }

    /// `GET /docker/logs/{id}`: the streaming response, status already checked.
    pub async fn logs(
        &self,
        node: &Node,
        workload_id: &str,
        query: &LogsQuery,
    ) -> Result<reqwest::Response, AgentError> {
        let url = format!("{}/docker/logs/{workload_id}", node.agent_url());
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(t) = query.tail {
            params.push(("tail", t.to_string()));
        }
        if query.follow {
            params.push(("follow", "true".into()));
        }
        if query.timestamps {
            params.push(("timestamps", "true".into()));
        }
        if let Some(service) = &query.service {
            params.push(("service", service.clone()));
        }
        // No overall timeout: a followed log stream lasts as long as the client wants.
        let resp = traced(self.http(node)?.get(url))
            .query(&params)
            .send()
            .await;
        let resp = resp.map_err(|e| unreachable(node, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(node, resp).await)
        }
    }
}

/// A call made while handling a request carries that request's id to the agent, so
/// the agent's log lines of it carry it too.
fn traced(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let id = persys_http::current_request_id();
    if id.is_empty() {
        builder
    } else {
        builder.header(persys_proto::REQUEST_ID_HEADER, id)
    }
}

fn unreachable(node: &Node, e: &reqwest::Error) -> AgentError {
    AgentError::Unreachable {
        node: node.node_id.clone(),
        message: error_chain(e),
    }
}

/// reqwest's Display hides the cause ("error sending request"); include the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn status_error(node: &Node, resp: reqwest::Response) -> AgentError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ApiError>(&text)
        .map(|e| e.error)
        .unwrap_or_else(|_| text.chars().take(500).collect());
    AgentError::Status {
        node: node.node_id.clone(),
        status,
        message,
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    node: &Node,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, AgentError> {
    let resp = resp.map_err(|e| unreachable(node, &e))?;
    if !resp.status().is_success() {
        return Err(status_error(node, resp).await);
    }
    let bytes = resp.bytes().await.map_err(|e| unreachable(node, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| AgentError::Decode {
        node: node.node_id.clone(),
        message: e.to_string(),
    })
}
