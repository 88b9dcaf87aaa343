//! `GET /cluster/metrics` and `GET /cluster/leader`.

use super::nodes::decorated_nodes;
use super::AppState;
use axum::extract::State;
use axum::Json;
use persys_proto::{ClusterMetrics, LeaderInfo, WorkloadStatus};

/// `GET /cluster/leader`: `{"leader", "url", "self"}` as this replica sees it.
pub async fn leader(State(ctx): State<AppState>) -> Json<LeaderInfo> {
    Json(ctx.leadership().info())
}

/// Nodes, workload counts by status, capacity and allocation totals.
pub async fn metrics(State(ctx): State<AppState>) -> Json<ClusterMetrics> {
    let nodes = decorated_nodes(&ctx);
    let counts = ctx.cache().counts();
    let mut m = ClusterMetrics {
        total_workloads: counts.total,
        ..Default::default()
    };
    for s in WorkloadStatus::ALL {
        let n = counts.by_status.get(&s).copied().unwrap_or_default();
        m.workloads_by_status.insert(s.as_str().to_string(), n);
    }
    for n in &nodes {
        m.total_cpu_millis += n.cpu_millis();
        m.total_memory_mb += n.total_memory;
        m.allocated_cpu_millis += n.allocated_cpu;
        m.allocated_memory_mb += n.allocated_memory;
    }
    m.nodes = nodes;
    Json(m)
}
