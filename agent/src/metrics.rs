//! Prometheus metrics of the agent, served as text on `GET /metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// The agent's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// API requests by route template, method and status code (bounded: unknown
    /// methods are `OTHER`, unknown paths `unmatched`).
    pub requests: IntCounterVec,
    /// Connections of the API listener.
    pub connections: persys_certs::ConnectionMetrics,
    /// Duration of container operations by operation (`run`, `stop`, `remove`).
    pub operations: HistogramVec,
    /// Docker events followed, by action.
    pub events: IntCounterVec,
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("persys_agent".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "Agent API requests"),
            &["route", "method", "status"],
        )?;
        let operations = HistogramVec::new(
            HistogramOpts::new(
                "operation_duration_seconds",
                "Container operations as seen by the API",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("docker_events_total", "Docker container events followed"),
            &["action"],
        )?;
        // The registry's prefix names them `persys_agent_connections_*`.
        let connections = persys_certs::ConnectionMetrics::new("")?;
        connections.register(&registry)?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(events.clone()))?;
        Ok(Self {
            registry,
            requests,
            connections,
            operations,
            events,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render_as_prometheus_text() {
        let m = Metrics::new().expect("valid metric definitions");
        m.requests
            .with_label_values(&["/docker/run", "POST", "200"])
            .inc();
        let _api = m.connections.listener("api");
        let text = m.render();
        assert!(text.contains("persys_agent_http_requests_total"), "{text}");
        assert!(text.contains("persys_agent_connections_open"), "{text}");
    }
}
