//! The schedulers behind the gateway: one mTLS client, health per scheduler, and
//! failover to the next scheduler when one cannot be reached.

use crate::metrics::Metrics;
use crate::StartError;
use axum::http::Method;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time to establish a TCP + TLS connection to a scheduler before trying the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The probe: a cheap mTLS call on the scheduler's API port.
pub const PROBE_PATH: &str = "/healthz";

/// Why a call to the schedulers failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No scheduler could be reached.
    #[error("no scheduler could be reached ({tried} tried){}", last.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Unreachable {
        /// How many were tried.
        tried: usize,
        /// The last connection error.
        last: Option<reqwest::Error>,
    },
    /// The scheduler did not answer in time.
    #[error("the scheduler did not answer within {0:?}")]
    Timeout(Duration),
    /// The exchange failed after the request may have reached the scheduler.
    #[error("the scheduler connection failed: {0}")]
    Failed(reqwest::Error),
}

#[derive(Debug)]
struct Target {
    base: String,
    healthy: AtomicBool,
}

fn build_client(tls: rustls::ClientConfig) -> Result<reqwest::Client, StartError> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .no_proxy()
        .build()?)
}

/// The configured schedulers.
#[derive(Debug)]
pub struct Upstreams {
    targets: Vec<Target>,
    preferred: AtomicUsize,
    /// Replaced when the gateway's certificate is renewed ([`Upstreams::rotate`]).
    client: std::sync::RwLock<reqwest::Client>,
    metrics: Metrics,
}

impl Upstreams {
    /// Schedulers at `urls` (`https://host:port`), reached with `tls` (which carries the
    /// gateway's client certificate). None counts as healthy until it answers a probe or
    /// a request (requests still try every scheduler meanwhile).
    pub fn new(
        urls: &[String],
        tls: rustls::ClientConfig,
        metrics: Metrics,
    ) -> Result<Self, StartError> {
        let mut targets = Vec::new();
        for url in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| StartError::Config(format!("--scheduler-url {url:?}: {e}")))?;
            if parsed.scheme() != "https" {
                return Err(StartError::Config(format!(
                    "--scheduler-url {url:?}: the scheduler API is mTLS, use https://"
                )));
            }
            targets.push(Target {
                base: url.trim_end_matches('/').to_string(),
                healthy: AtomicBool::new(false),
            });
        }
        if targets.is_empty() {
            return Err(StartError::Config("no --scheduler-url given".into()));
        }
        let client = build_client(tls)?;
        for t in &targets {
            metrics
                .upstream_healthy
                .with_label_values(&[&t.base])
                .set(1);
        }
        Ok(Self {
            targets,
            preferred: AtomicUsize::new(0),
            client: std::sync::RwLock::new(client),
            metrics,
        })
    }

    /// The client of the current certificate.
    fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reach the schedulers with `tls` (a renewed client certificate) from now on;
    /// requests under way finish on the connections they have.
    pub fn rotate(&self, tls: rustls::ClientConfig) -> Result<(), StartError> {
        let client = build_client(tls)?;
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
        Ok(())
    }

    /// Whether any scheduler answered its last probe (or call).
    pub fn any_healthy(&self) -> bool {
        self.targets
            .iter()
            .any(|t| t.healthy.load(Ordering::Relaxed))
    }

    /// Each scheduler's URL and whether it is healthy.
    pub fn health(&self) -> Vec<(String, bool)> {
        self.targets
            .iter()
            .map(|t| (t.base.clone(), t.healthy.load(Ordering::Relaxed)))
            .collect()
    }

    /// The order to try schedulers in: the last one that answered, then the other
    /// healthy ones, then the unhealthy ones (their health may be stale).
    fn order(&self) -> Vec<usize> {
        let n = self.targets.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let rotated: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        let (mut healthy, unhealthy): (Vec<usize>, Vec<usize>) = rotated
            .into_iter()
            .partition(|&i| self.targets[i].healthy.load(Ordering::Relaxed));
        healthy.extend(unhealthy);
        healthy
    }

    fn set_health(&self, idx: usize, healthy: bool) {
        let t = &self.targets[idx];
        let was = t.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(upstream = %t.base, "scheduler is healthy again");
            } else {
                tracing::warn!(upstream = %t.base, "scheduler is unhealthy");
            }
        }
        self.metrics
            .upstream_healthy
            .with_label_values(&[&t.base])
            .set(i64::from(healthy));
    }

    /// Sends `method path_and_query` to the first scheduler that can be reached.
    /// `prepare` adds headers and a body to each attempt; it returns `None` when the
    /// body cannot be sent again, which ends the failover. A request moves to the next
    /// scheduler on a connection error, and, when `method` is idempotent, on any error
    /// or timeout before the answer head. `timeout` bounds each attempt's wait for the
    /// answer head.
    pub async fn send<F>(
        &self,
        method: &Method,
        path_and_query: &str,
        timeout: Option<Duration>,
        mut prepare: F,
    ) -> Result<reqwest::Response, UpstreamError>
    where
        F: FnMut(reqwest::RequestBuilder) -> Option<reqwest::RequestBuilder>,
    {
        let idempotent = matches!(
            *method,
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::PUT
        );
        let mut tried = 0;
        let mut last = None;
        for idx in self.order() {
            let base = &self.targets[idx].base;
            let builder = self
                .client()
                .request(method.clone(), format!("{base}{path_and_query}"));
            let Some(builder) = prepare(builder) else {
                break;
            };
            tried += 1;
            let outcome = match timeout {
                Some(t) => tokio::time::timeout(t, builder.send()).await.map_err(|_| t),
                None => Ok(builder.send().await),
            };
            match outcome {
                Ok(Ok(resp)) => {
                    self.set_health(idx, true);
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Ok(Err(e)) if e.is_connect() || idempotent => {
                    tracing::warn!(upstream = %base, error = %e, "scheduler unreachable; trying the next");
                    self.set_health(idx, false);
                    self.metrics.failovers.with_label_values(&[base]).inc();
                    last = Some(e);
                }
                Ok(Err(e)) => return Err(UpstreamError::Failed(e)),
                Err(t) if idempotent => {
                    tracing::warn!(upstream = %base, timeout_ms = t.as_millis() as u64, "scheduler did not answer in time; trying the next");
                    self.set_health(idx, false);
                    self.metrics.failovers.with_label_values(&[base]).inc();
                    if tried == self.targets.len() {
                        return Err(UpstreamError::Timeout(t));
                    }
                }
                Err(t) => return Err(UpstreamError::Timeout(t)),
            }
        }
        Err(UpstreamError::Unreachable { tried, last })
    }

    /// Probes every scheduler once and records its health.
    pub async fn probe_all(&self) {
        let probes = self.targets.iter().enumerate().map(|(idx, t)| {
            let req = self
                .client()
                .get(format!("{}{PROBE_PATH}", t.base))
                .timeout(PROBE_TIMEOUT);
            async move {
                let ok = match req.send().await {
                    Ok(resp) => resp.status().is_success(),
                    Err(e) => {
                        tracing::debug!(upstream = %t.base, error = %e, "health probe failed");
                        false
                    }
                };
                (idx, ok)
            }
        });
        for (idx, ok) in futures::future::join_all(probes).await {
            self.set_health(idx, ok);
        }
    }

    /// Probes every `interval` until `shutdown`.
    pub async fn run_health(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            self.probe_all().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
