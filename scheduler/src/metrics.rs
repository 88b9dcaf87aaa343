//! Prometheus metrics of the scheduler, served on the bootstrap port at `/metrics`.
//! Every metric is listed in `docs/metrics.md`.
//!
//! Counters and histograms are updated where things happen, through handles resolved
//! once (no label lookup on a hot path). What describes the cluster as it is now
//! (workloads and nodes by status, the oldest heartbeat) is computed at scrape time
//! from the in-memory cache and liveness by [`refresh`], never by reading etcd.

use crate::context::Ctx;
use persys_proto::{NodeStatus, WorkloadStatus};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every node status, each a series of `persys_nodes`.
const NODE_STATUSES: [NodeStatus; 4] = [
    NodeStatus::Active,
    NodeStatus::Inactive,
    NodeStatus::Draining,
    NodeStatus::Cordoned,
];

/// What a dispatch (one reconcile of a workload with its agent) was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchAction {
    /// Run the workload's container.
    Run,
    /// Stop it.
    Stop,
    /// Remove it (then delete the record).
    Remove,
    /// Only a record change (no agent call: deleted or stopped before it ran).
    Record,
    /// Remove the old copies of a moved workload.
    Retire,
}

impl DispatchAction {
    const ALL: [Self; 5] = [
        Self::Run,
        Self::Stop,
        Self::Remove,
        Self::Record,
        Self::Retire,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Stop => "stop",
            Self::Remove => "remove",
            Self::Record => "record",
            Self::Retire => "retire",
        }
    }
}

/// How a dispatch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchResult {
    /// Done.
    Ok,
    /// The agent refused (the workload is marked Failed).
    Refused,
    /// The agent could not be reached after retries (requeued).
    AgentUnreachable,
    /// The record could not be written (requeued).
    StoreError,
    /// The workload's node is Inactive: nothing is sent until it returns.
    Deferred,
}

impl DispatchResult {
    const ALL: [Self; 5] = [
        Self::Ok,
        Self::Refused,
        Self::AgentUnreachable,
        Self::StoreError,
        Self::Deferred,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::AgentUnreachable => "agent_unreachable",
            Self::StoreError => "store_error",
            Self::Deferred => "deferred",
        }
    }
}

/// `persys_dispatch_results_total{action,result}` with every handle resolved.
#[derive(Clone)]
pub struct DispatchResults {
    vec: IntCounterVec,
    handles: Vec<IntCounter>,
}

