//! Prometheus metrics of the agent, served as text on `GET /metrics` (every metric is
//! listed in `docs/metrics.md`). One registry per process: a simulated fleet
//! (`persys-agent sim`) counts all its nodes together.

use crate::runtime::RuntimeError;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// The prefix of every agent metric (but the shared certificate-expiry one).
const NAMESPACE: &str = "persys_agent";

/// The container operations the agent asks of the engine, the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerOp {
    /// Create and start a container.
    Run,
    /// Pull an image.
    Pull,
    /// Start an existing container.
    Start,
    /// Stop a container.
    Stop,
    /// Remove a container.
    Remove,
    /// Run a command in a container (health checks).
    Exec,
}

impl ContainerOp {
    const ALL: [Self; 6] = [
        Self::Run,
        Self::Pull,
        Self::Start,
        Self::Stop,
        Self::Remove,
        Self::Exec,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Pull => "pull",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Remove => "remove",
            Self::Exec => "exec",
        }
    }
}

/// The `result` label of a container operation, one per [`RuntimeError`] kind.
const RESULTS: [&str; 8] = [
    "ok",
    "not_found",
    "image_not_found",
    "name_conflict",
    "pull_failed",
    "start_failed",
    "engine_error",
    "unavailable",
];

fn result_index(result: &Result<impl Sized, RuntimeError>) -> usize {
    match result {
        Ok(_) => 0,
        Err(RuntimeError::NotFound(_)) => 1,
        Err(RuntimeError::ImageNotFound(_)) => 2,
        Err(RuntimeError::NameConflict(_)) => 3,
        Err(RuntimeError::Pull { .. }) => 4,
        Err(RuntimeError::StartFailed { .. }) => 5,
        Err(RuntimeError::Engine(_)) => 6,
        Err(RuntimeError::Unavailable(_)) => 7,
    }
}

/// The handles of one container operation.
#[derive(Debug, Clone)]
struct OpHandles {
    duration: Histogram,
    results: Vec<IntCounter>,
}

/// The agent's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// API requests by route template, method and status code (bounded: unknown
    /// methods are `OTHER`, unknown paths `unmatched`).
    pub requests: IntCounterVec,
    /// Connections of the API listener.
    pub connections: persys_certs::ConnectionMetrics,
    /// Duration of container operations by operation (`run`, `stop`, `remove`), as the
    /// API answered them.
    pub operations: HistogramVec,
    /// Docker events followed, by action.
    pub events: IntCounterVec,
    /// From the engine's time of an event to the agent having handled it.
    pub event_lag: Histogram,
    /// Expiry of the node certificate the API serves, and of the cluster CA.
    pub certificate_expiry: persys_certs::CertificateExpiry,
    container_ops: Vec<OpHandles>,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "Agent API requests").namespace(NAMESPACE),
            &["route", "method", "status"],
        )?;
        let operations = HistogramVec::new(
            HistogramOpts::new(
                "operation_duration_seconds",
                "Container operations as seen by the API",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("docker_events_total", "Docker container events followed")
                .namespace(NAMESPACE),
            &["action"],
        )?;
        let event_lag = Histogram::with_opts(
            HistogramOpts::new(
                "docker_event_lag_seconds",
                "Time from the engine's timestamp of a container event to the agent having handled it",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let op_duration = HistogramVec::new(
            HistogramOpts::new(
                "container_operation_duration_seconds",
                "Duration of the agent's requests to the container engine, by operation",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
            ]),
            &["operation"],
        )?;
        let op_results = IntCounterVec::new(
            Opts::new(
                "container_operations_total",
                "Requests to the container engine, by operation and result",
            )
            .namespace(NAMESPACE),
            &["operation", "result"],
        )?;
        let container_ops = ContainerOp::ALL
            .iter()
            .map(|op| OpHandles {
                duration: op_duration.with_label_values(&[op.as_str()]),
                results: RESULTS
                    .iter()
                    .map(|r| op_results.with_label_values(&[op.as_str(), r]))
                    .collect(),
            })
            .collect();
        let connections = persys_certs::ConnectionMetrics::new(NAMESPACE)?;
        connections.register(&registry)?;
        let certificate_expiry = persys_certs::CertificateExpiry::new("agent")?;
        certificate_expiry.register(&registry)?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(event_lag.clone()))?;
        registry.register(Box::new(op_duration))?;
        registry.register(Box::new(op_results))?;
        Ok(Self {
            registry,
            requests,
            connections,
            operations,
            events,
            event_lag,
            certificate_expiry,
            container_ops,
        })
    }

    /// Run one engine request of `op`, timing it and counting its result.
    pub async fn container_op<T>(
        &self,
        op: ContainerOp,
        request: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = Instant::now();
        let result = request.await;
        // `container_ops` follows `ContainerOp::ALL`, the enum's order.
        let h = &self.container_ops[op as usize];
        h.duration.observe(started.elapsed().as_secs_f64());
        h.results[result_index(&result)].inc();
        result
    }

    /// An engine event stamped `at` has been handled now.
    pub fn event_handled(&self, at: SystemTime) {
        // An engine clock ahead of ours counts as no lag.
        let lag = SystemTime::now().duration_since(at).unwrap_or_default();
        self.event_lag.observe(lag.as_secs_f64());
    }

    /// Set `persys_certificate_expiry_timestamp_seconds{component="agent"}` from the
    /// node certificate the API serves (`cert="serving"`) and the cluster CA
    /// (`cert="ca"`). Call it again with the new PEMs whenever the node's certificate
    /// is replaced (renewal).
    pub fn set_certificates(&self, serving_pem: &str, ca_pem: &str) {
        self.certificate_expiry
            .observe_pem(persys_certs::expiry::SERVING, serving_pem);
        self.certificate_expiry
            .observe_pem(persys_certs::expiry::CA, ca_pem);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    // The definitions are constants (checked by the test below), not input.
    METRICS.get_or_init(|| Metrics::new().expect("metric definitions are valid"))
}

/// [`Metrics::container_op`] of the process-wide metrics.
pub async fn container_op<T>(
    op: ContainerOp,
    request: impl Future<Output = Result<T, RuntimeError>>,
) -> Result<T, RuntimeError> {
    global().container_op(op, request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn metrics_register_and_render_as_prometheus_text() {
        let m = Metrics::new().expect("valid metric definitions");
        m.requests
            .with_label_values(&["/docker/run", "POST", "200"])
            .inc();
        let _api = m.connections.listener("api");
        let _ = m.container_op(ContainerOp::Run, async { Ok(()) }).await;
        let _ = m
            .container_op(ContainerOp::Remove, async {
                Err::<(), _>(RuntimeError::NotFound("x".into()))
            })
            .await;
        m.event_handled(SystemTime::now() - Duration::from_millis(30));
        let text = m.render();
        for want in [
            "persys_agent_http_requests_total",
            "persys_agent_connections_open",
            "persys_agent_container_operations_total{operation=\"run\",result=\"ok\"} 1",
            "persys_agent_container_operations_total{operation=\"remove\",result=\"not_found\"} 1",
            "persys_agent_container_operations_total{operation=\"exec\",result=\"unavailable\"} 0",
            "persys_agent_container_operation_duration_seconds_count{operation=\"run\"} 1",
            "persys_agent_docker_event_lag_seconds_count 1",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert_eq!(m.event_lag.get_sample_count(), 1);
        assert!(m.event_lag.get_sample_sum() >= 0.03);
    }
}
