//! Prometheus metrics of the scheduler, served on the bootstrap port at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The scheduler's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Workloads placed on a node.
    pub workloads_scheduled: IntCounter,
    /// Time spent deciding placements (the pure decision plus the store write).
    pub placement_seconds: Histogram,
    /// New workloads placed and stored per batch (one etcd transaction each).
    pub placement_batch_size: Histogram,
    /// Agent calls that failed after retries.
    pub dispatch_errors: IntCounter,
    /// Registrations refused for a bad join token.
    pub join_failures: IntCounter,
    /// Nodes by status.
    pub nodes: IntGaugeVec,
    /// HTTP requests by route template, method and status code (bounded: unknown
    /// methods are `OTHER`, unknown paths `unmatched`).
    pub http_requests: IntCounterVec,
    /// Connections of the API and bootstrap listeners.
    pub connections: persys_certs::ConnectionMetrics,
    /// 1 while this replica is the leader (runs placement and the loops), else 0.
    pub is_leader: IntGauge,
    /// Autoscaling decisions by service and direction (`up`, `down`).
    pub autoscale_decisions: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let workloads_scheduled = IntCounter::new(
            "persys_workloads_scheduled_total",
            "Workloads placed on a node",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let placement_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "persys_placement_seconds",
                "Placement latency, decision and store write",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .unwrap_or_else(|_| unreachable_metric());
        let placement_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "persys_placement_batch_size",
                "New workloads placed and stored together in one etcd transaction",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]),
        )
        .unwrap_or_else(|_| unreachable_metric());
        let dispatch_errors = IntCounter::new(
            "persys_dispatch_errors_total",
            "Agent calls that failed after retries",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let join_failures = IntCounter::new(
            "persys_scheduler_join_failures_total",
            "Registrations refused for a missing or bad join token",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let nodes = IntGaugeVec::new(Opts::new("persys_nodes", "Nodes by status"), &["status"])
            .unwrap_or_else(|_| unreachable_metric());
        let http_requests = IntCounterVec::new(
            Opts::new(
                "persys_http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let is_leader = IntGauge::new(
            "persys_scheduler_is_leader",
            "1 while this scheduler replica is the leader",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let autoscale_decisions = IntCounterVec::new(
            Opts::new(
                "persys_autoscale_decisions_total",
                "Autoscaling decisions by service and direction",
            ),
            &["service", "direction"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let connections = persys_certs::ConnectionMetrics::new("persys_scheduler")
            .unwrap_or_else(|_| unreachable_metric());
        if let Err(e) = connections.register(&registry) {
            tracing::warn!(error = %e, "metric registration failed");
        }
        for c in [
            Box::new(is_leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(workloads_scheduled.clone()),
            Box::new(placement_seconds.clone()),
            Box::new(placement_batch_size.clone()),
            Box::new(dispatch_errors.clone()),
            Box::new(join_failures.clone()),
            Box::new(nodes.clone()),
            Box::new(http_requests.clone()),
            Box::new(autoscale_decisions.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "metric registration failed");
            }
        }
        Self {
            registry,
            workloads_scheduled,
            placement_seconds,
            placement_batch_size,
            dispatch_errors,
            join_failures,
            nodes,
            http_requests,
            connections,
            is_leader,
            autoscale_decisions,
        }
    }

    /// Set the node gauges from a list of node statuses.
    pub fn set_nodes<'a>(&self, statuses: impl IntoIterator<Item = &'a str>) {
        self.nodes.reset();
        for s in ["Active", "Inactive", "Draining", "Cordoned"] {
            self.nodes.with_label_values(&[s]).set(0);
        }
        for s in statuses {
            self.nodes.with_label_values(&[s]).inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Metric construction only fails for invalid names or options, which are constants
/// here; a test constructs them all, so this is never reached.
fn unreachable_metric() -> ! {
    panic!("invalid metric definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_includes_every_metric() {
        let m = Metrics::new();
        m.workloads_scheduled.inc();
        m.http_requests
            .with_label_values(&["/workloads/{id}", "GET", "200"])
            .inc();
        m.set_nodes(["Active", "Active"]);
        let _api = m.connections.listener("api");
        let text = m.render();
        for name in [
            "persys_workloads_scheduled_total 1",
            "persys_placement_seconds",
            "persys_dispatch_errors_total",
            "persys_nodes{status=\"Active\"} 2",
            "persys_http_requests_total",
            "persys_scheduler_is_leader 0",
            "persys_scheduler_connections_open",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
    }
}