impl DispatchResults {
    fn new() -> Self {
        let vec = IntCounterVec::new(
            Opts::new(
                "persys_dispatch_results_total",
                "Dispatches of workloads to their agents, by action and result",
            ),
            &["action", "result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let mut handles = Vec::new();
        for a in DispatchAction::ALL {
            for r in DispatchResult::ALL {
                handles.push(vec.with_label_values(&[a.as_str(), r.as_str()]));
            }
        }
        Self { vec, handles }
    }

    /// Count one dispatch.
    pub fn inc(&self, action: DispatchAction, result: DispatchResult) {
        // `handles` is laid out action-major in the enums' order.
        self.handles[action as usize * DispatchResult::ALL.len() + result as usize].inc();
    }

    /// The count of one series (tests).
    pub fn get(&self, action: DispatchAction, result: DispatchResult) -> u64 {
        self.handles[action as usize * DispatchResult::ALL.len() + result as usize].get()
    }
}

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
    /// From a workload's creation to its first placement on a node (a `Pending`
    /// workload's wait included).
    pub schedule_latency: Histogram,
    /// Agent calls that failed after retries.
    pub dispatch_errors: IntCounter,
    /// Dispatches by action and result.
    pub dispatch_results: DispatchResults,
    /// Registrations refused for a bad join token.
    pub join_failures: IntCounter,
    /// Nodes by status (set at scrape time).
    pub nodes: IntGaugeVec,
    /// Workloads by status (set at scrape time), every status present.
    workloads: Vec<IntGauge>,
    workloads_vec: IntGaugeVec,
    /// Time between two heartbeats of a node, as the leader received them.
    pub heartbeat_interval: Histogram,
    /// The longest time since an Active node's last heartbeat (leader; 0 elsewhere).
    heartbeat_age_max: Gauge,
    /// Container restarts reported by agents (every workload together).
    pub workload_restarts: IntCounter,
    /// HTTP requests by route template, method and status code (bounded: unknown
    /// methods are `OTHER`, unknown paths `unmatched`).
    pub http_requests: IntCounterVec,
    /// Connections of the API and bootstrap listeners.
    pub connections: persys_certs::ConnectionMetrics,
    /// 1 while this replica is the leader (runs placement and the loops), else 0.
    pub is_leader: IntGauge,
    /// Terms this replica has seen begin (won or followed): leader changes.
    pub leader_changes: IntCounter,
    /// Autoscaling decisions by service and direction (`up`, `down`).
    pub autoscale_decisions: IntCounterVec,
    /// Expiry of the certificates this replica serves and trusts.
    pub certificate_expiry: persys_certs::CertificateExpiry,
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

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .unwrap_or_else(|_| unreachable_metric())
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric())
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let workloads_scheduled = counter(
            "persys_workloads_scheduled_total",
            "Workloads placed on a node",
        );
        let placement_seconds = histogram(
            "persys_placement_seconds",
            "Placement latency, decision and store write",
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ],
        );
        let placement_batch_size = histogram(
            "persys_placement_batch_size",
            "New workloads placed and stored together in one etcd transaction",
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0],
        );
        let schedule_latency = histogram(
            "persys_schedule_latency_seconds",
            "Time from a workload's creation to its first placement on a node",
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0,
            ],
        );
        let dispatch_errors = counter(
            "persys_dispatch_errors_total",
            "Agent calls that failed after retries",
        );
        let join_failures = counter(
            "persys_scheduler_join_failures_total",
            "Registrations refused for a missing or bad join token",
        );
        let nodes = IntGaugeVec::new(Opts::new("persys_nodes", "Nodes by status"), &["status"])
            .unwrap_or_else(|_| unreachable_metric());
        let workloads_vec = IntGaugeVec::new(
            Opts::new("persys_workloads", "Workloads by status"),
            &["status"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let workloads = WorkloadStatus::ALL
            .iter()
            .map(|s| workloads_vec.with_label_values(&[s.as_str()]))
            .collect();
        let heartbeat_interval = histogram(
            "persys_node_heartbeat_interval_seconds",
            "Time between two heartbeats of a node, as the leader received them",
            &[0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0],
        );
        let heartbeat_age_max = Gauge::new(
            "persys_node_heartbeat_age_max_seconds",
            "Longest time since the last heartbeat of an Active node (the leader's view; 0 on followers)",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let workload_restarts = counter(
            "persys_workload_restarts_total",
            "Container restarts reported by agents (restart policy and liveness checks)",
        );
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
        let leader_changes = counter(
            "persys_scheduler_leader_changes_total",
            "Leader terms this replica has seen begin (won or followed)",
        );
        let autoscale_decisions = IntCounterVec::new(
            Opts::new(
                "persys_autoscale_decisions_total",
                "Autoscaling decisions by service and direction",
            ),
            &["service", "direction"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let dispatch_results = DispatchResults::new();
        let connections = persys_certs::ConnectionMetrics::new("persys_scheduler")
            .unwrap_or_else(|_| unreachable_metric());
        if let Err(e) = connections.register(&registry) {
            tracing::warn!(error = %e, "metric registration failed");
        }
        let certificate_expiry = persys_certs::CertificateExpiry::new("scheduler")
            .unwrap_or_else(|_| unreachable_metric());
        if let Err(e) = certificate_expiry.register(&registry) {
            tracing::warn!(error = %e, "metric registration failed");
        }
        for s in NODE_STATUSES {
            nodes.with_label_values(&[s.as_str()]).set(0);
        }
        let m = Self {
            registry,
            workloads_scheduled,
            placement_seconds,
            placement_batch_size,
            schedule_latency,
            dispatch_errors,
            dispatch_results,
            join_failures,
            nodes,
            workloads,
            workloads_vec,
            heartbeat_interval,
            heartbeat_age_max,
            workload_restarts,
            http_requests,
            connections,
            is_leader,
            leader_changes,
            autoscale_decisions,
            certificate_expiry,
        };
        m.register_all([
            Box::new(m.is_leader.clone()) as Box<dyn Collector>,
            Box::new(m.leader_changes.clone()),
            Box::new(m.workloads_scheduled.clone()),
            Box::new(m.placement_seconds.clone()),
            Box::new(m.placement_batch_size.clone()),
            Box::new(m.schedule_latency.clone()),
            Box::new(m.dispatch_errors.clone()),
            Box::new(m.dispatch_results.vec.clone()),
            Box::new(m.join_failures.clone()),
            Box::new(m.nodes.clone()),
            Box::new(m.workloads_vec.clone()),
            Box::new(m.heartbeat_interval.clone()),
            Box::new(m.heartbeat_age_max.clone()),
            Box::new(m.workload_restarts.clone()),
            Box::new(m.http_requests.clone()),
            Box::new(m.autoscale_decisions.clone()),
        ]);
        m
    }

    /// Register more collectors (the store's etcd request metrics).
    pub fn register_all(&self, collectors: impl IntoIterator<Item = Box<dyn Collector>>) {
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::warn!(error = %e, "metric registration failed");
            }
        }
    }

    /// Set `persys_certificate_expiry_timestamp_seconds{cert="serving"}` from the
    /// certificate this replica serves on both listeners. Call it again with the new
    /// PEM whenever the certificate is replaced (renewal).
    pub fn set_serving_certificate(&self, cert_pem: &str) {
        self.certificate_expiry
            .observe_pem(persys_certs::expiry::SERVING, cert_pem);
    }

    /// The same for the cluster CA certificate (`cert="ca"`).
    pub fn set_ca_certificate(&self, cert_pem: &str) {
        self.certificate_expiry
            .observe_pem(persys_certs::expiry::CA, cert_pem);
    }

    /// Set the node gauges from counts by status (statuses absent count 0).
    pub fn set_node_counts(&self, counts: &std::collections::HashMap<NodeStatus, u64>) {
        for s in NODE_STATUSES {
            let n = counts.get(&s).copied().unwrap_or(0);
            self.nodes
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Set the workload gauges from counts by status (statuses absent count 0).
    pub fn set_workload_counts(&self, counts: &std::collections::HashMap<WorkloadStatus, u64>) {
        for (s, gauge) in WorkloadStatus::ALL.iter().zip(&self.workloads) {
            let n = counts.get(s).copied().unwrap_or(0);
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
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

/// Set what describes the cluster now, from memory: workloads and nodes by status
/// (the cache's indexes), the oldest heartbeat of an Active node (the leader's
/// liveness). Called by `GET /metrics` before rendering.
pub fn refresh(ctx: &Ctx) {
    let m = ctx.metrics();
    m.set_workload_counts(&ctx.cache().counts().by_status);
    m.set_node_counts(&ctx.cache().node_counts());
    let age = if ctx.leadership().is_leader() {
        let now = tokio::time::Instant::now();
        ctx.liveness()
            .max_age(now, |id| {
                ctx.cache().node_status(id) == Some(NodeStatus::Active)
            })
            .as_secs_f64()
    } else {
        // A follower receives no heartbeats; what it remembers from an earlier term
        // would only grow.
        0.0
    };
    m.heartbeat_age_max.set(age);
}

/// Metric construction only fails for invalid names or options, which are constants
/// here; a test constructs them all, so this is never reached.
fn unreachable_metric() -> ! {
    panic!("invalid metric definition")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn render_includes_every_metric() {
        let m = Metrics::new();
        m.workloads_scheduled.inc();
        m.http_requests
            .with_label_values(&["/workloads/{id}", "GET", "200"])
            .inc();
        m.set_node_counts(&HashMap::from([(NodeStatus::Active, 2)]));
        m.set_workload_counts(&HashMap::from([(WorkloadStatus::Running, 3)]));
        m.dispatch_results
            .inc(DispatchAction::Run, DispatchResult::Ok);
        m.dispatch_results
            .inc(DispatchAction::Retire, DispatchResult::Deferred);
        m.register_all(crate::store::StoreMetrics::new().collectors());
        let _api = m.connections.listener("api");
        let text = m.render();
        for name in [
            "persys_workloads_scheduled_total 1",
            "persys_placement_seconds",
            "persys_schedule_latency_seconds_bucket",
            "persys_dispatch_errors_total",
            "persys_dispatch_results_total{action=\"run\",result=\"ok\"} 1",
            "persys_dispatch_results_total{action=\"retire\",result=\"deferred\"} 1",
            "persys_dispatch_results_total{action=\"stop\",result=\"refused\"} 0",
            "persys_nodes{status=\"Active\"} 2",
            "persys_nodes{status=\"Inactive\"} 0",
            "persys_workloads{status=\"Running\"} 3",
            "persys_workloads{status=\"Pending\"} 0",
            "persys_node_heartbeat_interval_seconds_count 0",
            "persys_node_heartbeat_age_max_seconds 0",
            "persys_workload_restarts_total 0",
            "persys_http_requests_total",
            "persys_scheduler_is_leader 0",
            "persys_scheduler_leader_changes_total 0",
            "persys_scheduler_connections_open",
            "persys_etcd_request_duration_seconds_bucket{operation=\"txn\"",
            "persys_etcd_request_errors_total{kind=\"unavailable\",operation=\"get\"} 0",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        assert_eq!(
            m.dispatch_results
                .get(DispatchAction::Run, DispatchResult::Ok),
            1
        );
    }

    #[test]
    fn the_serving_certificate_sets_its_expiry() {
        let ca = persys_certs::CertificateAuthority::generate("t").expect("ca");
        let m = Metrics::new();
        m.set_ca_certificate(ca.cert_pem());
        m.set_serving_certificate("garbage");
        let text = m.render();
        assert!(
            text.contains(
                "persys_certificate_expiry_timestamp_seconds{cert=\"ca\",component=\"scheduler\"}"
            ),
            "{text}"
        );
        assert!(!text.contains("cert=\"serving\""), "{text}");
    }
}
